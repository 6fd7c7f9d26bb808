// include/data_bridge/pyloop/future.hpp — native futures: an asyncio future of a PyLoop that native code
// completes from any thread through a promise.
//
//   auto [future, promise] = make_future<std::int64_t>(loop);   // GIL, loop's thread
//   std::thread([p = std::move(promise)]() mutable { p.set_value(42); }).detach();
//   return future.release();                                    // Python awaits it
//
// The Python side is an asyncio future (a NativeFuture, subclass of asyncio.Future): await it, cancel
// it, add callbacks, hand it to asyncio.gather / wait_for. Completion needs no GIL: the value
// (or exception) is kept natively and converted by to_python() on the loop's thread, which
// the completion wakes. Cancelling the Python future (the awaiting task was cancelled)
// reaches the native side: promise.cancelled() turns true and the on_cancel callback given to
// make_future runs on the loop's thread.
#pragma once

#include <exception>
#include <functional>
#include <new>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>

#include "data_bridge/pyloop/api.hpp"
#include "data_bridge/pyloop/convert.hpp"

namespace data_bridge::pyloop {

// Raised into Python (as RuntimeError) when a promise is destroyed without a result.
class broken_promise : public std::logic_error {
 public:
  broken_promise() : std::logic_error("native promise destroyed without a result") {}
};

namespace detail {

// Unqualified, so that to_python overloads in the value type's namespace are found too.
template <class V>
PyObject* convert_value(V&& value) noexcept {
  return to_python(std::forward<V>(value));
}

// One completion: a value or an exception, converted on the loop's thread.
template <class T>
struct outcome final : db_pyloop_outcome {
  using value_type = std::conditional_t<std::is_void_v<T>, std::monostate, T>;
  std::optional<value_type> value;  // set for DB_PYLOOP_VALUE
  std::exception_ptr error;         // set for DB_PYLOOP_EXCEPTION

  explicit outcome(int k) noexcept : db_pyloop_outcome{k, &convert, &destroy_outcome} {}

  static PyObject* convert(db_pyloop_outcome* self) noexcept {
    auto* o = static_cast<outcome*>(self);
    if (o->kind == DB_PYLOOP_EXCEPTION) return exception_to_python(o->error);
    return convert_value(std::move(*o->value));
  }
  // Members that hold Python references (py_object, python_error) take the GIL themselves.
  static void destroy_outcome(db_pyloop_outcome* self) noexcept { delete static_cast<outcome*>(self); }
};

// The cancellation callback a future carries, called by the loop on the loop's thread.
inline db_pyloop_cancel_hook make_cancel_hook(std::function<void()> on_cancel) {
  if (!on_cancel) return db_pyloop_cancel_hook{nullptr, nullptr, nullptr};
  auto* fn = new std::function<void()>(std::move(on_cancel));
  return db_pyloop_cancel_hook{
      [](void* ctx) {
        try {
          (*static_cast<std::function<void()>*>(ctx))();
        } catch (...) {
          // No caller to report to: a cancellation callback must not throw.
        }
      },
      [](void* ctx) { delete static_cast<std::function<void()>*>(ctx); }, fn};
}

}  // namespace detail

// The native side of one future. Move-only; complete it once, from any thread, without the
// GIL. Destroying it uncompleted fails the future with RuntimeError (broken_promise).
// Thread safety: one owner at a time; cancelled() may be polled from any thread.
template <class T>
class promise {
 public:
  promise() noexcept = default;
  explicit promise(db_pyloop_link* link) noexcept : link_(link) {}
  promise(promise&& other) noexcept : link_(std::exchange(other.link_, nullptr)) {}
  promise& operator=(promise&& other) noexcept {
    if (this != &other) {
      abandon();
      link_ = std::exchange(other.link_, nullptr);
    }
    return *this;
  }
  promise(const promise&) = delete;
  promise& operator=(const promise&) = delete;
  ~promise() { abandon(); }

  // Each returns true when the completion reached the loop (false: the loop is closed or the
  // promise was already completed; the value is then dropped here).
  template <class U = T, class = std::enable_if_t<!std::is_void_v<U>>>
  bool set_value(U value) noexcept {
    return deliver([&](auto* o) { o->value.emplace(std::move(value)); }, DB_PYLOOP_VALUE);
  }
  template <class U = T, class = std::enable_if_t<std::is_void_v<U>>>
  bool set_value() noexcept {
    return deliver([](auto* o) { o->value.emplace(); }, DB_PYLOOP_VALUE);
  }
  // std::exception -> RuntimeError(what()), std::bad_alloc -> MemoryError, python_error ->
  // its own exception (a CancelledError cancels the future).
  bool set_exception(std::exception_ptr error) noexcept {
    return deliver([&](auto* o) { o->error = std::move(error); }, DB_PYLOOP_EXCEPTION);
  }
  // Cancels the Python future.
  bool cancel() noexcept {
    return deliver([](auto*) {}, DB_PYLOOP_CANCELLED);
  }

  // True once the Python side was cancelled: native work may stop early.
  bool cancelled() const noexcept { return link_ != nullptr && api().link_cancelled(link_) == 1; }
  bool completed() const noexcept { return link_ == nullptr || api().link_completed(link_) == 1; }
  bool valid() const noexcept { return link_ != nullptr; }
  // The C API's link (borrowed; for cancel_token and C code).
  db_pyloop_link* link() const noexcept { return link_; }

 private:
  template <class Fill>
  bool deliver(Fill&& fill, int kind) noexcept {
    if (link_ == nullptr) return false;
    auto* o = new (std::nothrow) detail::outcome<T>(kind);
    if (o == nullptr) return false;
    fill(o);
    return api().link_complete(link_, o) == 1;
  }
  void abandon() noexcept {
    if (link_ == nullptr) return;
    if (api().link_completed(link_) == 0) {
      set_exception(std::make_exception_ptr(broken_promise()));
    }
    api().link_release(std::exchange(link_, nullptr));
  }

  db_pyloop_link* link_ = nullptr;  // our reference to the loop's link
};

// A Python future and the promise that completes it.
template <class T>
struct future_and_promise {
  py_object future;    // the asyncio future (return it to Python)
  data_bridge::pyloop::promise<T> promise;  // completes it from any thread
};

// GIL, loop's thread (or any thread holding the GIL). A pending future of loop and its
// promise. on_cancel, if given, runs on the loop's thread (GIL held) when the Python future is
// cancelled before the promise completed it. Throws python_error: TypeError if loop is not a
// PyLoop, RuntimeError if it is closed.
template <class T>
future_and_promise<T> make_future(PyObject* loop, std::function<void()> on_cancel = {}) {
  PyObject* future = nullptr;
  db_pyloop_link* link = api().future_new(loop, detail::make_cancel_hook(std::move(on_cancel)), &future);
  if (link == nullptr) throw python_error();
  return future_and_promise<T>{py_object::steal(future), promise<T>(link)};
}

}  // namespace data_bridge::pyloop
