// bindings/bind_signals.cpp — signals on the Loop: the interrupt pipe that Python's signal
// wakeup fd writes to, the numbers read from it handed to PyLoop._handle_signal (the handlers
// of add_signal_handler, python/.../_signals.py), and the handles those handlers keep.
#include "handle_object.hpp"
#include "loop_methods.hpp"
#include "module_state.hpp"

namespace pyloop::bindings {

// Signal numbers read from the interrupt pipe go to PyLoop._handle_signal (the handlers of
// add_signal_handler), in phase 4 of the iteration, as asyncio's self-pipe reader does.
bool dispatch_signals(void* data) noexcept {
  PyObject* self = static_cast<PyObject*>(data);
  bool ok = true;
  as_loop(self)->driver->take_signals([&](int signum) {
    if (!ok) return;
    nb::object number = nb::steal(PyLong_FromLong(signum));
    PyObject* argv[] = {self, number.ptr()};
    nb::object done = nb::steal(PyObject_VectorcallMethod(
        state().str_handle_signal.ptr(), argv, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
    ok = done.is_valid();
  });
  return ok;
}

// _watch_signals(enabled): while signal handlers are installed, the interrupt pipe counts as
// an I/O source, so a busy loop polls it every iteration instead of only when it waits.
PyObject* loop_watch_signals(PyObject* self, PyObject* enabled) {
  loop_object* loop = as_loop(self);
  if (!require_open(loop)) return nullptr;
  int on = PyObject_IsTrue(enabled);
  if (on < 0) return nullptr;
  if (on && !loop->watching_signals) {
    loop->driver->add_io_source();
  } else if (!on && loop->watching_signals) {
    loop->driver->remove_io_source();
  }
  loop->watching_signals = on != 0;
  Py_RETURN_NONE;
}

// _make_handle(callback, *args): a Handle that is not queued (signal handlers keep one).
PyObject* loop_make_handle(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (kwnames != nullptr && PyTuple_GET_SIZE(kwnames) > 0) {
    PyErr_SetString(PyExc_TypeError, "_make_handle() takes no keyword arguments");
    return nullptr;
  }
  if (nargs < 1) return missing_argument("_make_handle", "callback");
  return reinterpret_cast<PyObject*>(new_handle(self, args[0], args + 1, nargs - 1, nullptr));
}

// _add_callback(handle): queue an existing handle for the next iteration (signal handlers).
PyObject* loop_add_callback(PyObject* self, PyObject* handle) {
  loop_object* loop = as_loop(self);
  if (!PyObject_TypeCheck(handle, state().handle_type)) {
    PyErr_SetString(PyExc_TypeError, "_add_callback() expects a Handle");
    return nullptr;
  }
  if (!require_open(loop)) return nullptr;
  if (!as_handle(handle)->cancelled) {
    nb::object queued = nb::borrow(handle);  // the queue's reference, once it took the entry
    loop->driver->call_soon(callback{&handle_callback_ops, queued.ptr()});
    (void)queued.release();
  }
  Py_RETURN_NONE;
}

PyObject* loop_signal_wakeup_fd(PyObject* self, PyObject*) {
  loop_object* loop = as_loop(self);
  if (!require_open(loop)) return nullptr;
  std::error_code ec;
  const int fd = loop->driver->interrupt_fd(ec);
  if (fd < 0) return set_os_error(ec);
  return PyLong_FromLong(fd);
}

}  // namespace pyloop::bindings
