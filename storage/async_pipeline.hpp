#pragma once
// Awaiting the writer from a coroutine on the io_context: the request's coroutine suspends
// until the COMMIT holding its data is done, then resumes on its own executor. This is what
// makes "a 2xx means committed" hold without blocking the io thread.
#include <boost/asio/async_result.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/post.hpp>
#include <memory>

#include "storage/pipeline.hpp"

namespace sb {

template <typename Token>
auto async_submit(Pipeline& p, std::vector<Inbound> items, std::optional<CursorUpdate> cursor,
                  Token&& token) {
  return boost::asio::async_initiate<Token, void(std::vector<IngestOutcome>)>(
      [&p](auto handler, std::vector<Inbound> items, std::optional<CursorUpdate> cursor) {
        auto ex = boost::asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        p.submit(std::move(items), std::move(cursor), [h, ex](std::vector<IngestOutcome> out) {
          boost::asio::post(ex, [h, out = std::move(out)]() mutable { (*h)(std::move(out)); });
        });
      },
      token, std::move(items), std::move(cursor));
}

template <typename Token>
auto async_submit_call(Pipeline& p, CallEventInput ev, Token&& token) {
  return boost::asio::async_initiate<Token, void(std::vector<IngestOutcome>)>(
      [&p](auto handler, CallEventInput ev) {
        auto ex = boost::asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        p.submit_call_event(std::move(ev), [h, ex](std::vector<IngestOutcome> out) {
          boost::asio::post(ex, [h, out = std::move(out)]() mutable { (*h)(std::move(out)); });
        });
      },
      token, std::move(ev));
}

}  // namespace sb
