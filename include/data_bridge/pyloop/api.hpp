// include/data_bridge/pyloop/api.hpp — importing PyLoop's C API, and the Python basics every other
// header of the native bridge uses (GIL guard, owned references, Python exceptions in C++).
//
// Use: call data_bridge::pyloop::import_api() once in your module's init function (GIL held);
// it fails with ImportError when the installed PyLoop was built with another API version,
// another Asio version or another Asio configuration than this extension.
// Build with the same Asio headers as PyLoop, header-only, with ASIO_STANDALONE and
// ASIO_NO_DEPRECATED defined (docs/native.md).
#pragma once

#include <Python.h>

// The C++ library before Asio: Asio's configuration depends on it (see c_api.h,
// DB_PYLOOP_ASIO_STD_ALIGNED_ALLOC).
#include <exception>
#include <new>
#include <string>
#include <utility>

#include <asio/detail/config.hpp>
#include <asio/version.hpp>

#include "data_bridge/pyloop/asio_config.hpp"
#include "data_bridge/pyloop/c_api.h"

namespace data_bridge::pyloop {

namespace detail {

// The imported table, one per extension module that includes these headers.
inline const db_pyloop_c_api*& api_slot() noexcept {
  static const db_pyloop_c_api* table = nullptr;
  return table;
}

// True while Python objects may still be released from any thread: after finalization
// started, a thread that is not Python's own must not take the GIL, and what it holds is
// left to the process's exit.
inline bool python_alive() noexcept {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsInitialized() && !Py_IsFinalizing();
#else
  return Py_IsInitialized() && !_Py_IsFinalizing();
#endif
}

}  // namespace detail

// Checks table against what this extension was built with: 0, or -1 with ImportError set
// (GIL). import_api() runs it; it is public so that tests can show each refusal.
inline int check_api(const db_pyloop_c_api* table, unsigned api_version = DB_PYLOOP_API_VERSION,
                     unsigned long asio_version = ASIO_VERSION,
                     unsigned asio_config = detail::local_asio_config()) noexcept {
  if (table->api_version != api_version || table->struct_size < sizeof(db_pyloop_c_api)) {
    PyErr_Format(PyExc_ImportError,
                 "data_bridge.pyloop offers native bridge API version %u, this extension was "
                 "built for version %u: rebuild it against the installed data_bridge.pyloop",
                 table->api_version, api_version);
    return -1;
  }
  if (table->asio_version != asio_version) {
    PyErr_Format(PyExc_ImportError,
                 "data_bridge.pyloop was built with Asio %lu, this extension with Asio %lu: both "
                 "must use the same Asio headers to share the loop's io_context",
                 table->asio_version, asio_version);
    return -1;
  }
  if (table->asio_config != asio_config) {
    PyErr_Format(PyExc_ImportError,
                 "data_bridge.pyloop and this extension were built with different Asio "
                 "configurations (PyLoop flags %u, extension flags %u): define ASIO_STANDALONE "
                 "and ASIO_NO_DEPRECATED, keep typeid (no ASIO_NO_TYPEID) and std::aligned_alloc "
                 "(include a C++ library header before Asio), as PyLoop does",
                 table->asio_config, asio_config);
    return -1;
  }
  return 0;
}

// GIL held. Imports data_bridge.pyloop's C API once; null with ImportError on a mismatch.
inline const db_pyloop_c_api* import_api() noexcept {
  const db_pyloop_c_api*& slot = detail::api_slot();
  if (slot != nullptr) return slot;
  // PyCapsule_Import walks attributes from the top-level package: import the module first.
  PyObject* module = PyImport_ImportModule("data_bridge.pyloop._pyloop");
  if (module == nullptr) return nullptr;
  Py_DECREF(module);
  auto* table = static_cast<const db_pyloop_c_api*>(PyCapsule_Import(DB_PYLOOP_CAPSULE_NAME, 0));
  if (table == nullptr || check_api(table) < 0) return nullptr;
  slot = table;
  return slot;
}

// The imported table (import_api() must have succeeded first).
inline const db_pyloop_c_api& api() noexcept { return *detail::api_slot(); }

// Holds the GIL for its scope, from any thread (reentrant on a thread that holds it).
// Thread safety: one per thread, as PyGILState_Ensure.
class gil_guard {
 public:
  gil_guard() noexcept : state_(PyGILState_Ensure()) {}
  gil_guard(const gil_guard&) = delete;
  gil_guard& operator=(const gil_guard&) = delete;
  ~gil_guard() { PyGILState_Release(state_); }

 private:
  PyGILState_STATE state_;  // what to restore
};

// An owned reference to a Python object that may be moved to and destroyed on any thread: it
// takes the GIL to let go (and leaks on purpose once the interpreter is finalizing).
// Thread safety: one owner at a time; creating it from a PyObject* needs the GIL.
class py_object {
 public:
  py_object() noexcept = default;
  static py_object steal(PyObject* o) noexcept { return py_object(o); }
  static py_object borrow(PyObject* o) noexcept {
    Py_XINCREF(o);
    return py_object(o);
  }
  py_object(py_object&& other) noexcept : ptr_(std::exchange(other.ptr_, nullptr)) {}
  py_object& operator=(py_object&& other) noexcept {
    if (this != &other) {
      reset();
      ptr_ = std::exchange(other.ptr_, nullptr);
    }
    return *this;
  }
  py_object(const py_object&) = delete;
  py_object& operator=(const py_object&) = delete;
  ~py_object() { reset(); }

  PyObject* get() const noexcept { return ptr_; }
  PyObject* release() noexcept { return std::exchange(ptr_, nullptr); }
  explicit operator bool() const noexcept { return ptr_ != nullptr; }
  void reset() noexcept {
    PyObject* o = std::exchange(ptr_, nullptr);
    if (o == nullptr || !detail::python_alive()) return;
    gil_guard gil;
    Py_DECREF(o);
  }

 private:
  explicit py_object(PyObject* o) noexcept : ptr_(o) {}
  PyObject* ptr_ = nullptr;  // the owned reference, or null
};

// A Python exception carried through C++: thrown where a Python call failed, caught by C++
// code or turned back into the same Python exception at the boundary (restore()).
// Thread safety: may be copied and destroyed on any thread (it takes the GIL); value() and
// restore() need the GIL.
class python_error : public std::exception {
 public:
  // GIL. Takes the pending Python exception (a SystemError if none is pending).
  python_error() noexcept {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    if (type == nullptr) {
      PyErr_SetString(PyExc_SystemError, "python_error without a Python exception");
      PyErr_Fetch(&type, &value, &traceback);
    }
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != nullptr && value != nullptr) PyException_SetTraceback(value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    init(py_object::steal(value));
  }
  // GIL. Carries the exception instance exc.
  explicit python_error(PyObject* exc) noexcept { init(py_object::borrow(exc)); }
  python_error(const python_error& other) noexcept : what_(other.what_) {
    gil_guard gil;
    value_ = py_object::borrow(other.value_.get());
  }
  python_error(python_error&&) noexcept = default;
  python_error& operator=(const python_error&) = delete;
  ~python_error() override = default;

  const char* what() const noexcept override { return what_.c_str(); }
  PyObject* value() const noexcept { return value_.get(); }  // borrowed; GIL to use it
  // True when the exception is an instance of type (GIL).
  bool matches(PyObject* type) const noexcept {
    return value_ && PyErr_GivenExceptionMatches(value_.get(), type);
  }
  // GIL. Sets the Python error indicator to this exception.
  void restore() const noexcept {
    PyObject* v = value_.get();
    Py_INCREF(v);
    PyErr_Restore(Py_NewRef(reinterpret_cast<PyObject*>(Py_TYPE(v))), v, PyException_GetTraceback(v));
  }

 private:
  void init(py_object value) noexcept {
    value_ = std::move(value);
    try {
      what_ = Py_TYPE(value_.get())->tp_name;
      PyObject* text = PyObject_Str(value_.get());
      const char* utf8 = text != nullptr ? PyUnicode_AsUTF8(text) : nullptr;
      if (utf8 != nullptr && *utf8 != '\0') (what_ += ": ") += utf8;
      Py_XDECREF(text);
      PyErr_Clear();
    } catch (...) {
    }
  }
  py_object value_;   // the exception instance
  std::string what_;  // "TypeName: message", for C++ callers that log it
};

// A new reference to the Python exception for error (GIL): a python_error's own exception,
// MemoryError for std::bad_alloc, RuntimeError(what()) for any other std::exception.
// Null with an exception set if even that cannot be made.
inline PyObject* exception_to_python(std::exception_ptr error) noexcept {
  PyObject *type, *value, *traceback;
  try {
    std::rethrow_exception(error);
  } catch (const python_error& e) {
    PyObject* v = e.value();
    Py_INCREF(v);
    return v;
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  } catch (...) {
    PyErr_SetString(PyExc_RuntimeError, "unknown C++ exception");
  }
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  Py_XDECREF(type);
  Py_XDECREF(traceback);
  return value;
}

// GIL. Sets the Python error indicator for the C++ exception being handled; for use in a
// catch (...) block at an extension's boundary (raw C API functions).
inline void set_python_error_from_current_exception() noexcept {
  PyObject* exc = exception_to_python(std::current_exception());
  if (exc == nullptr) return;
  PyErr_Restore(Py_NewRef(reinterpret_cast<PyObject*>(Py_TYPE(exc))), exc, PyException_GetTraceback(exc));
}

}  // namespace data_bridge::pyloop
