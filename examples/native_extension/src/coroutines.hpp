// examples/native_extension/src/coroutines.hpp — C++20 coroutines that run on the PyLoop: an Asio
// timer and a loopback TCP round trip, and a Python coroutine awaited from C++.
#pragma once

#include <asio/experimental/as_tuple.hpp>
#include <asio/detached.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include <atomic>
#include <chrono>
#include <string>

#include "data_bridge/pyloop/pyloop.hpp"

namespace example {

namespace dp = data_bridge::pyloop;
using asio::ip::tcp;

// Native operations that ended because Python cancelled their awaiting task (tests read it).
inline std::atomic<int> native_cancellations{0};

inline auto seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

// Waits on an Asio timer; a cancellation from Python ends the wait with operation_aborted.
inline asio::awaitable<double> native_sleep(double delay) {
  asio::steady_timer timer(co_await asio::this_coro::executor, seconds(delay));
  try {
    co_await timer.async_wait(asio::use_awaitable);
  } catch (const std::system_error& e) {
    if (e.code() == asio::error::operation_aborted) ++native_cancellations;
    throw;
  }
  co_return delay;
}

// A coroutine with no result (the Python future gets None): yields to the loop once.
inline asio::awaitable<void> yield_once() {
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
}

// Accepts one connection and echoes what it reads until the peer shuts down its side.
inline asio::awaitable<void> echo_once(tcp::acceptor acceptor) {
  tcp::socket peer = co_await acceptor.async_accept(asio::use_awaitable);
  char chunk[16 * 1024];
  for (;;) {
    auto [ec, n] = co_await peer.async_read_some(asio::buffer(chunk), asio::experimental::as_tuple(asio::use_awaitable));
    if (ec) break;  // asio::error::eof: the client is done
    co_await asio::async_write(peer, asio::buffer(chunk, n), asio::use_awaitable);
  }
}

// The example's first point: sleeps on an Asio timer, then sends payload through a loopback
// TCP connection (both ends on this loop) and returns what came back, as bytes.
inline asio::awaitable<dp::bytes> timer_then_echo(double delay, std::string payload) {
  auto executor = co_await asio::this_coro::executor;
  co_await native_sleep(delay);
  tcp::acceptor acceptor(executor, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  tcp::endpoint where = acceptor.local_endpoint();
  asio::co_spawn(executor, echo_once(std::move(acceptor)), asio::detached);
  tcp::socket client(executor);
  co_await client.async_connect(where, asio::use_awaitable);
  co_await asio::async_write(client, asio::buffer(payload), asio::use_awaitable);
  client.shutdown(tcp::socket::shutdown_send);
  std::string echoed;
  char chunk[16 * 1024];
  for (;;) {
    auto [ec, n] = co_await client.async_read_some(asio::buffer(chunk), asio::experimental::as_tuple(asio::use_awaitable));
    if (ec) break;
    echoed.append(chunk, n);
  }
  co_return dp::bytes{std::move(echoed)};
}

// The example's second point: awaits a Python awaitable and returns ("from C++", its result).
// A Python exception it raises passes through unchanged.
inline asio::awaitable<dp::py_object> call_python(dp::py_object awaitable) {
  dp::py_object result = co_await dp::await_python(std::move(awaitable));
  dp::gil_guard gil;
  co_return dp::py_object::steal(Py_BuildValue("(sO)", "from C++", result.get()));
}

// Like call_python, but catches the Python exception in C++ and returns its type's name.
inline asio::awaitable<std::string> catch_python(dp::py_object awaitable) {
  try {
    co_await dp::await_python(std::move(awaitable));
  } catch (const dp::python_error& e) {
    dp::gil_guard gil;
    co_return std::string(Py_TYPE(e.value())->tp_name);
  }
  co_return std::string("no exception");
}

// Waits on a Python awaitable; counts the cancellation when Python cancels this coroutine.
inline asio::awaitable<dp::py_object> guarded_python_wait(dp::py_object awaitable) {
  try {
    co_return co_await dp::await_python(std::move(awaitable));
  } catch (const dp::python_error& e) {
    dp::gil_guard gil;
    if (e.matches(PyExc_BaseException) && PyErr_GivenExceptionMatches(e.value(), PyExc_Exception) == 0) {
      ++native_cancellations;  // CancelledError (a BaseException): the task was cancelled
    }
    throw;
  }
}

}  // namespace example
