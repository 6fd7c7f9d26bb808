// bindings/bind_native_bridge.cpp — the capsule _C_API: the plain-function table other extensions
// use to share PyLoop (include/data_bridge/pyloop/, docs/native.md).
//
// A native future is a NativeFuture (an asyncio.Future subclass, bind_native_future.cpp) plus a
// completion_link (the core's thread-safe half). The loop files the future under the link's id, as it files resolver
// queries (the garbage collector sees it there), until the completion arrives through the
// mailbox or the future is cancelled, whichever comes first.
#include <Python.h>

#include <nanobind/nanobind.h>

#include <asio/detail/config.hpp>
#include <asio/version.hpp>

#include <new>
#include <utility>

#include "data_bridge/pyloop/asio_config.hpp"
#include "data_bridge/pyloop/c_api.h"
#include "errors.hpp"
#include "loop_object.hpp"
#include "module_state.hpp"
#include "native_link.hpp"
#include "pyloop/completion_link.hpp"
#include "pyloop/native_runtime.hpp"

namespace pyloop::bindings {

// Defined in bind_native_buffer.cpp.
PyObject* new_native_buffer(void* data, Py_ssize_t size, int writable, void (*release)(void*),
                            void* owner) noexcept;

namespace {

// One completion on its way to the loop: owns a link reference and the outcome.
struct completion {
  db_pyloop_link* link;        // retained for the trip
  db_pyloop_outcome* outcome;  // native result, converted on the loop's thread
};

// Settles future from outcome; a Python error is left set for the caller to report.
void settle(PyObject* future, db_pyloop_outcome* outcome) {
  nb::object done = nb::steal(PyObject_CallMethodNoArgs(future, state().str_done.ptr()));
  if (!done.is_valid() || done.ptr() == Py_True) return;  // cancelled meanwhile
  if (outcome->kind == DB_PYLOOP_CANCELLED) {
    nb::object ignored = nb::steal(PyObject_CallMethod(future, "cancel", nullptr));
    return;
  }
  nb::object converted = nb::steal(outcome->to_python(outcome));
  nb::object exc;
  if (!converted.is_valid()) {
    exc = take_exception();
  } else if (outcome->kind == DB_PYLOOP_EXCEPTION) {
    exc = std::move(converted);
  }
  if (!exc.is_valid()) {
    nb::object ignored = nb::steal(
        PyObject_CallMethodOneArg(future, state().str_set_result.ptr(), converted.ptr()));
    return;
  }
  // A cancellation raised in native code (or a Python CancelledError it carried) cancels the
  // future, as a coroutine raising CancelledError cancels its task; set_exception refuses it.
  int cancelled = PyObject_IsInstance(exc.ptr(), state().cancelled_error.ptr());
  if (cancelled < 0) return;
  if (cancelled) {
    nb::object message = nb::steal(PyObject_Str(exc.ptr()));
    if (!message.is_valid()) return;
    nb::object ignored = PyUnicode_GET_LENGTH(message.ptr()) == 0
                             ? nb::steal(PyObject_CallMethod(future, "cancel", nullptr))
                             : nb::steal(PyObject_CallMethod(future, "cancel", "O", message.ptr()));
    return;
  }
  nb::object ignored =
      nb::steal(PyObject_CallMethodOneArg(future, state().str_set_exception.ptr(), exc.ptr()));
}

callback_status completion_arrived(void* payload) noexcept {
  std::unique_ptr<completion> c(static_cast<completion*>(payload));
  db_pyloop_link* link = c->link;
  nb::object future = nb::steal(take_native_future(loop_of(link), core_of(link)->id()));
  callback_status status = callback_status::done;
  if (future.is_valid()) {
    settle(future.ptr(), c->outcome);
    if (PyErr_Occurred()) status = report_callback_error(future.ptr());
  }
  c->outcome->destroy(c->outcome);
  core_of(link)->release();
  return status;
}

// The loop closed (or was cleared) with the completion queued: the future stays pending, as
// an executor's future does when its loop closes first.
void completion_dropped(void* payload) noexcept {
  std::unique_ptr<completion> c(static_cast<completion*>(payload));
  c->outcome->destroy(c->outcome);
  core_of(c->link)->release();
}

const callback_ops completion_ops{completion_arrived, completion_dropped, nullptr, nullptr, nullptr};

// The loop of a native API call: TypeError for anything but a PyLoop, asyncio's
// RuntimeError for a closed one. Null with the exception set.
loop_object* open_loop(PyObject* loop) noexcept {
  if (loop == nullptr || !PyObject_TypeCheck(loop, state().loop_type)) {
    PyErr_Format(PyExc_TypeError, "expected a data_bridge.pyloop PyLoop, got %s",
                 loop == nullptr ? "NULL" : Py_TYPE(loop)->tp_name);
    return nullptr;
  }
  loop_object* l = as_loop(loop);
  return require_open(l) ? l : nullptr;
}

int api_is_loop(PyObject* loop) noexcept {
  return loop != nullptr && PyObject_TypeCheck(loop, state().loop_type) ? 1 : 0;
}

void* api_loop_io_context(PyObject* loop) noexcept {
  loop_object* l = open_loop(loop);
  if (l == nullptr) return nullptr;
  try {
    return &l->driver->io();
  } catch (...) {
    set_error_from_current_exception();
    return nullptr;
  }
}

db_pyloop_link* make_link(PyObject* loop, db_pyloop_cancel_hook hook, PyObject** future_out) {
  pyloop::cancel_hook core_hook{hook.cancel, hook.release, hook.ctx};
  loop_object* l = open_loop(loop);
  if (l == nullptr) {
    if (hook.release != nullptr) hook.release(hook.ctx);
    return nullptr;
  }
  if (l->pending_queries == nullptr) {
    l->pending_queries = new std::unordered_map<std::uint64_t, nb::object>();
  }
  const std::uint64_t id = ++l->last_query_id;
  // From here the link owns the hook (its destructor releases it).
  auto* core = new (std::nothrow) completion_link(l->driver->mailbox(), id, core_hook, l);
  db_pyloop_link* link = as_c_link(core);
  if (core == nullptr) {
    if (hook.release != nullptr) hook.release(hook.ctx);
    PyErr_NoMemory();
    return nullptr;
  }
  // Created with the caller's reference; the future takes its own.
  nb::object future = nb::steal(new_native_future(loop, link));
  if (!future.is_valid()) {
    core_of(link)->release();
    return nullptr;
  }
  l->pending_queries->emplace(id, future);
  *future_out = future.release().ptr();
  return link;
}

db_pyloop_link* api_future_new(PyObject* loop, db_pyloop_cancel_hook hook, PyObject** future_out) noexcept {
  try {
    return make_link(loop, hook, future_out);
  } catch (nb::python_error& e) {
    e.restore();
  } catch (...) {
    set_error_from_current_exception();
  }
  return nullptr;
}

int api_link_complete(db_pyloop_link* link, db_pyloop_outcome* outcome) noexcept {
  auto* c = new (std::nothrow) completion{link, outcome};
  if (c == nullptr) {
    // Out of memory: the outcome is lost as if the loop had closed (the future stays pending).
    outcome->destroy(outcome);
    return 0;
  }
  core_of(link)->retain();
  link_delivery d = core_of(link)->complete(callback{&completion_ops, c});
  if (d == link_delivery::delivered) return 1;
  delete c;
  outcome->destroy(outcome);
  core_of(link)->release();
  return d == link_delivery::loop_closed ? 0 : -1;
}

int api_link_cancelled(const db_pyloop_link* link) noexcept { return core_of(link)->cancelled() ? 1 : 0; }
int api_link_completed(const db_pyloop_link* link) noexcept { return core_of(link)->completed() ? 1 : 0; }
void api_link_retain(db_pyloop_link* link) noexcept { core_of(link)->retain(); }
void api_link_release(db_pyloop_link* link) noexcept { core_of(link)->release(); }

int api_run_on_pool(void (*fn)(void*), void* arg) noexcept {
  try {
    // The headers' pool_job::run, which lets no exception out.
    run_on_native_runtime(pool_task{fn, arg});
    return 0;
  } catch (...) {
    return -1;
  }
}

unsigned api_pool_size() noexcept {
  try {
    return native_runtime_size();
  } catch (...) {
    return 0;
  }
}

const db_pyloop_c_api c_api_table{
    DB_PYLOOP_API_VERSION,
    sizeof(db_pyloop_c_api),
    ASIO_VERSION,
    data_bridge::pyloop::detail::local_asio_config(),
    api_is_loop,
    api_loop_io_context,
    api_future_new,
    api_link_complete,
    api_link_cancelled,
    api_link_completed,
    api_link_retain,
    api_link_release,
    api_run_on_pool,
    api_pool_size,
    new_native_buffer,
};

}  // namespace

void export_native_bridge(nb::module_& m) {
  module_state& s = state();
  s.cancelled_error = nb::module_::import_("asyncio").attr("CancelledError");
  nb::object capsule = nb::steal(PyCapsule_New(const_cast<db_pyloop_c_api*>(&c_api_table),
                                               DB_PYLOOP_CAPSULE_NAME, nullptr));
  if (!capsule.is_valid()) throw nb::python_error();
  m.attr("_C_API") = capsule;
  m.def("_native_pool_size", [] { return api_pool_size(); },
        "The native runtime's thread count (the pool native work runs on).");
}

}  // namespace pyloop::bindings
