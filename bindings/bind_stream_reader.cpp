// bindings/bind_stream_reader.cpp — the native read path of stream transports.
//
// The readiness callback of a transport's socket is not a Python handle but a stream_reader:
// on each readable event it does, in C++, what the transport's Python reader would do, inside
// the transport's context, and calls back into the Python transport only for end of stream
// and errors. For an asyncio.Protocol: one recv() through the loop's buffer, then
// protocol.data_received(bytes) by vectorcall. For an asyncio.BufferedProtocol: get_buffer(-1),
// recv() straight into that buffer (no intermediate copy), then buffer_updated(n). Debug mode
// keeps the Python reader. docs/architecture.md, "Networking", has the measurements.
#include <sys/socket.h>

#include <cerrno>

#include "handle_object.hpp"
#include "loop_object.hpp"
#include "module_state.hpp"

namespace pyloop::bindings {
namespace {

// One installed reader. Reference-counted because io_watch retains it for each dispatch.
// Thread safety: the loop's thread, GIL held (invoke and discard run in the callback phase
// or under the GIL at close).
struct stream_reader {
  int refs = 1;             // io_watch's installed reference + one per running dispatch
  int fd;                   // the transport's socket
  loop_object* loop;        // borrowed: the loop outlives its watches
  nb::object transport;     // the Python transport (slow paths: _on_eof, _fatal_error)
  nb::object protocol;      // its protocol (data_received)
  nb::object context;       // contextvars.Context captured at install, as a Handle would
  bool buffered;            // the protocol is a BufferedProtocol
};

void release(stream_reader* r) noexcept {
  if (--r->refs == 0) delete r;
}

callback_status report(stream_reader* r, const char* message) noexcept {
  if (exiting_exception_pending()) return callback_status::abort;
  nb::object exc = take_exception();
  nb::object text = nb::steal(PyUnicode_FromString(message));
  nb::object done = nb::steal(
      PyObject_CallMethod(r->transport.ptr(), "_fatal_error", "OO", exc.ptr(), text.ptr()));
  if (done.is_valid()) return callback_status::done;
  if (exiting_exception_pending()) return callback_status::abort;
  PyErr_WriteUnraisable(r->transport.ptr());
  return callback_status::done;
}

callback_status end_of_stream(stream_reader* r) noexcept {
  nb::object done = nb::steal(PyObject_CallMethod(r->transport.ptr(), "_on_eof", nullptr));
  if (done.is_valid()) return callback_status::done;
  return report(r, "Fatal error: protocol.eof_received() call failed.");
}

callback_status read_once(stream_reader* r) noexcept {
  nb::object data = recv_bytes(r->loop, r->fd);
  if (!data.is_valid()) {
    if (PyErr_ExceptionMatches(PyExc_BlockingIOError)) {  // readiness was spurious
      PyErr_Clear();
      return callback_status::done;
    }
    return report(r, "Fatal read error on socket transport");
  }
  if (PyBytes_GET_SIZE(data.ptr()) == 0) return end_of_stream(r);
  PyObject* argv[] = {r->protocol.ptr(), data.ptr()};
  nb::object done = nb::steal(PyObject_VectorcallMethod(
      state().str_data_received.ptr(), argv, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  if (done.is_valid()) return callback_status::done;
  return report(r, "Fatal error: protocol.data_received() call failed.");
}

callback_status read_into_buffer(stream_reader* r) noexcept {
  PyObject* get_argv[] = {r->protocol.ptr(), state().minus_one.ptr()};
  nb::object buffer = nb::steal(PyObject_VectorcallMethod(
      state().str_get_buffer.ptr(), get_argv, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  if (!buffer.is_valid()) return report(r, "Fatal error: protocol.get_buffer() call failed.");
  Py_buffer view;
  if (PyObject_GetBuffer(buffer.ptr(), &view, PyBUF_WRITABLE) < 0) {
    return report(r, "Fatal error: protocol.get_buffer() call failed.");
  }
  if (view.len == 0) {
    PyBuffer_Release(&view);
    PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
    return report(r, "Fatal error: protocol.get_buffer() call failed.");
  }
  ssize_t received;
  do {
    received = ::recv(r->fd, view.buf, static_cast<std::size_t>(view.len), 0);
  } while (received < 0 && errno == EINTR);
  int error = errno;
  PyBuffer_Release(&view);
  buffer = nb::object();
  if (received < 0) {
    if (error == EAGAIN || error == EWOULDBLOCK) return callback_status::done;  // spurious
    errno = error;
    PyErr_SetFromErrno(PyExc_OSError);
    return report(r, "Fatal read error on socket transport");
  }
  if (received == 0) return end_of_stream(r);
  nb::object count = nb::steal(PyLong_FromSsize_t(received));
  if (!count.is_valid()) return report(r, "Fatal error: protocol.buffer_updated() call failed.");
  PyObject* argv[] = {r->protocol.ptr(), count.ptr()};
  nb::object done = nb::steal(PyObject_VectorcallMethod(
      state().str_buffer_updated.ptr(), argv, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  if (done.is_valid()) return callback_status::done;
  return report(r, "Fatal error: protocol.buffer_updated() call failed.");
}

callback_status invoke_reader(void* payload) noexcept {
  auto* r = static_cast<stream_reader*>(payload);
  callback_status status = callback_status::done;
  if (PyContext_Enter(r->context.ptr()) == 0) {
    status = r->buffered ? read_into_buffer(r) : read_once(r);
    if (PyContext_Exit(r->context.ptr()) < 0 && status == callback_status::done) {
      PyErr_WriteUnraisable(r->transport.ptr());
    }
  } else {
    PyErr_WriteUnraisable(r->transport.ptr());
  }
  release(r);
  return status;
}

void discard_reader(void* payload) noexcept { release(static_cast<stream_reader*>(payload)); }
void retain_reader(void* payload) noexcept { ++static_cast<stream_reader*>(payload)->refs; }

int traverse_reader(void* payload, visitproc visit, void* arg) {
  auto* r = static_cast<stream_reader*>(payload);
  Py_VISIT(r->transport.ptr());
  Py_VISIT(r->protocol.ptr());
  Py_VISIT(r->context.ptr());
  return 0;
}

}  // namespace

const native_watch_kind stream_reader_kind{
    {invoke_reader, discard_reader, never_cancelled, nullptr, retain_reader}, traverse_reader};

// _add_stream_reader(fd, transport, protocol, buffered): installs the native read path on fd,
// replacing any reader (a replaced Python handle is cancelled).
PyObject* loop_add_stream_reader(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 4) {
    PyErr_SetString(PyExc_TypeError, "_add_stream_reader() takes 4 arguments");
    return nullptr;
  }
  int buffered = PyObject_IsTrue(args[3]);
  if (buffered < 0) return nullptr;
  loop_object* loop = as_loop(self);
  if (loop->closed || loop->driver == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
    return nullptr;
  }
  int fd;
  if (!as_descriptor(args[0], fd)) return nullptr;
  nb::object context = nb::steal(PyContext_CopyCurrent());
  if (!context.is_valid()) return nullptr;
  auto* r = new stream_reader();
  r->fd = fd;
  r->loop = loop;
  r->transport = nb::borrow(args[1]);
  r->protocol = nb::borrow(args[2]);
  r->context = std::move(context);
  r->buffered = buffered != 0;
  callback replaced;
  std::error_code ec =
      loop->driver->watch(r->fd, io_watch::direction::read, callback{&stream_reader_kind.ops, r}, replaced);
  if (ec) {
    release(r);
    errno = ec.value();
    return PyErr_SetFromErrno(PyExc_OSError);
  }
  if (!dispose_watch_callback(replaced)) return nullptr;
  Py_RETURN_NONE;
}

}  // namespace pyloop::bindings
