#pragma once
// Awaiting the writer from a coroutine on the io_context: the request's coroutine suspends
// until the COMMIT holding its data is done, then resumes on its own executor. This is what
// makes "a 2xx means committed" hold without blocking the io thread.
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <memory>

#include "storage/pipeline.hpp"
#include "storage/writer.hpp"

namespace sb {

namespace detail {
// Runs `fn` on `ex`: batched with the other completions of the same writer batch into one post
// (one wake-up of the io thread per commit instead of one per request).
template <typename Executor>
void complete_on(const Executor& ex, std::function<void()> fn) {
  auto flush = [ex](std::vector<std::function<void()>> fns) {
    boost::asio::post(ex, [fns = std::move(fns)]() {
      for (const auto& f : fns) {
        f();
      }
    });
  };
  // Keyed by the executor's context: all coroutines of one io_context share one post.
  const void* key = &boost::asio::query(ex, boost::asio::execution::context);
  if (!storage::Writer::defer(key, flush, fn)) {  // not on the writer thread
    boost::asio::post(ex, std::move(fn));
  }
}
}  // namespace detail

template <typename Token>
auto async_submit(Pipeline& p, std::vector<Inbound> items, std::optional<CursorUpdate> cursor,
                  Token&& token) {
  return boost::asio::async_initiate<Token, void(std::vector<IngestOutcome>)>(
      [&p](auto handler, std::vector<Inbound> items, std::optional<CursorUpdate> cursor) {
        auto ex = boost::asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        p.submit(std::move(items), std::move(cursor), [h, ex](std::vector<IngestOutcome> out) {
          detail::complete_on(ex, [h, out = std::move(out)]() mutable { (*h)(std::move(out)); });
        });
      },
      token, std::move(items), std::move(cursor));
}

template <typename Token>
auto async_submit_statuses(Pipeline& p, std::vector<ProviderStatus> statuses, Token&& token) {
  return boost::asio::async_initiate<Token, void(std::vector<IngestOutcome>)>(
      [&p](auto handler, std::vector<ProviderStatus> statuses) {
        auto ex = boost::asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        p.submit_provider_statuses(std::move(statuses), [h, ex](std::vector<IngestOutcome> out) {
          detail::complete_on(ex, [h, out = std::move(out)]() mutable { (*h)(std::move(out)); });
        });
      },
      token, std::move(statuses));
}

template <typename Token>
auto async_submit_call(Pipeline& p, CallEventInput ev, Token&& token) {
  return boost::asio::async_initiate<Token, void(std::vector<IngestOutcome>)>(
      [&p](auto handler, CallEventInput ev) {
        auto ex = boost::asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        p.submit_call_event(std::move(ev), [h, ex](std::vector<IngestOutcome> out) {
          detail::complete_on(ex, [h, out = std::move(out)]() mutable { (*h)(std::move(out)); });
        });
      },
      token, std::move(ev));
}

}  // namespace sb
