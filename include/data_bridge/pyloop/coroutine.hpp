// include/data_bridge/pyloop/coroutine.hpp — C++20 coroutines on a PyLoop: Asio awaitables started on
// the loop's executor and awaited from Python (spawn), and Python awaitables awaited from C++
// (await_python).
//
//   asio::awaitable<std::int64_t> work(py_object coro) {
//     asio::steady_timer timer(co_await asio::this_coro::executor, 10ms);
//     co_await timer.async_wait(asio::use_awaitable);          // an Asio operation
//     py_object r = co_await await_python(std::move(coro));     // a Python coroutine
//     co_return PyLong_AsLongLong(r.get());                       // (GIL: see below)
//   }
//   PyObject* start(PyObject* loop, PyObject* coro) { return spawn(loop, work(...)).release(); }
//
// The coroutine runs on the loop's thread, between Python callbacks, not always with the GIL:
// take a gil_guard around Python calls. Exceptions cross both ways: a Python exception raised
// by an awaited object is thrown in C++ as python_error and, if uncaught, reaches Python
// unchanged; a C++ exception becomes RuntimeError (MemoryError for std::bad_alloc).
// Cancellation crosses both ways: cancelling the Python future that spawn() returned (the
// awaiting task was cancelled) emits a cancellation on the coroutine (Asio's per-operation
// cancellation: the pending operation ends with operation_aborted, or the awaited Python
// object is cancelled); a Python awaitable that ends cancelled throws python_error carrying
// CancelledError, which cancels the spawn()ed future if the coroutine lets it through.
#pragma once

#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/execution/context_as.hpp>
#include <asio/execution_context.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

#include <exception>
#include <memory>
#include <system_error>
#include <type_traits>
#include <unordered_set>
#include <utility>

#include "data_bridge/pyloop/executor.hpp"
#include "data_bridge/pyloop/future.hpp"

namespace data_bridge::pyloop {

namespace detail {

// Completes spawn()'s future with what the coroutine returned or threw.
template <class T>
struct spawn_done {
  data_bridge::pyloop::promise<T> promise;            // the Python future's native side
  std::shared_ptr<asio::cancellation_signal> signal;  // kept alive while the coroutine runs

  template <class... V>
  void operator()(std::exception_ptr error, V&&... value) {
    if (error) {
      promise.set_exception(std::move(error));
    } else if constexpr (sizeof...(V) == 0) {
      promise.set_value();
    } else {
      promise.set_value(std::forward<V>(value)...);
    }
  }
};

// A Python awaitable being waited on: the C++ coroutine's Asio handler, resumed (posted to
// its executor) from the Python future's done callback.
struct python_waiter {
  virtual ~python_waiter() = default;
  // Loop's thread, GIL held.
  virtual void complete(std::exception_ptr error, py_object result) noexcept = 0;
};

template <class Handler>
struct python_waiter_for final : python_waiter {
  explicit python_waiter_for(Handler&& h) : handler(std::move(h)) {}
  void complete(std::exception_ptr error, py_object result) noexcept override {
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) slot.clear();
    auto executor = asio::get_associated_executor(handler);
    try {
      asio::post(executor, [h = std::move(handler), error, r = std::move(result)]() mutable {
        std::move(h)(error, std::move(r));
      });
    } catch (...) {
      // Out of memory queueing the resumption: the coroutine is destroyed with its handler.
    }
  }
  Handler handler;  // resumes the C++ coroutine
};

// The machinery below is internal to each translation unit (an unnamed namespace): Asio
// finds services by type, and each extension module must keep its own service type.
namespace {

struct waiter_box;

// The Python awaits of this extension module in flight on one loop's io_context. When the loop
// closes, Asio shuts its services down before the context goes: the waiters' handlers (and
// the C++ coroutines suspended on them) are destroyed then, while the context still exists,
// instead of later by the garbage collector, when their work guards would touch a freed
// context. In an unnamed namespace on purpose: Asio finds services by type, and the type of
// each extension module must stay its own (GCC compares such types' typeid by address).
// Thread safety: the loop's thread, GIL held.
class python_waiters final : public asio::execution_context::service {
 public:
  using key_type = python_waiters;
  explicit python_waiters(asio::execution_context& context) : service(context) {}
  void add(waiter_box* box) { boxes_.insert(box); }
  void remove(waiter_box* box) noexcept { boxes_.erase(box); }

 private:
  void shutdown() noexcept override;
  std::unordered_set<waiter_box*> boxes_;  // waiters not completed yet
};

// What the Python done callback's capsule holds: the waiter until it completes.
struct waiter_box {
  python_waiter* waiter;     // null once completed or destroyed
  python_waiters* registry;  // the loop's registry while waiter is set
};

inline void forget(waiter_box* box) noexcept {
  if (box->registry != nullptr) box->registry->remove(box);
  box->registry = nullptr;
}

inline constexpr const char* waiter_capsule_name = "data_bridge.pyloop.python_waiter";

inline PyObject* waiter_done(PyObject* capsule, PyObject* future) noexcept {
  auto* box = static_cast<waiter_box*>(PyCapsule_GetPointer(capsule, waiter_capsule_name));
  if (box == nullptr) return nullptr;
  if (box->waiter == nullptr) Py_RETURN_NONE;  // the loop closed meanwhile
  forget(box);
  std::unique_ptr<python_waiter> waiter(std::exchange(box->waiter, nullptr));
  PyObject* result = PyObject_CallMethod(future, "result", nullptr);
  std::exception_ptr error;
  if (result == nullptr) error = std::make_exception_ptr(python_error());
  waiter->complete(std::move(error), py_object::steal(result));
  Py_RETURN_NONE;
}

inline PyMethodDef waiter_done_def{"_native_waiter_done", waiter_done, METH_O, nullptr};

inline void waiter_box_free(PyObject* capsule) noexcept {
  auto* box = static_cast<waiter_box*>(PyCapsule_GetPointer(capsule, waiter_capsule_name));
  if (box == nullptr) return;
  forget(box);
  delete box->waiter;  // never completed: the coroutine waiting on it is destroyed
  delete box;
}

inline void python_waiters::shutdown() noexcept {
  gil_guard gil;
  for (waiter_box* box : boxes_) {
    box->registry = nullptr;
    delete std::exchange(box->waiter, nullptr);
  }
  boxes_.clear();
}

// Cancels the awaited Python future when the C++ coroutine is cancelled (loop's thread).
struct cancel_python_future {
  py_object future;  // the awaited asyncio future or task
  void operator()(asio::cancellation_type) noexcept {
    gil_guard gil;
    PyObject* r = PyObject_CallMethod(future.get(), "cancel", nullptr);
    if (r == nullptr) PyErr_WriteUnraisable(future.get());
    Py_XDECREF(r);
  }
};

// Starts waiting on awaitable (a coroutine, Task or Future) on the running loop.
template <class Handler>
void start_python_wait(Handler&& handler, py_object awaitable) {
  gil_guard gil;
  auto waiter = std::make_unique<python_waiter_for<std::decay_t<Handler>>>(std::move(handler));
  auto fail = [&] {
    std::exception_ptr error = std::make_exception_ptr(python_error());
    waiter->complete(error, py_object());
  };
  PyObject* asyncio = PyImport_ImportModule("asyncio");
  py_object future = py_object::steal(
      asyncio == nullptr ? nullptr : PyObject_CallMethod(asyncio, "ensure_future", "O", awaitable.get()));
  Py_XDECREF(asyncio);
  if (!future) return fail();
  auto& context = asio::query(asio::get_associated_executor(waiter->handler), asio::execution::context_as<asio::execution_context&>);
  python_waiters& registry = asio::use_service<python_waiters>(context);
  auto* box = new waiter_box{nullptr, nullptr};
  PyObject* capsule = PyCapsule_New(box, waiter_capsule_name, waiter_box_free);
  if (capsule == nullptr) {
    delete box;
    return fail();
  }
  py_object callback = py_object::steal(PyCFunction_New(&waiter_done_def, capsule));
  Py_DECREF(capsule);
  if (!callback) return fail();
  auto slot = asio::get_associated_cancellation_slot(waiter->handler);
  if (slot.is_connected()) {
    slot.template emplace<cancel_python_future>(cancel_python_future{py_object::borrow(future.get())});
  }
  python_waiter* raw = waiter.get();
  registry.add(box);
  box->registry = &registry;
  box->waiter = waiter.release();
  PyObject* added = PyObject_CallMethod(future.get(), "add_done_callback", "O", callback.get());
  if (added == nullptr) {
    forget(box);
    box->waiter = nullptr;
    std::unique_ptr<python_waiter> owned(raw);
    std::exception_ptr error = std::make_exception_ptr(python_error());
    owned->complete(error, py_object());
    return;
  }
  Py_DECREF(added);
}

}  // namespace
}  // namespace detail

// In a coroutine running on a PyLoop (spawn): co_await await_python(obj) waits for a Python
// coroutine, Task or Future on the loop and returns its result (throws python_error with its
// exception). Cancelling the C++ coroutine cancels the Python task.
namespace {  // per translation unit, as the machinery it starts
inline auto await_python(py_object awaitable) {
  return asio::async_initiate<const asio::use_awaitable_t<>, void(std::exception_ptr, py_object)>(
      [](auto handler, py_object aw) { detail::start_python_wait(std::move(handler), std::move(aw)); },
      asio::use_awaitable, std::move(awaitable));
}
}  // namespace

// GIL. Starts coro on loop's executor and returns a new reference to an asyncio future of
// loop for its result. Throws python_error (loop not a PyLoop, or closed).
template <class T>
py_object spawn(PyObject* loop, asio::awaitable<T> coro) {
  loop_executor executor = get_executor(loop);
  auto signal = std::make_shared<asio::cancellation_signal>();
  auto made = make_future<T>(loop, [signal] { signal->emit(asio::cancellation_type::all); });
  asio::co_spawn(executor, std::move(coro),
                 asio::bind_cancellation_slot(signal->slot(),
                                              detail::spawn_done<T>{std::move(made.promise), signal}));
  return std::move(made.future);
}

}  // namespace data_bridge::pyloop
