// bindings/errors.hpp — the one place where native failures become Python exceptions.
//
// Two rules hold at every native entry point (a method, a type slot, a hook the core calls):
// an error code from the core becomes the OSError subclass of its errno (set_os_error), and
// no C++ exception crosses into CPython's frames. Entry points that run code which may throw
// (std::bad_alloc from a container, std::system_error from Asio) are wrapped in guarded<>,
// which turns the exception into MemoryError, OSError or RuntimeError.
#pragma once

#include <Python.h>

#include <nanobind/nanobind.h>

#include <system_error>
#include <type_traits>

#include "pyloop/callback.hpp"

namespace pyloop::bindings {

// Sets the OSError subclass CPython maps errno `error` to (ConnectionResetError,
// BlockingIOError, ...), with strerror's text, as the socket module raises it. Returns null.
PyObject* set_os_error(int error) noexcept;
inline PyObject* set_os_error(std::error_code ec) noexcept { return set_os_error(ec.value()); }

// The same with the file name the failing call was given (OSError.filename), as open() and
// the os module's path functions raise it. Returns null.
PyObject* set_os_error_with_filename(int error, PyObject* filename) noexcept;

// RuntimeError("Event loop is closed"), asyncio's wording. Returns null.
PyObject* set_loop_closed() noexcept;

// Sets the Python exception for the C++ exception being handled (call inside a catch block):
// std::bad_alloc -> MemoryError, std::system_error -> OSError with its errno, anything else
// -> RuntimeError with its what().
void set_error_from_current_exception() noexcept;

// What a failed call returns to CPython: null for objects, -1 for int slots.
template <class R>
constexpr R failure_value() noexcept {
  if constexpr (std::is_pointer_v<R>) {
    return nullptr;
  } else {
    return -1;
  }
}

// guarded<fn>::call has fn's signature, is noexcept, and returns failure_value with the
// Python exception set if fn throws. Method tables and type slots name guarded<fn>::call.
// A function declared noexcept is its own guard (it catches what may throw where it is thrown):
// guarded_method<fn>() hands it over as it is, with no wrapper on hot paths such as call_soon.
template <auto Fn>
struct guarded;

template <class F>
struct is_noexcept_function : std::false_type {};
template <class R, class... Args>
struct is_noexcept_function<R (*)(Args...) noexcept> : std::true_type {};

template <class R, class... Args, R (*Fn)(Args...)>
struct guarded<Fn> {
  static R call(Args... args) noexcept {
    try {
      return Fn(args...);
    } catch (...) {
      set_error_from_current_exception();
      return failure_value<R>();
    }
  }
};

// guarded<fn>::call as the PyCFunction a PyMethodDef holds, whatever fn's calling convention
// (METH_O, METH_NOARGS, METH_FASTCALL, METH_FASTCALL | METH_KEYWORDS).
template <auto Fn>
PyCFunction guarded_method() noexcept {
  if constexpr (is_noexcept_function<decltype(Fn)>::value) {
    return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(Fn));
  } else {
    return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<Fn>::call));
  }
}

// A native callback (readiness, completion) ran into a Python error with no caller to give
// it to: SystemExit and KeyboardInterrupt stay set and abort the iteration, as they leave
// asyncio's run_forever; anything else goes to sys.unraisablehook with `where` as context.
callback_status report_callback_error(PyObject* where) noexcept;

// Takes the current exception out of the error indicator (normalized, with its traceback).
inline nanobind::object take_exception() noexcept {
#if PY_VERSION_HEX >= 0x030C0000
  return nanobind::steal(PyErr_GetRaisedException());
#else
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  if (traceback != nullptr && value != nullptr) PyException_SetTraceback(value, traceback);
  nanobind::object keep_type = nanobind::steal(type), keep_traceback = nanobind::steal(traceback);
  return nanobind::steal(value);
#endif
}

// Puts an exception taken with take_exception() back into the error indicator.
inline void restore_exception(nanobind::object exc) noexcept {
#if PY_VERSION_HEX >= 0x030C0000
  PyErr_SetRaisedException(exc.release().ptr());
#else
  PyObject* value = exc.release().ptr();
  PyErr_Restore(Py_NewRef(reinterpret_cast<PyObject*>(Py_TYPE(value))), value,
                PyException_GetTraceback(value));
#endif
}

// True when the pending exception must leave the loop (asyncio re-raises these two).
inline bool exiting_exception_pending() noexcept {
  return PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
}

}  // namespace pyloop::bindings
