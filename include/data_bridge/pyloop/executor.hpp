// include/data_bridge/pyloop/executor.hpp — a PyLoop's Asio io_context and executor, for native code that
// runs on the loop's thread beside Python callbacks.
#pragma once

#include <asio/io_context.hpp>

#include "data_bridge/pyloop/api.hpp"

namespace data_bridge::pyloop {

// The executor of a PyLoop: handlers posted to it run on the loop's thread (during the loop's
// Asio phase or its wait, possibly without the GIL: take a gil_guard to touch Python).
using loop_executor = asio::io_context::executor_type;

// GIL. The loop's io_context. Throws python_error: TypeError if loop is not a PyLoop,
// RuntimeError("Event loop is closed") if it is closed.
inline asio::io_context& loop_context(PyObject* loop) {
  void* io = api().loop_io_context(loop);
  if (io == nullptr) throw python_error();
  return *static_cast<asio::io_context*>(io);
}

// GIL. The loop's executor (errors as loop_context).
inline loop_executor get_executor(PyObject* loop) { return loop_context(loop).get_executor(); }

// GIL. True when loop is a PyLoop.
inline bool is_pyloop(PyObject* loop) noexcept { return api().is_loop(loop) == 1; }

}  // namespace data_bridge::pyloop
