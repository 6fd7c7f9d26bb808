// bindings/bind_readiness.cpp — the Loop's readiness methods (_add_reader, _add_writer,
// _remove_reader, _remove_writer) and the disposal of readiness callbacks.
//
// The core's io_watch keeps a reader and a writer callback per descriptor in the loop's
// readiness set. A callback is a Python Handle (add_reader) or a native one: a transport's
// reader or writer, or a waiting sock_* call. PyLoop.add_reader (python/.../_sockets.py)
// validates and converts the descriptor first; these methods take an int.
#include <climits>

#include "handle_object.hpp"
#include "loop_methods.hpp"

namespace pyloop::bindings {
namespace {

// _add_reader(fd, callback, *args) / _add_writer(...): installs a readiness callback on an
// integer descriptor. A callback already installed for that descriptor and direction is
// cancelled, as asyncio does. Returns the new handle.
PyObject* add_watch(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames,
                    io_watch::direction d, const char* method) {
  if (kwnames != nullptr && PyTuple_GET_SIZE(kwnames) > 0) {
    PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments", method);
    return nullptr;
  }
  const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (nargs < 2) return missing_argument(method, nargs == 0 ? "fd" : "callback");
  loop_object* loop = as_loop(self);
  int fd;
  if (!require_open(loop) || !as_descriptor(args[0], fd)) return nullptr;
  nb::object h = nb::steal(reinterpret_cast<PyObject*>(new_handle(self, args[1], args + 2, nargs - 2, nullptr)));
  if (!h.is_valid() || !require_open(loop)) return nullptr;
  callback replaced;
  // watch() takes the handle's reference only when it succeeds.
  if (std::error_code ec = loop->driver->watch(fd, d, callback{&handle_callback_ops, h.ptr()}, replaced)) {
    return set_os_error(ec);
  }
  nb::object result = h;  // the registry now owns the reference h held; the caller gets one
  (void)h.release();
  if (!dispose_watch_callback(replaced)) return nullptr;
  return result.release().ptr();
}

// _remove_reader(fd) / _remove_writer(fd): True if a callback was installed; it is cancelled.
PyObject* remove_watch(PyObject* self, PyObject* fd_object, io_watch::direction d) {
  loop_object* loop = as_loop(self);
  int fd;
  if (!as_descriptor(fd_object, fd)) {
    // A descriptor beyond any registrable one is simply not registered.
    if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return nullptr;
    PyErr_Clear();
    Py_RETURN_FALSE;
  }
  if (loop->closed) Py_RETURN_FALSE;
  callback removed = loop->driver->unwatch(fd, d);
  if (removed.ops == nullptr) Py_RETURN_FALSE;
  if (!dispose_watch_callback(removed)) return nullptr;
  Py_RETURN_TRUE;
}

}  // namespace

PyObject* loop_add_reader(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  return add_watch(self, args, nargsf, kwnames, io_watch::direction::read, "_add_reader");
}

PyObject* loop_add_writer(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  return add_watch(self, args, nargsf, kwnames, io_watch::direction::write, "_add_writer");
}

PyObject* loop_remove_reader(PyObject* self, PyObject* fd) {
  return remove_watch(self, fd, io_watch::direction::read);
}

PyObject* loop_remove_writer(PyObject* self, PyObject* fd) {
  return remove_watch(self, fd, io_watch::direction::write);
}

bool as_descriptor(PyObject* value, int& fd) {
  long v = PyLong_AsLong(value);
  if (v == -1 && PyErr_Occurred()) return false;
  if (v < 0) {
    PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %ld", v);
    return false;
  }
  if (v > INT_MAX) {  // what epoll registration raises for it in asyncio
    PyErr_SetString(PyExc_OverflowError, "file descriptor is greater than maximum");
    return false;
  }
  fd = static_cast<int>(v);
  return true;
}

const native_watch_kind* native_kind_of(const callback& cb) noexcept {
  for (const native_watch_kind* kind : {&stream_reader_kind, &stream_writer_kind, &sock_op_kind,
                                        &datagram_read_kind, &datagram_write_kind,
                                        &datagram_resume_kind, &child_watch_kind}) {
    if (cb.ops == kind->ops) return kind;
  }
  return nullptr;
}

bool dispose_watch_callback(const callback& cb) {
  if (cb.ops == nullptr) return true;
  if (native_kind_of(cb) != nullptr) {
    cb.discard();
    return true;
  }
  // A Python handle: cancelled, as asyncio cancels a replaced or removed reader's handle.
  nb::object old = release_from_queue(cb.payload);
  nb::object done = nb::steal(PyObject_CallMethod(old.ptr(), "cancel", nullptr));
  return done.is_valid();
}

}  // namespace pyloop::bindings
