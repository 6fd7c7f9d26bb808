// bindings/bind_scheduling.cpp — the Loop's scheduling methods: call_soon, call_soon_threadsafe,
// call_later, call_at, time, create_future and create_task.
//
// These are on asyncio's hot paths: METH_FASTCALL functions that Tasks and Futures reach
// through vectorcall, with no argument tuple, no nanobind overload dispatch and no Python
// frame. Arguments are checked with asyncio's errors and messages.
#include "handle_object.hpp"
#include "loop_methods.hpp"
#include "module_state.hpp"

#include <pythread.h>  // after Python.h

namespace pyloop::bindings {

// Python's own phrasing for argument errors, so messages read like asyncio's.
PyObject* missing_argument(const char* method, const char* name) {
  PyErr_Format(PyExc_TypeError, "%s() missing 1 required positional argument: '%s'", method,
               name);
  return nullptr;
}

namespace {

// The arguments of call_soon(callback, *args, context=None) and its siblings, which take
// one extra leading parameter (delay or when) before callback.
struct parsed_call {
  PyObject* leading = nullptr;   // delay or when; null for call_soon
  PyObject* callback = nullptr;  // the callable
  PyObject* const* args = nullptr;
  Py_ssize_t nargs = 0;
  PyObject* context = nullptr;  // null or None: capture the current context
};

bool parse_call(const char* method, const char* leading_name, PyObject* const* args,
                size_t nargsf, PyObject* kwnames, parsed_call& out) {
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  Py_ssize_t pos = 0;
  if (leading_name != nullptr && pos < nargs) out.leading = args[pos++];
  if (pos < nargs) out.callback = args[pos++];
  out.args = args + pos;
  out.nargs = nargs - pos;
  if (kwnames != nullptr) {
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; ++i) {
      PyObject* key = PyTuple_GET_ITEM(kwnames, i);
      PyObject* value = args[nargs + i];
      PyObject** slot = nullptr;
      if (key == state().str_context.ptr() || PyUnicode_CompareWithASCIIString(key, "context") == 0) {
        slot = &out.context;
      } else if (PyUnicode_CompareWithASCIIString(key, "callback") == 0 && nargs <= (leading_name ? 1 : 0)) {
        slot = &out.callback;
      } else if (leading_name != nullptr && nargs == 0 &&
                 PyUnicode_CompareWithASCIIString(key, leading_name) == 0) {
        slot = &out.leading;
      }
      if (slot == nullptr || *slot != nullptr) {
        PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", method, key);
        return false;
      }
      *slot = value;
    }
  }
  if (leading_name != nullptr && out.leading == nullptr) {
    missing_argument(method, leading_name);
    return false;
  }
  if (out.callback == nullptr) {
    missing_argument(method, "callback");
    return false;
  }
  return true;
}

// Debug-mode checks, delegated to PyLoop._check_thread / _check_callback (asyncio's rules).
bool debug_checks(PyObject* self, PyObject* callback, const char* method, bool check_thread) {
  module_state& s = state();
  if (check_thread) {
    PyObject* argv[] = {self};
    nb::object ok = nb::steal(PyObject_VectorcallMethod(
        s.str_check_thread.ptr(), argv, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
    if (!ok.is_valid()) return false;
  }
  nb::object name = nb::steal(PyUnicode_FromString(method));
  if (!name.is_valid()) return false;
  PyObject* argv[] = {self, callback, name.ptr()};
  nb::object ok = nb::steal(PyObject_VectorcallMethod(
      s.str_check_callback.ptr(), argv, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  return ok.is_valid();
}

// Inlined into call_soon and call_soon_threadsafe: a call less per call_soon (callgrind).
[[gnu::always_inline]] inline PyObject* schedule_soon(PyObject* self, const parsed_call& call,
                                                    bool threadsafe) noexcept {
  loop_object* loop = as_loop(self);
  nb::object h = nb::steal(reinterpret_cast<PyObject*>(
      new_handle(self, call.callback, call.args, call.nargs, call.context)));
  if (!h.is_valid()) return nullptr;
  // Closed by code that ran while the handle was made?
  if (!require_open(loop)) return nullptr;
  // The queue's reference, handed over once the queue has taken the entry (a queue that
  // cannot grow throws std::bad_alloc, and the reference goes with `queued`).
  nb::object queued = h;
  const callback cb{&handle_callback_ops, queued.ptr()};
  // From the loop's own thread, or while no thread runs the loop (run_forever sets and
  // clears `running` with the GIL held), the ready queue is safe to touch directly, which
  // keeps call_soon and call_soon_threadsafe in one FIFO order, as asyncio's shared deque does.
  try {
    if (threadsafe && loop->running && loop->thread_id != PyThread_get_thread_ident()) {
      loop->driver->call_soon_threadsafe(cb);
    } else {
      loop->driver->call_soon(cb);
    }
  } catch (...) {
    set_error_from_current_exception();  // MemoryError; `queued` gives its reference back
    return nullptr;
  }
  queued.release();
  return h.release().ptr();
}

PyObject* schedule_at(PyObject* self, double when, const parsed_call& call) noexcept {
  loop_object* loop = as_loop(self);
  if (!require_open(loop)) return nullptr;
  if (loop->debug && !debug_checks(self, call.callback, "call_at", true)) return nullptr;
  handle_object* timer = new_timer_handle(when, self, call.callback, call.args, call.nargs, call.context);
  nb::object h = nb::steal(reinterpret_cast<PyObject*>(timer));
  if (!h.is_valid() || !require_open(loop)) return nullptr;
  nb::object queued = h;  // the heap's reference, as in schedule_soon
  try {
    loop->driver->call_at(when, callback{&timer_callback_ops, queued.ptr()});
  } catch (...) {
    set_error_from_current_exception();  // MemoryError; `queued` gives its reference back
    return nullptr;
  }
  queued.release();
  timer->scheduled = true;
  return h.release().ptr();
}

// Converts a deadline or delay the way asyncio's arithmetic would accept it.
bool as_seconds(PyObject* value, double& out) {
  if (PyFloat_CheckExact(value)) {
    out = PyFloat_AS_DOUBLE(value);
    return true;
  }
  out = PyFloat_AsDouble(value);
  return !(out == -1.0 && PyErr_Occurred());
}

}  // namespace

PyObject* loop_call_soon(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) noexcept {
  parsed_call call;
  if (!parse_call("call_soon", nullptr, args, nargsf, kwnames, call)) return nullptr;
  loop_object* loop = as_loop(self);
  if (!require_open(loop)) return nullptr;
  if (loop->debug && !debug_checks(self, call.callback, "call_soon", true)) return nullptr;
  return schedule_soon(self, call, false);
}

PyObject* loop_call_soon_threadsafe(PyObject* self, PyObject* const* args, size_t nargsf,
                                    PyObject* kwnames) noexcept {
  parsed_call call;
  if (!parse_call("call_soon_threadsafe", nullptr, args, nargsf, kwnames, call)) return nullptr;
  loop_object* loop = as_loop(self);
  if (!require_open(loop)) return nullptr;
  if (loop->debug && !debug_checks(self, call.callback, "call_soon_threadsafe", false)) {
    return nullptr;
  }
  return schedule_soon(self, call, true);
}

PyObject* loop_call_later(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) noexcept {
  parsed_call call;
  if (!parse_call("call_later", "delay", args, nargsf, kwnames, call)) return nullptr;
  if (call.leading == Py_None) {
    PyErr_SetString(PyExc_TypeError, "delay must not be None");
    return nullptr;
  }
  double when;
  const double now = loop_driver::now();
  if (PyFloat_CheckExact(call.leading) || PyLong_CheckExact(call.leading)) {
    double delay;
    if (!as_seconds(call.leading, delay)) return nullptr;
    when = now + delay;
  } else {
    // Anything else goes through float.__add__, so exactly asyncio's "time() + delay"
    // succeeds or raises.
    nb::object start = nb::steal(PyFloat_FromDouble(now));
    if (!start.is_valid()) return nullptr;
    nb::object sum = nb::steal(PyNumber_Add(start.ptr(), call.leading));
    if (!sum.is_valid() || !as_seconds(sum.ptr(), when)) return nullptr;
  }
  return schedule_at(self, when, call);
}

PyObject* loop_call_at(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) noexcept {
  parsed_call call;
  if (!parse_call("call_at", "when", args, nargsf, kwnames, call)) return nullptr;
  if (call.leading == Py_None) {
    PyErr_SetString(PyExc_TypeError, "when cannot be None");
    return nullptr;
  }
  double when;
  if (!as_seconds(call.leading, when)) return nullptr;
  return schedule_at(self, when, call);
}

PyObject* loop_time(PyObject*, PyObject*) noexcept { return PyFloat_FromDouble(loop_driver::now()); }


PyObject* loop_create_future(PyObject* self, PyObject*) noexcept {
  // Code that creates a future is about to wait for something (asyncio's streams, locks,
  // queues and sleep all wait on loop.create_future()): what it wrote so far goes out now
  // rather than after the rest of its step. Writes made before it still share one send.
  loop_object* loop = as_loop(self);
  if (loop->driver->flush_pending() && !flush_stream_writers(loop)) return nullptr;
  module_state& s = state();
  PyObject* argv[] = {self};
  return PyObject_Vectorcall(s.future_type.ptr(), argv, 0, s.kwnames_loop.ptr());
}

PyObject* loop_create_task(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) noexcept {
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  PyObject* coro = nargs > 0 ? args[0] : nullptr;
  PyObject* name = Py_None;
  PyObject* context = Py_None;
  if (nargs > 1) {
    PyErr_Format(PyExc_TypeError, "create_task() takes 2 positional arguments but %zd were given",
                 nargs + 1);
    return nullptr;
  }
  if (kwnames != nullptr) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); ++i) {
      PyObject* key = PyTuple_GET_ITEM(kwnames, i);
      PyObject* value = args[nargs + i];
      if (PyUnicode_CompareWithASCIIString(key, "name") == 0) {
        name = value;
      } else if (PyUnicode_CompareWithASCIIString(key, "context") == 0) {
        context = value;
      } else if (PyUnicode_CompareWithASCIIString(key, "coro") == 0 && coro == nullptr) {
        coro = value;
      } else {
        PyErr_Format(PyExc_TypeError, "create_task() got an unexpected keyword argument '%U'", key);
        return nullptr;
      }
    }
  }
  if (coro == nullptr) return missing_argument("create_task", "coro");
  loop_object* loop = as_loop(self);
  if (!require_open(loop)) return nullptr;
  if (loop->task_factory.is_valid()) {
    PyObject* argv[] = {self, coro, name, context};
    return PyObject_VectorcallMethod(state().str_create_task_with_factory.ptr(), argv,
                                     4 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
  }
  module_state& s = state();
  if (name == Py_None && context == Py_None) {
    PyObject* argv[] = {coro, self};
    return PyObject_Vectorcall(s.task_type.ptr(), argv, 1, s.kwnames_loop.ptr());
  }
  PyObject* argv[] = {coro, self, name, context};
  return PyObject_Vectorcall(s.task_type.ptr(), argv, 1, s.kwnames_loop_name_context.ptr());
}


}  // namespace pyloop::bindings
