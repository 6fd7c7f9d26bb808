// bindings/bind_sock_ops.cpp — the sock_* calls: one way to try a call and wait for readiness.
//
// asyncio's sock_* coroutines try the system call and, when it would block, create a future
// and install a readiness handle that retries the call and resolves the future. Here that
// waiting is one native object, the SockOp: an awaitable around a new future, installed in
// the loop's readiness registry as a native callback that retries the call, unwatches and
// resolves the future. The coroutines in python/.../_sockets.py await it and call its
// unwatch() when they leave the await any other way (cancelled), so a cancelled call leaves
// the socket unregistered before its task resumes user code, as asyncio's done-callback does.
//
// What is retried is either a call this file makes through the core (core/socket_io: recv,
// recv_into and sendall on a plain non-blocking socket.socket, the calls an echo or proxy
// makes per message: no future, no handle, no exception object when they complete at once),
// or a Python callable with its arguments (_sock_wait: every other sock_* method, and the
// three above on sockets the native path does not serve), retried while it raises
// BlockingIOError or InterruptedError.
#include <climits>
#include <new>

#include "loop_methods.hpp"
#include "module_state.hpp"
#include "pyloop/socket_io.hpp"

namespace pyloop::bindings {
namespace {

enum class op_kind : unsigned char { recv, recv_into, sendall, call };

// One sock_* call waiting for readiness. A Python object, tracked by the garbage collector
// (the coroutine awaiting it and its future's callbacks can form cycles with it), and while
// installed the payload of fd's readiness callback: the registry owns one reference, each
// dispatch one more.
// Thread safety: the loop's thread, GIL held.
struct sock_op_object {
  PyObject_HEAD
  nb::object loop;     // the loop whose readiness registry the call waits in
  nb::object future;   // resolved with the call's result or error
  nb::object sock;     // the socket, kept alive while waiting as asyncio's handle keeps it
  nb::object buffer;   // recv_into: the object received into (its buffer is taken per attempt)
  nb::object attempt;  // call: the callable retried on readiness
  nb::object args;     // call: its positional arguments (a tuple)
  Py_buffer data;      // sendall: an export of the data (obj null if none), held while waiting
                       // as asyncio holds a memoryview of it
  Py_ssize_t size;     // recv: the most bytes to receive
  std::size_t sent;    // sendall: bytes of `data` already sent (they stay sent if cancelled)
  int fd;              // the descriptor waited on
  op_kind kind;        // which call this is
  bool writing;        // waits for writability (else readability)
  bool installed;      // currently fd's readiness callback (not yet removed or replaced)
};

sock_op_object* as_op(void* o) noexcept { return static_cast<sock_op_object*>(o); }

io_watch::direction direction_of(const sock_op_object* op) noexcept {
  return op->writing ? io_watch::direction::write : io_watch::direction::read;
}

loop_driver& driver_of(const sock_op_object* op) noexcept { return *as_loop(op->loop.ptr())->driver; }

// The descriptor of sock if the native path serves it: exactly socket.socket (not a subclass
// such as ssl.SSLSocket, which may override recv), open, non-blocking (timeout 0: a socket
// with a timeout makes socket.recv wait, and asyncio lets it). -1 for the generic path; -2
// with an exception set.
int native_descriptor(PyObject* sock) {
  module_state& s = state();
  if (Py_TYPE(sock) != reinterpret_cast<PyTypeObject*>(s.socket_type.ptr())) return -1;
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

// The attempts below share one convention: a result when the call completed; empty with no
// exception set when it would block (wait on); empty with the exception set when it failed.

// One recv() of at most `size` bytes, as socket.recv(size) returns them: up to the loop's
// receive buffer size through that buffer (a fresh 256 KiB bytes per call costs an
// mmap/munmap pair), beyond into a bytes object of `size` shrunk to what arrived.
nb::object receive_bytes(loop_driver& driver, int fd, Py_ssize_t size) {
  const auto wanted = static_cast<std::size_t>(size);
  if (wanted <= loop_driver::receive_buffer_size) {
    char* buffer = driver.receive_buffer();
    if (buffer == nullptr) return nb::steal(PyErr_NoMemory());
    io_result got = read_some(descriptor_kind::socket, fd, buffer, wanted);
    if (!got.ok()) return got.would_block() ? nb::object() : nb::steal(set_os_error(got.error));
    return nb::steal(PyBytes_FromStringAndSize(buffer, got.bytes));
  }
  nb::object out = nb::steal(PyBytes_FromStringAndSize(nullptr, size));
  if (!out.is_valid()) return nb::object();
  io_result got = read_some(descriptor_kind::socket, fd, PyBytes_AS_STRING(out.ptr()), wanted);
  if (!got.ok()) return got.would_block() ? nb::object() : nb::steal(set_os_error(got.error));
  if (got.bytes == size) return out;
  PyObject* raw = out.release().ptr();  // _PyBytes_Resize replaces it, or frees it on failure
  if (_PyBytes_Resize(&raw, got.bytes) < 0) return nb::object();
  return nb::steal(raw);
}

// One recv() into a writable buffer: the count as an int.
nb::object receive_into(int fd, const Py_buffer& view) {
  // socket.recv_into returns 0 for an empty buffer without a system call (recv() of 0 bytes
  // would block on an empty TCP socket): no wait, as in asyncio.
  if (view.len == 0) return nb::steal(PyLong_FromLong(0));
  io_result got = read_some(descriptor_kind::socket, fd, view.buf, static_cast<std::size_t>(view.len));
  if (!got.ok()) return got.would_block() ? nb::object() : nb::steal(set_os_error(got.error));
  return nb::steal(PyLong_FromSsize_t(got.bytes));
}

// Sends data from `sent` on until all of it is sent or the socket is full (one more send()
// than asyncio's single attempt, which saves a readiness round when the kernel took a
// partial write and has room again): None when all is sent.
nb::object send_rest(int fd, const Py_buffer& data, std::size_t& sent) {
  const auto size = static_cast<std::size_t>(data.len);
  io_result last = write_until_blocked(descriptor_kind::socket, fd,
                                       static_cast<const char*>(data.buf), size, sent);
  if (sent == size && last.ok()) return nb::none();
  if (!last.ok() && !last.would_block()) return nb::steal(set_os_error(last.error));
  return nb::object();
}

// attempt(*args), where BlockingIOError and InterruptedError mean "not yet".
nb::object call_attempt(const sock_op_object* op) {
  nb::object result = nb::steal(PyObject_Call(op->attempt.ptr(), op->args.ptr(), nullptr));
  if (!result.is_valid() && (PyErr_ExceptionMatches(PyExc_BlockingIOError) ||
                             PyErr_ExceptionMatches(PyExc_InterruptedError))) {
    PyErr_Clear();
  }
  return result;
}

// The retry of op's call on readiness.
nb::object attempt(sock_op_object* op) {
  switch (op->kind) {
    case op_kind::recv:
      return receive_bytes(driver_of(op), op->fd, op->size);
    case op_kind::recv_into: {
      Py_buffer view;
      if (PyObject_GetBuffer(op->buffer.ptr(), &view, PyBUF_WRITABLE) < 0) return nb::object();
      nb::object count = receive_into(op->fd, view);
      PyBuffer_Release(&view);
      return count;
    }
    case op_kind::sendall:
      return send_rest(op->fd, op->data, op->sent);
    case op_kind::call:
      return call_attempt(op);
  }
  return nb::object();
}

// Takes op out of fd's readiness registry if it is still installed there.
void stop_watching(sock_op_object* op) noexcept {
  if (!op->installed || !op->loop.is_valid()) return;
  callback removed = driver_of(op).unwatch(op->fd, direction_of(op));
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
  return report_callback_error(op->future.ptr());
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
  const int is_done = done.is_valid() ? PyObject_IsTrue(done.ptr()) : -1;
  if (is_done != 0) {
    // Cancelled, its task not resumed yet: leave the data for the next call, as asyncio's
    // handle does, and stop watching now rather than spin on a level-triggered socket.
    stop_watching(op);
    return is_done > 0 ? callback_status::done : report_callback_error(op->future.ptr());
  }
  nb::object result;
  try {
    result = attempt(op);
  } catch (...) {
    set_error_from_current_exception();  // memory ran out: the call fails with MemoryError
  }
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

void retain_op(void* payload) noexcept { nb::handle(static_cast<PyObject*>(payload)).inc_ref(); }

int traverse_op_payload(void* payload, visitproc visit, void* arg) {
  Py_VISIT(static_cast<PyObject*>(payload));
  return 0;
}

const callback_ops sock_op_ops{run_op, discard_op, nullptr, nullptr, retain_op};

// A new operation on fd (not installed yet), after asyncio's checks before a wait: the
// future from create_future(), and _ensure_fd_no_transport (RuntimeError if a transport
// owns the descriptor). Empty with an exception set.
nb::object new_op(PyObject* self, PyObject* sock, int fd, op_kind kind, bool writing) {
  module_state& s = state();
  PyObject* self_only[] = {self};
  nb::object future = nb::steal(PyObject_VectorcallMethod(
      s.str_create_future.ptr(), self_only, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  if (!future.is_valid()) return nb::object();
  nb::object fd_object = nb::steal(PyLong_FromLong(fd));
  if (!fd_object.is_valid()) return nb::object();
  PyObject* argv[] = {self, fd_object.ptr()};
  nb::object checked = nb::steal(PyObject_VectorcallMethod(
      s.str_ensure_fd_no_transport.ptr(), argv, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  if (!checked.is_valid()) return nb::object();

  sock_op_object* op = PyObject_GC_New(sock_op_object, s.sock_op_type);
  if (op == nullptr) return nb::object();
  new (&op->loop) nb::object(nb::borrow(self));
  new (&op->future) nb::object(std::move(future));
  new (&op->sock) nb::object(nb::borrow(sock));
  new (&op->buffer) nb::object();
  new (&op->attempt) nb::object();
  new (&op->args) nb::object();
  op->data = Py_buffer{};
  op->size = 0;
  op->sent = 0;
  op->fd = fd;
  op->kind = kind;
  op->writing = writing;
  op->installed = false;
  PyObject_GC_Track(op);
  return nb::steal(reinterpret_cast<PyObject*>(op));
}

// Installs op as its descriptor's readiness callback (a callback already there is disposed
// of, as add_reader cancels the handle it replaces) and returns op to be awaited.
PyObject* start_watching(nb::object op_object) {
  sock_op_object* op = as_op(op_object.ptr());
  loop_object* loop = as_loop(op->loop.ptr());
  if (!require_open(loop)) return nullptr;
  nb::object registry_reference = op_object;  // handed over once watch() took it
  callback replaced;
  if (std::error_code ec = loop->driver->watch(op->fd, direction_of(op),
                                               callback{&sock_op_ops, registry_reference.ptr()}, replaced)) {
    return set_os_error(ec);
  }
  (void)registry_reference.release();
  op->installed = true;
  if (!dispose_watch_callback(replaced)) {
    stop_watching(op);
    return nullptr;
  }
  return op_object.release().ptr();
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
  clear_ref(op->attempt);
  clear_ref(op->args);
  PyBuffer_Release(&op->data);  // no-op when obj is null
}

int op_traverse(PyObject* self, visitproc visit, void* arg) {
  sock_op_object* op = as_op(self);
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(op->loop.ptr());
  Py_VISIT(op->future.ptr());
  Py_VISIT(op->sock.ptr());
  Py_VISIT(op->buffer.ptr());
  Py_VISIT(op->attempt.ptr());
  Py_VISIT(op->args.ptr());
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
  op->attempt.~object();
  op->args.~object();
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
    {"unwatch", guarded_method<op_unwatch>(), METH_NOARGS,
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
const native_watch_kind sock_op_kind{&sock_op_ops, traverse_op_payload};

// _sock_recv(sock, n): bytes if recv() completed at once (b"" at end of stream), the OSError
// if it failed, a SockOp to await if it would block, NotImplemented for the generic path.
PyObject* loop_sock_recv(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_arguments("_sock_recv", nargs)) return nullptr;
  loop_object* loop = as_loop(self);
  const int fd = native_descriptor(args[0]);
  if (fd == -2) return nullptr;
  // Only a plain non-negative int: socket.recv raises its own errors for anything else.
  if (fd < 0 || !PyLong_CheckExact(args[1])) Py_RETURN_NOTIMPLEMENTED;
  const Py_ssize_t size = PyLong_AsSsize_t(args[1]);
  if (size < 0) {
    PyErr_Clear();
    Py_RETURN_NOTIMPLEMENTED;
  }
  // socket.recv(0) returns b"" without a system call, as recv_into does for an empty buffer.
  if (size == 0) return PyBytes_FromStringAndSize(nullptr, 0);
  nb::object data = receive_bytes(*loop->driver, fd, size);
  if (data.is_valid() || PyErr_Occurred()) return data.release().ptr();
  nb::object op = new_op(self, args[0], fd, op_kind::recv, false);
  if (!op.is_valid()) return nullptr;
  as_op(op.ptr())->size = size;
  return start_watching(std::move(op));
}

// _sock_recv_into(sock, buf): the count if recv() completed at once, the OSError if it
// failed, a SockOp to await if it would block, NotImplemented for the generic path (also
// for a buffer that is not writable and contiguous, so socket.recv_into words the error).
PyObject* loop_sock_recv_into(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_arguments("_sock_recv_into", nargs)) return nullptr;
  const int fd = native_descriptor(args[0]);
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
  nb::object op = new_op(self, args[0], fd, op_kind::recv_into, false);
  if (!op.is_valid()) return nullptr;
  as_op(op.ptr())->buffer = nb::borrow(args[1]);
  return start_watching(std::move(op));
}

// _sock_sendall(sock, data): None if everything was sent at once, the OSError if send()
// failed, a SockOp to await if the socket filled up first, NotImplemented for the generic
// path (also for data that is not a contiguous buffer, so socket.send words the error).
PyObject* loop_sock_sendall(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (!check_arguments("_sock_sendall", nargs)) return nullptr;
  const int fd = native_descriptor(args[0]);
  if (fd == -2) return nullptr;
  if (fd < 0) Py_RETURN_NOTIMPLEMENTED;
  Py_buffer data;
  if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
    PyErr_Clear();
    Py_RETURN_NOTIMPLEMENTED;
  }
  std::size_t sent = 0;
  nb::object done = send_rest(fd, data, sent);
  nb::object op;
  if (!done.is_valid() && !PyErr_Occurred()) op = new_op(self, args[0], fd, op_kind::sendall, true);
  if (!op.is_valid()) {
    PyBuffer_Release(&data);
    return done.release().ptr();  // None, or null with the error of send() or of new_op
  }
  as_op(op.ptr())->data = data;  // the export moves into the operation, released with it
  as_op(op.ptr())->sent = sent;
  return start_watching(std::move(op));
}

// _sock_wait(sock, writing, attempt, *args): a SockOp that calls attempt(*args) each time
// sock's descriptor is readable (writable if `writing`) until it returns or raises anything
// but BlockingIOError/InterruptedError; its future gets the outcome.
PyObject* loop_sock_wait(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs < 3) {
    PyErr_Format(PyExc_TypeError, "_sock_wait() takes at least 3 arguments (%zd given)", nargs);
    return nullptr;
  }
  module_state& s = state();
  PyObject* argv[] = {args[0]};
  nb::object fileno = nb::steal(PyObject_VectorcallMethod(
      s.str_fileno.ptr(), argv, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  int fd;
  if (!fileno.is_valid() || !as_descriptor(fileno.ptr(), fd)) return nullptr;
  const int writing = PyObject_IsTrue(args[1]);
  if (writing < 0) return nullptr;
  nb::object call_args = nb::steal(PyTuple_New(nargs - 3));
  if (!call_args.is_valid()) return nullptr;
  for (Py_ssize_t i = 3; i < nargs; ++i) PyTuple_SET_ITEM(call_args.ptr(), i - 3, nb::borrow(args[i]).release().ptr());
  nb::object op = new_op(self, args[0], fd, op_kind::call, writing != 0);
  if (!op.is_valid()) return nullptr;
  as_op(op.ptr())->attempt = nb::borrow(args[2]);
  as_op(op.ptr())->args = std::move(call_args);
  return start_watching(std::move(op));
}

void export_sock_ops(nb::module_&) {
  PyObject* type = PyType_FromSpec(&op_spec);
  if (type == nullptr) throw nb::python_error();
  module_state& s = state();
  s.owned_types.push_back(nb::steal(type));
  s.sock_op_type = reinterpret_cast<PyTypeObject*>(type);
}

}  // namespace pyloop::bindings
