// bindings/bind_stream_io.cpp — the StreamIO type and the read events of stream transports.
//
// A transport's descriptor is read by the core's stream_reader (core/src/stream_reader.cpp):
// one read per readiness callback, into the loop's receive buffer or, for a BufferedProtocol,
// into get_buffer()'s memory. This file adapts its events to Python: the bytes become a
// `bytes` for protocol.data_received (vectorcall, inside the transport's context), a lent
// buffer is a Py_buffer export held for the read, and a failure goes to the transport's
// _fatal_error with asyncio's message. End of stream calls the transport's _on_eof. In debug
// mode each read callback is timed and a slow one logged, as asyncio times its handles.
#include "stream_io_object.hpp"

#include <climits>
#include <cstring>
#include <new>

#include "module_state.hpp"
#include "tls_session_object.hpp"


namespace pyloop::bindings {

PyObject* write_result(stream_io_object* io, write_outcome outcome) noexcept {
  switch (outcome) {
    case write_outcome::ok:
      Py_RETURN_NONE;
    case write_outcome::owner_failed:
      return nullptr;  // the transport's error is pending
    case write_outcome::loop_closed:
      return set_loop_closed();
    case write_outcome::watch_failed:
      return set_os_error(io->writer.last_error());
  }
  return nullptr;
}

callback_status io_callback_failed(void* owner) noexcept {
  stream_io_object* io = as_stream_io(owner);
  return report_callback_error(io->transport.is_valid() ? io->transport.ptr()
                                                        : reinterpret_cast<PyObject*>(io));
}

void retain_io(void* owner) noexcept { nb::handle(static_cast<PyObject*>(owner)).inc_ref(); }
void release_io(void* owner) noexcept { nb::handle(static_cast<PyObject*>(owner)).dec_ref(); }

bool call_transport(stream_io_object* io, PyObject* name, PyObject* arg) noexcept {
  if (!io->transport.is_valid()) return true;  // detached: the transport is gone
  nb::object transport = io->transport;       // alive across the call, whatever it does
  PyObject* argv[] = {transport.ptr(), arg};
  const std::size_t nargs = arg == nullptr ? 1 : 2;
  nb::object done = nb::steal(PyObject_VectorcallMethod(
      name, argv, nargs | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  return done.is_valid();
}

namespace {

stream_io_object* owner_io(void* owner) noexcept { return as_stream_io(owner); }

// The read failed, or a protocol callback inside it: the transport's method `name` (its
// _fatal_error or its _protocol_error) gets the error and `message`, as asyncio's transport
// handles it, unless it is SystemExit or KeyboardInterrupt, which stay pending and leave the
// loop. True when handled.
bool transport_failed(stream_io_object* io, PyObject* name, const char* message) noexcept {
  if (exiting_exception_pending()) return false;
  nb::object exc = take_exception();
  nb::object text = nb::steal(PyUnicode_FromString(message));
  if (!text.is_valid()) return false;
  PyObject* argv[] = {io->transport.ptr(), exc.ptr(), text.ptr()};
  if (argv[0] == nullptr) return true;  // detached
  nb::object done = nb::steal(
      PyObject_VectorcallMethod(name, argv, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  return done.is_valid();
}

// A protocol callback failed: a socket transport treats it as fatal; asyncio's read pipe
// transport reports it as its read handle's exception and goes on reading.
bool protocol_failed(stream_io_object* io, const char* message) noexcept {
  return transport_failed(io, state().str_protocol_error.ptr(), message);
}

// Calls protocol.<name>(arg) by vectorcall. The protocol is held for the call: a method written
// in C holds no reference to its self, and set_protocol() inside it would free it.
bool call_protocol(stream_io_object* io, PyObject* name, PyObject* arg) noexcept {
  nb::object protocol = io->protocol;
  PyObject* argv[] = {protocol.ptr(), arg};
  nb::object done = nb::steal(
      PyObject_VectorcallMethod(name, argv, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  return done.is_valid();
}

bool on_data_received(void* owner, const char* data, std::size_t size) noexcept {
  stream_io_object* io = owner_io(owner);
  if (io->tls.is_valid()) return tls_data_received(io, data, size);
  nb::object bytes = nb::steal(PyBytes_FromStringAndSize(data, static_cast<Py_ssize_t>(size)));
  if (bytes.is_valid() && call_protocol(io, state().str_data_received.ptr(), bytes.ptr())) {
    return true;
  }
  return protocol_failed(io, "Fatal error: protocol.data_received() call failed.");
}

bool on_get_buffer(void* owner, lent_buffer& out) noexcept {
  stream_io_object* io = owner_io(owner);
  constexpr const char* failed = "Fatal error: protocol.get_buffer() call failed.";
  nb::object protocol = io->protocol;
  PyObject* argv[] = {protocol.ptr(), state().minus_one.ptr()};
  nb::object buffer = nb::steal(PyObject_VectorcallMethod(
      state().str_get_buffer.ptr(), argv, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  if (!buffer.is_valid()) return protocol_failed(io, failed);
  // The export keeps the memory valid until release_buffer.
  Py_buffer& view = io->lent;
  if (PyObject_GetBuffer(buffer.ptr(), &view, PyBUF_WRITABLE) < 0) {
    view.obj = nullptr;
    return protocol_failed(io, failed);
  }
  if (view.len == 0) {
    PyBuffer_Release(&view);
    PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
    return protocol_failed(io, failed);
  }
  out = lent_buffer{static_cast<char*>(view.buf), static_cast<std::size_t>(view.len)};
  return true;
}

void on_release_buffer(void* owner) noexcept { PyBuffer_Release(&owner_io(owner)->lent); }

bool on_buffer_updated(void* owner, std::size_t size) noexcept {
  stream_io_object* io = owner_io(owner);
  nb::object count = nb::steal(PyLong_FromSize_t(size));
  if (count.is_valid() && call_protocol(io, state().str_buffer_updated.ptr(), count.ptr())) {
    return true;
  }
  return protocol_failed(io, "Fatal error: protocol.buffer_updated() call failed.");
}

bool on_eof_received(void* owner) noexcept {
  stream_io_object* io = owner_io(owner);
  if (call_transport(io, state().str_on_eof.ptr())) return true;
  return protocol_failed(io, "Fatal error: protocol.eof_received() call failed.");
}

bool on_read_failed(void* owner, int error) noexcept {
  stream_io_object* io = owner_io(owner);
  set_os_error(error);
  return transport_failed(io, state().str_fatal_error.ptr(),
                          io->kind == descriptor_kind::socket
                              ? "Fatal read error on socket transport"
                              : "Fatal read error on pipe transport");
}

bool on_enter(void* owner) noexcept {
  stream_io_object* io = owner_io(owner);
  if (loop_of(io)->debug) io->read_started = loop_driver::now();
  // The callback may call start_reading (resume_reading, set_protocol), which replaces
  // `context` for the reads to come; on_leave exits the one entered here, as asyncio's running
  // _read_ready handle finishes in its own context.
  if (PyContext_Enter(io->context.ptr()) < 0) return false;
  io->entered = io->context;
  return true;
}

// Debug mode: a read callback that ran for slow_callback_duration or longer is logged by
// PyLoop._log_slow_callback, as asyncio logs a slow transport handle.
bool report_if_slow(stream_io_object* io) noexcept {
  const double elapsed = loop_driver::now() - io->read_started;
  module_state& s = state();
  nb::object threshold = nb::steal(PyObject_GetAttr(io->loop.ptr(), s.str_slow_callback_duration.ptr()));
  if (!threshold.is_valid()) return false;
  const double limit = PyFloat_AsDouble(threshold.ptr());
  if (limit == -1.0 && PyErr_Occurred()) return false;
  if (elapsed < limit || !io->transport.is_valid()) return true;
  nb::object what = nb::steal(PyUnicode_FromFormat("<Handle %s._read_ready()>",
                                                   Py_TYPE(io->transport.ptr())->tp_name));
  nb::object seconds = nb::steal(PyFloat_FromDouble(elapsed));
  if (!what.is_valid() || !seconds.is_valid()) return false;
  PyObject* argv[] = {io->loop.ptr(), what.ptr(), seconds.ptr()};
  nb::object done = nb::steal(PyObject_VectorcallMethod(
      s.str_log_slow_callback.ptr(), argv, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  return done.is_valid();
}

bool on_leave(void* owner) noexcept {
  stream_io_object* io = owner_io(owner);
  // The read may have left SystemExit or KeyboardInterrupt pending: kept across the exit.
  nb::object pending;
  if (PyErr_Occurred()) pending = take_exception();
  nb::object entered = std::move(io->entered);
  bool ok = PyContext_Exit(entered.ptr()) == 0;
  if (ok && loop_of(io)->debug) ok = report_if_slow(io);
  if (pending.is_valid()) {
    if (!ok) PyErr_WriteUnraisable(io->loop.ptr());  // the pending exception matters more
    restore_exception(std::move(pending));
    return true;
  }
  return ok;
}

// -- the StreamIO type -------------------------------------------------------------------

// The `kind` argument: "socket" (recv/send, the default) or "stream" (read/write).
bool parse_kind(const char* name, descriptor_kind& kind) noexcept {
  if (std::strcmp(name, "socket") == 0) {
    kind = descriptor_kind::socket;
  } else if (std::strcmp(name, "stream") == 0) {
    kind = descriptor_kind::stream;
  } else {
    PyErr_Format(PyExc_ValueError, "StreamIO kind must be 'socket' or 'stream', not '%s'", name);
    return false;
  }
  return true;
}

PyObject* stream_io_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
  PyObject *loop, *transport;
  int fd;
  const char* kind_name = "socket";
  static const char* keywords[] = {"loop", "fd", "transport", "kind", nullptr};
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OiO|s:StreamIO", const_cast<char**>(keywords),
                                   &loop, &fd, &transport, &kind_name)) {
    return nullptr;
  }
  descriptor_kind kind;
  if (!parse_kind(kind_name, kind)) return nullptr;
  if (!PyObject_TypeCheck(loop, state().loop_type)) {
    PyErr_SetString(PyExc_TypeError, "StreamIO() needs a PyLoop");
    return nullptr;
  }
  if (fd < 0) {
    PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %d", fd);
    return nullptr;
  }
  PyObject* self = type->tp_alloc(type, 0);
  if (self == nullptr) return nullptr;
  stream_io_object* io = as_stream_io(self);
  loop_driver& driver = *as_loop(loop)->driver;
  // Every member is constructed here, before anything can fail, so dealloc may destroy all.
  new (&io->loop) nb::object(nb::borrow(loop));
  new (&io->transport) nb::object(nb::borrow(transport));
  new (&io->protocol) nb::object();
  new (&io->context) nb::object();
  new (&io->entered) nb::object();
  new (&io->tls) nb::object();
  io->lent = Py_buffer{};
  io->kind = kind;
  new (&io->writer) stream_writer(driver, fd, kind, stream_io_writer_events, self);
  new (&io->reader) stream_reader(driver, fd, kind, stream_io_reader_events, self);
  return self;
}

int stream_io_traverse(PyObject* self, visitproc visit, void* arg) {
  stream_io_object* io = as_stream_io(self);
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(io->loop.ptr());
  Py_VISIT(io->transport.ptr());
  Py_VISIT(io->protocol.ptr());
  Py_VISIT(io->context.ptr());
  Py_VISIT(io->tls.ptr());
  return 0;
}

// Stops reading and drops the output: the watches' and flush list's references go.
void stop_io(stream_io_object* io) noexcept {
  io->reader.stop();
  io->writer.discard(false);
}

int stream_io_clear(PyObject* self) {
  stream_io_object* io = as_stream_io(self);
  stop_io(io);
  clear_ref(io->transport);
  clear_ref(io->protocol);
  clear_ref(io->context);
  clear_ref(io->tls);
  return 0;  // the loop stays until dealloc: reader and writer use its driver
}

void stream_io_dealloc(PyObject* self) {
  PyObject_GC_UnTrack(self);
  stream_io_object* io = as_stream_io(self);
  stream_io_clear(self);
  PyBuffer_Release(&io->lent);
  io->reader.~stream_reader();
  io->writer.~stream_writer();
  io->tls.~object();
  io->entered.~object();
  io->context.~object();
  io->protocol.~object();
  io->transport.~object();
  io->loop.~object();
  PyTypeObject* type = Py_TYPE(self);
  type->tp_free(self);
  Py_DECREF(type);
}

// start_reading(protocol, buffered): reads the descriptor whenever it is readable, for
// `protocol` (its BufferedProtocol methods when buffered), in a copy of the current context.
// Called again while reading, it switches protocol.
PyObject* stream_io_start_reading(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_Format(PyExc_TypeError, "start_reading() takes 2 arguments (%zd given)", nargs);
    return nullptr;
  }
  stream_io_object* io = as_stream_io(self);
  const int buffered = PyObject_IsTrue(args[1]);
  if (buffered < 0 || !require_open(loop_of(io))) return nullptr;
  nb::object context = nb::steal(PyContext_CopyCurrent());
  if (!context.is_valid()) return nullptr;
  io->protocol = nb::borrow(args[0]);
  io->context = std::move(context);
  // Under TLS the ciphertext is read into the loop's buffer and goes to the TLSSession.
  const auto mode = buffered && !io->tls.is_valid() ? stream_reader::mode::into_buffer
                                                    : stream_reader::mode::copy;
  if (std::error_code ec = io->reader.start(mode)) return set_os_error(ec);
  Py_RETURN_NONE;
}

// set_tls(session): from now on the bytes read go to the TLSSession (None: to the protocol
// again, in the mode start_reading chose for it).
PyObject* stream_io_set_tls(PyObject* self, PyObject* session) {
  stream_io_object* io = as_stream_io(self);
  if (session != Py_None && !PyObject_TypeCheck(session, state().tls_session_type)) {
    PyErr_SetString(PyExc_TypeError, "set_tls() needs a TLSSession or None");
    return nullptr;
  }
  io->tls = session == Py_None ? nb::object() : nb::borrow(session);
  if (io->reader.reading() && session != Py_None) {
    if (std::error_code ec = io->reader.start(stream_reader::mode::copy)) return set_os_error(ec);
  }
  Py_RETURN_NONE;
}

PyObject* stream_io_stop_reading(PyObject* self, PyObject*) {
  as_stream_io(self)->reader.stop();
  Py_RETURN_NONE;
}

PyObject* stream_io_flush(PyObject* self, PyObject*) {
  stream_io_object* io = as_stream_io(self);
  return write_result(io, io->writer.flush());
}

// buffer_size(): what asyncio's get_write_buffer_size() reports: queued bytes are offered to
// the kernel first, as asyncio's write() would already have done.
PyObject* stream_io_buffer_size(PyObject* self, PyObject*) {
  stream_io_object* io = as_stream_io(self);
  nb::object flushed = nb::steal(write_result(io, io->writer.flush()));
  if (!flushed.is_valid()) return nullptr;
  return PyLong_FromSize_t(io->writer.size());
}

// discard(send_first): drops the queue and the watch (abort, fatal errors). With send_first,
// what the kernel takes now is sent first: asyncio would have sent it at write() time.
PyObject* stream_io_discard(PyObject* self, PyObject* send_first) {
  const int send = PyObject_IsTrue(send_first);
  if (send < 0) return nullptr;
  as_stream_io(self)->writer.discard(send != 0);
  Py_RETURN_NONE;
}

// detach(): the transport is finished: stop reading, drop the output and the references.
PyObject* stream_io_detach(PyObject* self, PyObject*) {
  stream_io_clear(self);
  Py_RETURN_NONE;
}

// set_write_limits(high, low): the transport's water marks (asyncio's _high_water/_low_water).
PyObject* stream_io_set_write_limits(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_Format(PyExc_TypeError, "set_write_limits() takes 2 arguments (%zd given)", nargs);
    return nullptr;
  }
  const Py_ssize_t high = PyLong_AsSsize_t(args[0]);
  if (high == -1 && PyErr_Occurred()) return nullptr;
  const Py_ssize_t low = PyLong_AsSsize_t(args[1]);
  if (low == -1 && PyErr_Occurred()) return nullptr;
  if (high < 0 || low < 0) {
    PyErr_SetString(PyExc_ValueError, "water marks must be non-negative");
    return nullptr;
  }
  as_stream_io(self)->writer.set_limits(static_cast<std::size_t>(high), static_cast<std::size_t>(low));
  Py_RETURN_NONE;
}

PyObject* get_pending(PyObject* self, void*) { return PyLong_FromSize_t(as_stream_io(self)->writer.size()); }
PyObject* get_waiting(PyObject* self, void*) { return PyBool_FromLong(as_stream_io(self)->writer.waiting()); }
PyObject* get_reading(PyObject* self, void*) { return PyBool_FromLong(as_stream_io(self)->reader.reading()); }
PyObject* get_fd(PyObject* self, void*) { return PyLong_FromLong(as_stream_io(self)->writer.fd()); }

PyObject* get_lost(PyObject* self, void*) { return PyLong_FromLong(as_stream_io(self)->lost); }

int set_lost(PyObject* self, PyObject* value, void*) {
  const long lost = value == nullptr ? -1 : PyLong_AsLong(value);
  if (lost == -1 && PyErr_Occurred()) return -1;
  if (lost < 0 || lost > INT_MAX) {
    PyErr_SetString(PyExc_ValueError, "lost must be a count");
    return -1;
  }
  as_stream_io(self)->lost = static_cast<int>(lost);
  return 0;
}

int set_bool(PyObject* value, bool& field) {
  const int truth = value == nullptr ? -1 : PyObject_IsTrue(value);
  if (truth < 0) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_AttributeError, "cannot delete this attribute");
    return -1;
  }
  field = truth != 0;
  return 0;
}

PyObject* get_closing(PyObject* self, void*) { return PyBool_FromLong(as_stream_io(self)->closing); }
int set_closing(PyObject* self, PyObject* value, void*) { return set_bool(value, as_stream_io(self)->closing); }
PyObject* get_eof(PyObject* self, void*) { return PyBool_FromLong(as_stream_io(self)->eof); }
int set_eof(PyObject* self, PyObject* value, void*) { return set_bool(value, as_stream_io(self)->eof); }
PyObject* get_blocked(PyObject* self, void*) { return PyBool_FromLong(as_stream_io(self)->blocked); }
int set_blocked(PyObject* self, PyObject* value, void*) { return set_bool(value, as_stream_io(self)->blocked); }

PyMethodDef stream_io_methods[] = {
    {"start_reading", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<stream_io_start_reading>::call)), METH_FASTCALL,
     "start_reading(protocol, buffered)\n--\n\nRead the descriptor for protocol whenever it is readable."},
    {"stop_reading", guarded<stream_io_stop_reading>::call, METH_NOARGS, "Stop reading."},
    {"set_tls", guarded<stream_io_set_tls>::call, METH_O, "set_tls(session): bytes read go to a TLSSession (or None)."},
    {"flush", guarded<stream_io_flush>::call, METH_NOARGS, "Send what is queued now; the rest waits for writability."},
    {"buffer_size", guarded<stream_io_buffer_size>::call, METH_NOARGS, "Bytes not yet taken by the kernel, after a flush."},
    {"discard", guarded<stream_io_discard>::call, METH_O, "discard(send_first): drop the queue and stop watching."},
    {"detach", guarded<stream_io_detach>::call, METH_NOARGS, "Stop reading; drop the queue, the watch and the transport."},
    {"set_write_limits", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<stream_io_set_write_limits>::call)), METH_FASTCALL,
     "set_write_limits(high, low)\n--\n\nThe water marks of the write queue."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef stream_io_getset[] = {
    {"lost", get_lost, set_lost, "Writes after the connection was lost.", nullptr},
    {"closing", get_closing, set_closing, "A pipe transport is closing: writes are dropped and counted.", nullptr},
    {"eof", get_eof, set_eof, "write_eof() was called: writes are refused.", nullptr},
    {"blocked", get_blocked, set_blocked, "A sendfile is in progress: writes are refused.", nullptr},
    {"fd", get_fd, nullptr, "The transport's descriptor.", nullptr},
    {"pending", get_pending, nullptr, "Queued bytes (no flush).", nullptr},
    {"waiting", get_waiting, nullptr, "True while data waits for writability.", nullptr},
    {"reading", get_reading, nullptr, "True while the read callback is installed.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyType_Slot stream_io_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(guarded<stream_io_new>::call)},
    {Py_tp_dealloc, reinterpret_cast<void*>(stream_io_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(stream_io_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(stream_io_clear)},
    {Py_tp_methods, stream_io_methods},
    {Py_tp_getset, stream_io_getset},
    {Py_tp_doc, const_cast<char*>("StreamIO(loop, fd, transport, kind='socket'): a stream transport's native reader and writer.")},
    {0, nullptr},
};

PyType_Spec stream_io_spec = {"data_bridge.pyloop._pyloop.StreamIO", sizeof(stream_io_object), 0,
                              Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, stream_io_slots};

int traverse_reader(void* payload, visitproc visit, void* arg) {
  Py_VISIT(static_cast<PyObject*>(stream_reader::from_watch(payload)->owner()));
  return 0;
}

int traverse_writer(void* payload, visitproc visit, void* arg) {
  Py_VISIT(static_cast<PyObject*>(stream_writer::from_watch(payload)->owner()));
  return 0;
}

}  // namespace

const stream_reader_events stream_io_reader_events{
    on_data_received, on_get_buffer,   on_release_buffer, on_buffer_updated,
    on_eof_received,  on_read_failed,  on_enter,          on_leave,
    io_callback_failed, retain_io,     release_io};

const native_watch_kind stream_reader_kind{&stream_reader::watch_ops, traverse_reader};
const native_watch_kind stream_writer_kind{&stream_writer::watch_ops, traverse_writer};

PyObject* stream_io_of_writer(const stream_writer* writer) noexcept {
  return static_cast<PyObject*>(writer->owner());
}

void export_stream_io(nb::module_& m) {
  PyObject* type = PyType_FromSpec(&stream_io_spec);
  if (type == nullptr) throw nb::python_error();
  module_state& s = state();
  s.owned_types.push_back(nb::steal(type));
  s.stream_io_type = reinterpret_cast<PyTypeObject*>(type);
  m.attr("StreamIO") = nb::borrow(type);
  m.def("install_stream_methods", &install_stream_methods, nb::arg("cls"),
        "Install the native write() and writelines() on a transport class with an `_io` slot.");
}

}  // namespace pyloop::bindings
