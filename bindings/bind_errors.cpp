// bindings/bind_errors.cpp — native failures as Python exceptions (see errors.hpp).
#include "errors.hpp"

#include <cerrno>
#include <exception>
#include <new>

namespace pyloop::bindings {

PyObject* set_os_error(int error) noexcept {
  // PyErr_SetFromErrno picks the subclass (ConnectionResetError, BlockingIOError...) and
  // strerror's text from errno, exactly as the socket module's own errors are made.
  errno = error;
  return PyErr_SetFromErrno(PyExc_OSError);
}

PyObject* set_os_error_with_filename(int error, PyObject* filename) noexcept {
  errno = error;
  return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, filename);
}

PyObject* set_loop_closed() noexcept {
  PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
  return nullptr;
}

void set_error_from_current_exception() noexcept {
  try {
    throw;
  } catch (nanobind::python_error& e) {
    e.restore();  // a Python error carried through C++ code: put it back as it was
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::system_error& e) {
    set_os_error(e.code().value());
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  } catch (...) {
    PyErr_SetString(PyExc_RuntimeError, "unknown C++ exception in data_bridge.pyloop");
  }
}

callback_status report_callback_error(PyObject* where) noexcept {
  if (exiting_exception_pending()) return callback_status::abort;
  PyErr_WriteUnraisable(where);
  return callback_status::done;
}

}  // namespace pyloop::bindings
