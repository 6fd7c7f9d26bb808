// bindings/bind_sock_ops.cpp — sock_recv, sock_recv_into and sock_sendall without Python callbacks.
//
// asyncio's sock_* coroutines try the system call and, when it would block, create a future
// and install a Python readiness handle that retries the call and resolves the future. Here
// the three calls an echo or proxy loop makes per message are native end to end:
// Loop._sock_recv & co. try the call in C++ and return its result when it completes at once
// (no future, no handle, no exception object for EAGAIN). Otherwise they return a sock_op:
// an awaitable around a new future, installed in the loop's readiness registry as a native
// callback that retries the call, unwatches and resolves the future. The coroutines in
// python/.../_sockets.py await it and call its unwatch() when they leave the await any other
// way (cancelled), so a cancelled call leaves the socket unregistered before its task resumes
// user code, as asyncio's done-callback does (docs/architecture.md, "Networking").
//
// Only plain non-blocking socket.socket objects outside debug mode take this path, with
// arguments of the plain types. Anything else gets NotImplemented and the coroutines' generic
// Python path: its errors are the socket module's own, and debug mode times its callbacks.
#include <sys/socket.h>

#include <cerrno>
#include <climits>
#include <new>

#include "loop_object.hpp"
#include "module_state.hpp"

namespace pyloop::bindings {
namespace {

enum class op_kind : unsigned char { recv, recv_into, sendall };

// One sock_* call waiting for readiness. A Python object, tracked by the garbage collector
// (the coroutine awaiting it and its future's callbacks can form cycles with it), and while
// installed the payload of fd's readiness callback: the registry owns one reference, each
// dispatch one more.
// Thread safety: the loop's thread, GIL held.
struct sock_op_object {
  PyObject_HEAD
  nb::object loop;    // the loop whose readiness registry the call waits in
  nb::object future;  // resolved with the call's result or error
  nb::object sock;    // the socket, kept alive while waiting as asyncio's handle keeps it
  nb::object buffer;  // recv_into: the object received into (its buffer is taken per attempt)
  Py_buffer data;     // sendall: an export of the data (obj null if none), held while waiting
                      // as asyncio holds a memoryview of it
  Py_ssize_t size;    // recv: the most bytes to receive
  Py_ssize_t sent;    // sendall: bytes of `data` already sent (they stay sent if cancelled)
  int fd;             // the socket's descriptor when the wait began
  op_kind kind;       // which call this is
  bool installed;     // currently fd's readiness callback (not yet removed or replaced)
};

sock_op_object* as_op(void* o) noexcept { return static_cast<sock_op_object*>(o); }

io_watch::direction direction_of(op_kind kind) noexcept {
  return kind == op_kind::sendall ? io_watch::direction::write : io_watch::direction::read;
}

bool would_block(int error) noexcept { return error == EAGAIN || error == EWOULDBLOCK; }

// The descriptor of sock if the native path serves it: exactly socket.socket (not a subclass
// such as ssl.SSLSocket, which may override recv), open, non-blocking (timeout 0: a socket
// with a timeout makes socket.recv wait, and asyncio lets it), outside debug mode. -1 for
// the generic Python path; -2 with an exception set.
int native_descriptor(loop_object* loop, PyObject* sock) {
  module_state& s = state();
  if (loop->debug || Py_TYPE(sock) != reinterpret_cast<PyTypeObject*>(s.socket_type.ptr())) {
    return -1;
  }
  PyObject* argv[] = {sock};
  nb::object timeout = nb::steal(PyObject_VectorcallMethod(
      s.str_gettimeout.ptr(), argv, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  if (!timeout.is_valid()) return -2;
  if (!PyFloat_CheckExact(timeout.ptr()) || PyFloat_AS_DOUBLE(timeout.ptr()) != 0.0) return -1;
  nb::object fileno = nb::steal(PyObject_VectorcallMethod(
      s.str_fileno.ptr(), argv, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  if (!fileno.is_valid()) return -2;
  long fd = PyLong_AsLong(fileno.ptr());
  if (fd == -1 && PyErr_Occurred()) return -2;
  return fd < 0 || fd > INT_MAX ? -1 : static_cast<int>(fd);
}

// One recv() into a writable buffer: the count as an int; empty with no error when it would
// block; empty with errno's OSError subclass set otherwise.
nb::object receive_into(int fd, const Py_buffer& view) {
  // socket.recv_into returns 0 for an empty buffer without a system call (recv() of 0 bytes
  // would block on an empty TCP socket): no wait, as in asyncio.
  if (view.len == 0) return nb::steal(PyLong_FromLong(0));
  ssize_t received;
  do {
    received = ::recv(fd, view.buf, static_cast<size_t>(view.len), 0);
  } while (received < 0 && errno == EINTR);
  if (received < 0) {
    if (!would_block(errno)) PyErr_SetFromErrno(PyExc_OSError);
    return nb::object();
  }
  return nb::steal(PyLong_FromSsize_t(received));
}

// Sends data from offset `sent` on until all of it is sent or the socket is full (one more
// send() than asyncio's single attempt, which saves a readiness round when the kernel took a
// partial write and has room again). None when all is sent; empty with no error when the
// socket is full; empty with the OSError set. MSG_NOSIGNAL: a closed peer gives EPIPE even
// where SIGPIPE is not ignored (CPython ignores it at start-up, so sock.send behaves alike).
nb::object send_rest(int fd, const Py_buffer& data, Py_ssize_t& sent) {
  const char* base = static_cast<const char*>(data.buf);
  do {  // at least once: sock_sendall(b"") still makes the call, and reports its error
    ssize_t n = ::send(fd, base + sent, static_cast<size_t>(data.len - sent), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (!would_block(errno)) PyErr_SetFromErrno(PyExc_OSError);
      return nb::object();
    }
    sent += n;
  } while (sent < data.len);
  return nb::none();
}

// The retry of op's call on readiness, with the conventions of the helpers above.
nb::object attempt(sock_op_object* op) {
  switch (op->kind) {
    case op_kind::recv: {
      bool empty;  // nothing to read yet: no error set, the result is empty
      return recv_bytes(as_loop(op->loop.ptr()), op->fd, op->size, empty);
    }
    case op_kind::recv_into: {
      Py_buffer view;
      if (PyObject_GetBuffer(op->buffer.ptr(), &view, PyBUF_WRITABLE) < 0) return nb::object();
      nb::object count = receive_into(op->fd, view);
      PyBuffer_Release(&view);
      return count;
    }
    case op_kind::sendall:
      return send_rest(op->fd, op->data, op->sent);
  }
  return nb::object();
}

// Takes op out of fd's readiness registry if it is still installed there.
void stop_watching(sock_op_object* op) noexcept {
  if (!op->installed || !op->loop.is_valid()) return;
  loop_object* loop = as_loop(op->loop.ptr());
  if (loop->driver == nullptr) return;  // closing the loop already discarded it
  callback removed = loop->driver->unwatch(op->fd, direction_of(op->kind));
  if (!dispose_watch_callback(removed)) PyErr_WriteUnraisable(op->loop.ptr());
}

// fut.set_result(value) or fut.set_exception(value); a failure there has no caller to go to.
callback_status settle(sock_op_object* op, nb::object value, bool failed) noexcept {
  module_state& s = state();
  PyObject* argv[] = {op->future.ptr(), value.ptr()};
  nb::object done = nb::steal(PyObject_VectorcallMethod(
      (failed ? s.str_set_exception : s.str_set_result).ptr(), argv,
      2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  if (done.is_valid()) return callback_status::done;
  if (exiting_exception_pending()) return callback_status::abort;
  PyErr_WriteUnraisable(op->future.ptr());
  return callback_status::done;
}

// The readiness callback: retry the call; once it completes or fails, unwatch and resolve
// the future, as asyncio's _sock_recv/_sock_sendall handles do.
callback_status run_op(void* payload) noexcept {
  nb::object self = nb::steal(static_cast<PyObject*>(payload));  // the dispatch's reference
  sock_op_object* op = as_op(payload);
  if (!op->installed || !op->future.is_valid()) return callback_status::done;
  PyObject* argv[] = {op->future.ptr()};
  nb::object done = nb::steal(PyObject_VectorcallMethod(
      state().str_done.ptr(), argv, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  int is_done = done.is_valid() ? PyObject_IsTrue(done.ptr()) : -1;
  if (is_done != 0) {
    // Cancelled, its task not resumed yet: leave the data for the next call, as asyncio's
    // handle does, and stop watching now rather than spin on a level-triggered socket.
    stop_watching(op);
    if (is_done > 0) return callback_status::done;
    if (exiting_exception_pending()) return callback_status::abort;
    PyErr_WriteUnraisable(op->future.ptr());
    return callback_status::done;
  }
  nb::object result = attempt(op);
  if (!result.is_valid() && !PyErr_Occurred()) return callback_status::done;  // wait on
  if (!result.is_valid() && exiting_exception_pending()) return callback_status::abort;
  const bool failed = !result.is_valid();
  if (failed) result = take_exception();
  stop_watching(op);
  return settle(op, std::move(result), failed);
}

// Replaced (add_reader on the same descriptor, as in asyncio the old handle is cancelled and
// its future never completes), removed, or dropped with the loop: the registry's reference.
void discard_op(void* payload) noexcept {
  as_op(payload)->installed = false;
  nb::object registry_reference = nb::steal(static_cast<PyObject*>(payload));
}


// A new operation on fd (not installed yet), after asyncio's checks before a wait: the
// future from create_future(), and _ensure_fd_no_transport (RuntimeError if a transport
// owns the descriptor). Null with an exception set.
sock_op_object* new_op(PyObject* self, PyObject* sock, int fd, op_kind kind) {
  module_state& s = state();
  PyObject* self_only[] = {self};
  nb::object future = nb::steal(PyObject_VectorcallMethod(
      s.str_create_future.ptr(), self_only, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  if (!future.is_valid()) return nullptr;
  nb::object fd_object = nb::steal(PyLong_FromLong(fd));
  if (!fd_object.is_valid()) return nullptr;
  PyObject* argv[] = {self, fd_object.ptr()};
  nb::object checked = nb::steal(PyObject_VectorcallMethod(
      s.str_ensure_fd_no_transport.ptr(), argv, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  if (!checked.is_valid()) return nullptr;

  sock_op_object* op = PyObject_GC_New(sock_op_object, s.sock_op_type);
  if (op == nullptr) return nullptr;
  new (&op->loop) nb::object(nb::borrow(self));
  new (&op->future) nb::object(std::move(future));
  new (&op->sock) nb::object(nb::borrow(sock));
  new (&op->buffer) nb::object();
  op->data = Py_buffer{};
  op->size = 0;
  op->sent = 0;
  op->fd = fd;
  op->kind = kind;
  op->installed = false;
  PyObject_GC_Track(op);
  return op;
}

// Installs op as fd's readiness callback (a callback already there is disposed of, as
// add_reader cancels the handle it replaces) and returns op to be awaited.
PyObject* start_watching(sock_op_object* created) {
  nb::object op = nb::steal(reinterpret_cast<PyObject*>(created));
  loop_object* loop = as_loop(created->loop.ptr());
  if (loop->closed || loop->driver == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
    return nullptr;
  }
  callback replaced;
  std::error_code ec = loop->driver->watch(created->fd, direction_of(created->kind),
                                           callback{&sock_op_kind.ops, Py_NewRef(op.ptr())}, replaced);
  if (ec) {
    nb::object rejected = nb::steal(op.ptr());  // the registry's reference
    errno = ec.value();
    return PyErr_SetFromErrno(PyExc_OSError);
  }
  created->installed = true;
  if (!dispose_watch_callback(replaced)) {
    stop_watching(created);
    return nullptr;
  }
  return op.release().ptr();
}

bool check_arguments(const char* method, Py_ssize_t nargs) {
  if (nargs == 2) return true;
  PyErr_Format(PyExc_TypeError, "%s() takes 2 arguments (%zd given)", method, nargs);
  return false;
}

// -- the SockOp type ---------------------------------------------------------------------

void clear_op(sock_op_object* op) noexcept {
  clear_ref(op->loop);
  clear_ref(op->future);
  clear_ref(op->sock);
  clear_ref(op->buffer);
  PyBuffer_Release(&op->data);  // no-op when obj is null
}

int op_traverse(PyObject* self, visitproc visit, void* arg) {
  sock_op_object* op = as_op(self);
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(op->loop.ptr());
  Py_VISIT(op->future.ptr());
  Py_VISIT(op->sock.ptr());
  Py_VISIT(op->buffer.ptr());
  Py_VISIT(op->data.obj);
  return 0;
}

int op_clear(PyObject* self) {
  clear_op(as_op(self));
  return 0;
}

void op_dealloc(PyObject* self) {
  PyObject_GC_UnTrack(self);
  sock_op_object* op = as_op(self);
  clear_op(op);
  op->loop.~object();
  op->future.~object();
  op->sock.~object();
  op->buffer.~object();
  PyTypeObject* type = Py_TYPE(self);
  type->tp_free(self);
  Py_DECREF(type);
}

// `await op` awaits its future.
PyObject* op_await(PyObject* self) {
  PyObject* future = as_op(self)->future.ptr();
  PyAsyncMethods* methods = future != nullptr ? Py_TYPE(future)->tp_as_async : nullptr;
  if (methods == nullptr || methods->am_await == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "sock_* operation has no future to await");
    return nullptr;
  }
  return methods->am_await(future);
}

PyObject* op_unwatch(PyObject* self, PyObject*) {
  stop_watching(as_op(self));
  if (PyErr_Occurred()) return nullptr;
  Py_RETURN_NONE;
}

PyMethodDef op_methods[] = {
    {"unwatch", op_unwatch, METH_NOARGS,
     "Stop waiting for readiness (the coroutine was cancelled); the future is left as it is."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot op_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(op_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(op_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(op_clear)},
    {Py_am_await, reinterpret_cast<void*>(op_await)},
    {Py_tp_methods, op_methods},
    {Py_tp_doc, const_cast<char*>("A loop.sock_* call waiting for its socket to be ready.")},
    {0, nullptr},
};

PyType_Spec op_spec = {"data_bridge.pyloop._pyloop.SockOp", sizeof(sock_op_object), 0,
                       Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
                       op_slots};

}  // namespace

// The registry's reference to an installed operation: the operation itself is GC-tracked.
const native_watch_kind sock_op_kind{
    {run_op, discard_op, never_cancelled, nullptr, retain_object_payload},
    traverse_object_payload};

// _sock_recv(sock, n): bytes if recv() completed at once (b"" at end of stream), the OSError
// if it failed, a SockOp to await if it would block, NotImplemented for the generic path.
PyObject* loop_sock_recv(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_arguments("_sock_recv", nargs)) return nullptr;
  loop_object* loop = as_loop(self);
  int fd = native_descriptor(loop, args[0]);
  if (fd == -2) return nullptr;
  // Only a plain non-negative int: socket.recv raises its own errors for anything else.
  if (fd < 0 || !PyLong_CheckExact(args[1])) Py_RETURN_NOTIMPLEMENTED;
  Py_ssize_t size = PyLong_AsSsize_t(args[1]);
  if (size < 0) {
    PyErr_Clear();
    Py_RETURN_NOTIMPLEMENTED;
  }
  // socket.recv(0) returns b"" without a system call, as recv_into does for an empty buffer.
  if (size == 0) return PyBytes_FromStringAndSize(nullptr, 0);
  bool empty;
  nb::object data = recv_bytes(loop, fd, size, empty);
  if (!empty) return data.release().ptr();
  sock_op_object* op = new_op(self, args[0], fd, op_kind::recv);
  if (op == nullptr) return nullptr;
  op->size = size;
  return start_watching(op);
}

// _sock_recv_into(sock, buf): the count if recv() completed at once, the OSError if it
// failed, a SockOp to await if it would block, NotImplemented for the generic path (also
// for a buffer that is not writable and contiguous, so socket.recv_into words the error).
PyObject* loop_sock_recv_into(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_arguments("_sock_recv_into", nargs)) return nullptr;
  loop_object* loop = as_loop(self);
  int fd = native_descriptor(loop, args[0]);
  if (fd == -2) return nullptr;
  if (fd < 0) Py_RETURN_NOTIMPLEMENTED;
  Py_buffer view;
  if (PyObject_GetBuffer(args[1], &view, PyBUF_WRITABLE) < 0) {
    PyErr_Clear();
    Py_RETURN_NOTIMPLEMENTED;
  }
  nb::object count = receive_into(fd, view);
  PyBuffer_Release(&view);  // asyncio holds no export while it waits: the buffer may resize
  if (count.is_valid() || PyErr_Occurred()) return count.release().ptr();
  sock_op_object* op = new_op(self, args[0], fd, op_kind::recv_into);
  if (op == nullptr) return nullptr;
  op->buffer = nb::borrow(args[1]);
  return start_watching(op);
}

// _sock_sendall(sock, data): None if everything was sent at once, the OSError if send()
// failed, a SockOp to await if the socket filled up first, NotImplemented for the generic
// path (also for data that is not a contiguous buffer, so socket.send words the error).
PyObject* loop_sock_sendall(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_arguments("_sock_sendall", nargs)) return nullptr;
  loop_object* loop = as_loop(self);
  int fd = native_descriptor(loop, args[0]);
  if (fd == -2) return nullptr;
  if (fd < 0) Py_RETURN_NOTIMPLEMENTED;
  Py_buffer data;
  if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
    PyErr_Clear();
    Py_RETURN_NOTIMPLEMENTED;
  }
  Py_ssize_t sent = 0;
  nb::object done = send_rest(fd, data, sent);
  if (done.is_valid() || PyErr_Occurred()) {
    PyBuffer_Release(&data);
    return done.release().ptr();
  }
  sock_op_object* op = new_op(self, args[0], fd, op_kind::sendall);
  if (op == nullptr) {
    PyBuffer_Release(&data);
    return nullptr;
  }
  op->data = data;  // the export moves into the operation, released with it
  op->sent = sent;
  return start_watching(op);
}

void export_sock_ops(nb::module_&) {
  PyObject* type = PyType_FromSpec(&op_spec);
  if (type == nullptr) throw nb::python_error();
  module_state& s = state();
  s.owned_types.push_back(nb::steal(type));
  s.sock_op_type = reinterpret_cast<PyTypeObject*>(type);
}

}  // namespace pyloop::bindings
