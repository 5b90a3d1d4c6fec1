#include "channels/social/meta_send.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "channels/social/oauth1.hpp"

namespace sb::social {

namespace json = boost::json;

namespace {

HttpRequestSpec json_post(std::string_view token, std::string target, const json::object& body) {
  HttpRequestSpec r;
  r.method = "POST";
  r.target = std::move(target);
  r.content_type = "application/json";
  r.body = json::serialize(body);
  r.headers.emplace_back("Authorization", "Bearer " + std::string(token));
  return r;
}

}  // namespace

HttpRequestSpec meta_send_message(std::string_view page_token, std::string_view recipient_id,
                                  std::string_view text) {
  json::object body;
  body["recipient"] = json::object{{"id", recipient_id}};
  body["messaging_type"] = "RESPONSE";
  body["message"] = json::object{{"text", text}};
  return json_post(page_token, "/me/messages", body);
}

HttpRequestSpec instagram_comment_reply(std::string_view page_token, std::string_view comment_id,
                                        std::string_view text) {
  HttpRequestSpec r;
  r.method = "POST";
  r.target = "/" + std::string(comment_id) + "/replies";
  r.content_type = "application/x-www-form-urlencoded";
  r.body = "message=" + oauth1_encode(text);  // RFC 3986 percent-encoding: valid form encoding
  r.headers.emplace_back("Authorization", "Bearer " + std::string(page_token));
  return r;
}

HttpRequestSpec whatsapp_send_message(const config::Meta& cfg, std::string_view phone_number_id,
                                      std::string_view to, std::string_view text,
                                      std::string_view reply_to_wamid, WhatsAppTo kind) {
  if (kind == WhatsAppTo::phone && !to.empty() && to.front() == '+') {
    to.remove_prefix(1);  // the Cloud API takes the number with or without "+"; send digits
  }
  json::object body;
  body["messaging_product"] = "whatsapp";
  body["recipient_type"] = "individual";
  body[kind == WhatsAppTo::phone ? "to" : "recipient"] = to;
  body["type"] = "text";
  body["text"] = json::object{{"body", text}};
  if (!reply_to_wamid.empty()) {
    body["context"] = json::object{{"message_id", reply_to_wamid}};
  }
  return json_post(cfg.access_token, "/" + std::string(phone_number_id) + "/messages", body);
}

SendOutcome parse_meta_send_response(int http_status, std::string_view body) {
  SendOutcome out;
  boost::system::error_code ec;
  json::value root = json::parse(body, ec);
  const json::object* obj = ec ? nullptr : root.if_object();
  if (http_status >= 200 && http_status < 300 && obj != nullptr) {
    out.ok = true;
    out.provider_message_id = str_at(*obj, "message_id");  // Send API
    if (out.provider_message_id.empty()) {
      out.provider_message_id = str_at(*obj, "id");  // a comment reply
    }
    if (const json::array* msgs = arr_at(*obj, "messages"); msgs && !msgs->empty()) {
      if (const json::object* m = msgs->front().if_object()) {
        out.provider_message_id = str_at(*m, "id");  // WhatsApp
      }
    }
    return out;
  }
  out.retryable = http_status == 429 || http_status >= 500 || http_status == 0;
  const json::object* err = obj == nullptr ? nullptr : obj_at(*obj, "error");
  if (err != nullptr) {
    out.error_message = str_at(*err, "message");
    if (const json::object* data = obj_at(*err, "error_data")) {
      std::string details = str_at(*data, "details");
      if (!details.empty()) {
        out.error_message += ": " + details;
      }
    }
    std::int64_t code = int_at(*err, "code").value_or(0);
    out.code = code;
    // 131056, "(Business Account, Consumer Account) pair rate limit hit": too many messages to
    // the same customer in a short time; WhatsApp's error codes say "wait and retry". It comes
    // with HTTP 400, which alone would make it final.
    if (code == 4 || code == 17 || code == 32 || code == 613 || code == 80007 || code == 130429 ||
        code == 131056) {
      out.retryable = true;
      out.throttled = true;
    }
    if (bool_at(*err, "is_transient")) {
      out.retryable = true;
    }
  }
  if (out.error_message.empty()) {
    out.error_message = "HTTP " + std::to_string(http_status);
  }
  return out;
}

std::optional<MetaThreadKey> parse_meta_thread_key(std::string_view key) {
  MetaThreadKey k;
  std::string* parts[] = {&k.channel, &k.account, &k.business_id};
  for (std::string* part : parts) {
    std::size_t colon = key.find(':');
    if (colon == std::string_view::npos) {
      return std::nullopt;
    }
    *part = key.substr(0, colon);
    key.remove_prefix(colon + 1);
  }
  // The user id is the last part; account names may not hold ':' (config names), ids never do.
  k.user_id = key;
  if (k.user_id.empty() ||
      (k.channel != "whatsapp" && k.channel != "messenger" && k.channel != "instagram")) {
    return std::nullopt;
  }
  return k;
}

}  // namespace sb::social
