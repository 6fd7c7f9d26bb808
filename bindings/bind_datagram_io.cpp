// bindings/bind_datagram_io.cpp — the DatagramIO type and the events of datagram transports.
//
// A datagram transport's socket is served by the core's datagram_io
// (core/src/datagram_io.cpp): batches of datagrams received with one system call, sends, the
// backlog and its flow control. This file adapts its events to Python: each datagram becomes
// a `bytes` and the socket module's address object for protocol.datagram_received (vectorcall,
// inside the transport's context; a recent peer's address object is reused, not rebuilt:
// peer_addresses.hpp), an errno becomes the socket module's OSError for
// protocol.error_received. A protocol's
// exception is reported as asyncio reports an exception escaping its transport's read or
// write handle (transport._callback_error); SystemExit and KeyboardInterrupt leave the loop.
// In debug mode each read callback is timed and a slow one logged, as for stream transports.
#include "datagram_io_object.hpp"

#include <climits>
#include <cstring>
#include <new>

#include "module_state.hpp"
#include "socket_address.hpp"

namespace pyloop::bindings {

PyObject* datagram_result(datagram_io_object* io, datagram_outcome outcome) noexcept {
  switch (outcome) {
    case datagram_outcome::ok:
      Py_RETURN_NONE;
    case datagram_outcome::owner_failed:
      return nullptr;
    case datagram_outcome::loop_closed:
      return set_loop_closed();
    case datagram_outcome::watch_failed:
      return set_os_error(io->io.last_error());
  }
  return nullptr;
}

bool call_datagram_transport(datagram_io_object* io, PyObject* name, PyObject* arg1,
                             PyObject* arg2) noexcept {
  if (!io->transport.is_valid()) return true;  // detached: the transport is gone
  nb::object transport = io->transport;       // alive across the call, whatever it does
  PyObject* argv[] = {transport.ptr(), arg1, arg2};
  const std::size_t nargs = arg1 == nullptr ? 1 : arg2 == nullptr ? 2 : 3;
  nb::object done = nb::steal(PyObject_VectorcallMethod(
      name, argv, nargs | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  return done.is_valid();
}

namespace {

datagram_io_object* owner_io(void* owner) noexcept { return as_datagram_io(owner); }

// An exception escaped the protocol inside a loop callback (`reading`: the read callback, else
// the writability one): reported as asyncio reports an exception escaping its transport's
// _read_ready or _sendto_ready handle, unless it is SystemExit or KeyboardInterrupt, which
// stay pending and leave the loop.
bool protocol_failed(datagram_io_object* io, bool reading) noexcept {
  if (exiting_exception_pending()) return false;
  nb::object exc = take_exception();
  return call_datagram_transport(io, state().str_callback_error.ptr(), exc.ptr(),
                                 reading ? Py_True : Py_False);
}

bool call_protocol(datagram_io_object* io, PyObject* name, PyObject* arg1, PyObject* arg2) noexcept {
  nb::object protocol = io->protocol;  // held: set_protocol() inside the call would free it
  PyObject* argv[] = {protocol.ptr(), arg1, arg2};
  const std::size_t nargs = arg2 == nullptr ? 2 : 3;
  nb::object done = nb::steal(
      PyObject_VectorcallMethod(name, argv, nargs | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  return done.is_valid();
}

bool on_datagram_received(void* owner, const char* data, std::size_t size, const sockaddr* from,
                          socklen_t from_length) noexcept {
  datagram_io_object* io = owner_io(owner);
  if (!io->protocol.is_valid()) return true;  // detached during the batch
  nb::object bytes = nb::steal(PyBytes_FromStringAndSize(data, static_cast<Py_ssize_t>(size)));
  nb::object address;
  if (bytes.is_valid()) address = io->peers.received(from, from_length);
  if (address.is_valid() &&
      call_protocol(io, state().str_datagram_received.ptr(), bytes.ptr(), address.ptr())) {
    return true;
  }
  return protocol_failed(io, true);
}

bool on_error_received(void* owner, int error, datagram_context where) noexcept {
  datagram_io_object* io = owner_io(owner);
  if (!io->protocol.is_valid()) return true;
  set_os_error(error);
  nb::object exc = take_exception();
  if (call_protocol(io, state().str_error_received.ptr(), exc.ptr(), nullptr)) return true;
  // Inside sendto() the exception is its caller's, as asyncio's sendto lets it out.
  if (where == datagram_context::sending) return false;
  return protocol_failed(io, where == datagram_context::receiving);
}

bool on_enter(void* owner) noexcept {
  datagram_io_object* io = owner_io(owner);
  if (loop_of_datagram(io)->debug) io->read_started = loop_driver::now();
  // The callback may replace or drop `context` (start_reading, close); on_leave exits the one
  // entered here.
  if (!io->context.is_valid()) return true;
  if (PyContext_Enter(io->context.ptr()) < 0) return false;
  io->entered = io->context;
  return true;
}

// Debug mode: a read callback that ran for slow_callback_duration or longer is logged by
// PyLoop._log_slow_callback, as asyncio logs its transport's slow _read_ready handle.
bool report_if_slow(datagram_io_object* io) noexcept {
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
  datagram_io_object* io = owner_io(owner);
  nb::object pending;  // SystemExit or KeyboardInterrupt, kept across the exit
  if (PyErr_Occurred()) pending = take_exception();
  nb::object entered = std::move(io->entered);
  bool ok = !entered.is_valid() || PyContext_Exit(entered.ptr()) == 0;
  if (ok && loop_of_datagram(io)->debug) ok = report_if_slow(io);
  if (pending.is_valid()) {
    if (!ok) PyErr_WriteUnraisable(io->loop.ptr());  // the pending exception matters more
    restore_exception(std::move(pending));
    return true;
  }
  return ok;
}

bool on_above_high_water(void* owner) noexcept {
  return call_datagram_transport(owner_io(owner), state().str_maybe_pause_protocol.ptr());
}

// asyncio's _sendto_ready calls _maybe_resume_protocol after each round; it does nothing
// unless the protocol was paused, which is asked first to save the call.
bool on_backlog_sent(void* owner) noexcept {
  datagram_io_object* io = owner_io(owner);
  if (!io->transport.is_valid()) return true;
  module_state& s = state();
  nb::object paused = nb::steal(PyObject_GetAttr(io->transport.ptr(), s.str_protocol_paused.ptr()));
  if (!paused.is_valid()) return false;
  if (paused.ptr() != Py_True) return true;
  return call_datagram_transport(io, s.str_maybe_resume_protocol.ptr());
}

bool on_drained(void* owner) noexcept {
  return call_datagram_transport(owner_io(owner), state().str_on_drained.ptr());
}

callback_status on_callback_failed(void* owner) noexcept {
  datagram_io_object* io = owner_io(owner);
  return report_callback_error(io->transport.is_valid() ? io->transport.ptr()
                                                        : reinterpret_cast<PyObject*>(io));
}

void retain_owner(void* owner) noexcept { nb::handle(static_cast<PyObject*>(owner)).inc_ref(); }
void release_owner(void* owner) noexcept { nb::handle(static_cast<PyObject*>(owner)).dec_ref(); }

// -- the DatagramIO type ---------------------------------------------------------------------

// DatagramIO(loop, fd, transport, family, connected, address, send_empty, header_size)
PyObject* datagram_io_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
  PyObject *loop, *transport, *address;
  int fd, family, connected, send_empty;
  Py_ssize_t header_size;
  static const char* keywords[] = {"loop", "fd", "transport", "family", "connected",
                                   "address", "send_empty", "header_size", nullptr};
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OiOipOpn:DatagramIO", const_cast<char**>(keywords),
                                   &loop, &fd, &transport, &family, &connected, &address,
                                   &send_empty, &header_size)) {
    return nullptr;
  }
  if (!PyObject_TypeCheck(loop, state().loop_type)) {
    PyErr_SetString(PyExc_TypeError, "DatagramIO() needs a PyLoop");
    return nullptr;
  }
  if (fd < 0 || header_size < 0) {
    PyErr_SetString(PyExc_ValueError, "DatagramIO(): invalid descriptor or header size");
    return nullptr;
  }
  PyObject* self = type->tp_alloc(type, 0);
  if (self == nullptr) return nullptr;
  datagram_io_object* io = as_datagram_io(self);
  loop_driver& driver = *as_loop(loop)->driver;
  // Every member is constructed here, before anything can fail, so dealloc may destroy all.
  new (&io->loop) nb::object(nb::borrow(loop));
  new (&io->transport) nb::object(nb::borrow(transport));
  new (&io->protocol) nb::object();
  new (&io->context) nb::object();
  new (&io->entered) nb::object();
  new (&io->address) nb::object();
  new (&io->peers) peer_addresses();
  io->peer_length = 0;
  const bool ip = family == AF_INET || family == AF_INET6;
  new (&io->io) datagram_io(driver, fd, ip, datagram_io_object_events, self);
  io->io.set_overhead(static_cast<std::size_t>(header_size));
  io->family = family;
  io->lost = 0;
  io->connected = connected != 0;
  io->send_empty = send_empty != 0;
  if (address != Py_None) {
    io->address = nb::borrow(address);
    if (!address_from_python(family, address, io->peer, io->peer_length)) io->peer_length = 0;
  }
  return self;
}

int datagram_io_traverse(PyObject* self, visitproc visit, void* arg) {
  datagram_io_object* io = as_datagram_io(self);
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(io->loop.ptr());
  Py_VISIT(io->transport.ptr());
  Py_VISIT(io->protocol.ptr());
  Py_VISIT(io->context.ptr());
  Py_VISIT(io->address.ptr());
  return io->peers.traverse(visit, arg);
}

// Stops the I/O and lets go of the transport and protocol. The fixed address stays: sendto()
// on a closed connected transport still counts the lost sends, as asyncio's does.
void datagram_io_detach_all(datagram_io_object* io) noexcept {
  io->io.stop_reading();
  io->io.discard();
  clear_ref(io->transport);
  clear_ref(io->protocol);
  clear_ref(io->context);
  io->peers.clear();
}

int datagram_io_clear(PyObject* self) {
  datagram_io_object* io = as_datagram_io(self);
  datagram_io_detach_all(io);
  clear_ref(io->address);
  return 0;  // the loop stays until dealloc: the core's datagram_io uses its driver
}

void datagram_io_dealloc(PyObject* self) {
  PyObject_GC_UnTrack(self);
  datagram_io_object* io = as_datagram_io(self);
  datagram_io_clear(self);
  io->io.~datagram_io();
  io->peers.~peer_addresses();
  io->address.~object();
  io->entered.~object();
  io->context.~object();
  io->protocol.~object();
  io->transport.~object();
  io->loop.~object();
  PyTypeObject* type = Py_TYPE(self);
  type->tp_free(self);
  Py_DECREF(type);
}

// set_protocol(protocol): who receives datagrams and errors from now on.
PyObject* datagram_io_set_protocol(PyObject* self, PyObject* protocol) {
  as_datagram_io(self)->protocol = nb::borrow(protocol);
  Py_RETURN_NONE;
}

// start_reading(): receive whenever the socket is readable, in a copy of the current context.
PyObject* datagram_io_start_reading(PyObject* self, PyObject*) {
  datagram_io_object* io = as_datagram_io(self);
  if (!require_open(loop_of_datagram(io))) return nullptr;
  nb::object context = nb::steal(PyContext_CopyCurrent());
  if (!context.is_valid()) return nullptr;
  io->context = std::move(context);
  if (std::error_code ec = io->io.start_reading()) return set_os_error(ec);
  Py_RETURN_NONE;
}

PyObject* datagram_io_stop_reading(PyObject* self, PyObject*) {
  as_datagram_io(self)->io.stop_reading();
  Py_RETURN_NONE;
}

PyObject* datagram_io_discard(PyObject* self, PyObject*) {
  as_datagram_io(self)->io.discard();
  Py_RETURN_NONE;
}

PyObject* datagram_io_detach(PyObject* self, PyObject*) {
  datagram_io_detach_all(as_datagram_io(self));
  Py_RETURN_NONE;
}

// set_write_limits(high, low): the transport's water marks (asyncio's _high_water/_low_water).
PyObject* datagram_io_set_write_limits(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
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
  as_datagram_io(self)->io.set_limits(static_cast<std::size_t>(high), static_cast<std::size_t>(low));
  Py_RETURN_NONE;
}

// set_batch_limit(n): datagrams one receive call takes at most (measurements, tests).
PyObject* datagram_io_set_batch_limit(PyObject* self, PyObject* limit) {
  const Py_ssize_t n = PyLong_AsSsize_t(limit);
  if (n == -1 && PyErr_Occurred()) return nullptr;
  if (n < 1) {
    PyErr_SetString(PyExc_ValueError, "batch limit must be at least 1");
    return nullptr;
  }
  as_datagram_io(self)->io.set_batch_limit(static_cast<std::size_t>(n));
  Py_RETURN_NONE;
}

PyObject* get_pending(PyObject* self, void*) { return PyLong_FromSize_t(as_datagram_io(self)->io.buffer_size()); }
PyObject* get_backlog(PyObject* self, void*) { return PyLong_FromSize_t(as_datagram_io(self)->io.backlog()); }
PyObject* get_waiting(PyObject* self, void*) { return PyBool_FromLong(as_datagram_io(self)->io.waiting()); }
PyObject* get_reading(PyObject* self, void*) { return PyBool_FromLong(as_datagram_io(self)->io.reading()); }
PyObject* get_fd(PyObject* self, void*) { return PyLong_FromLong(as_datagram_io(self)->io.fd()); }
PyObject* get_batch_limit(PyObject* self, void*) { return PyLong_FromSize_t(as_datagram_io(self)->io.batch_limit()); }
PyObject* get_receive_calls(PyObject* self, void*) { return PyLong_FromSize_t(as_datagram_io(self)->io.receive_calls()); }
PyObject* get_send_calls(PyObject* self, void*) { return PyLong_FromSize_t(as_datagram_io(self)->io.send_calls()); }
PyObject* get_lost(PyObject* self, void*) { return PyLong_FromLong(as_datagram_io(self)->lost); }

int set_lost(PyObject* self, PyObject* value, void*) {
  const long lost = value == nullptr ? -1 : PyLong_AsLong(value);
  if (lost == -1 && PyErr_Occurred()) return -1;
  if (lost < 0 || lost > INT_MAX) {
    PyErr_SetString(PyExc_ValueError, "lost must be a count");
    return -1;
  }
  as_datagram_io(self)->lost = static_cast<int>(lost);
  return 0;
}

#define PYLOOP_FASTCALL(fn) \
  reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<fn>::call))

PyMethodDef datagram_io_methods[] = {
    {"set_protocol", guarded<datagram_io_set_protocol>::call, METH_O, "set_protocol(protocol): who receives datagrams and errors."},
    {"start_reading", guarded<datagram_io_start_reading>::call, METH_NOARGS, "Receive whenever the socket is readable."},
    {"stop_reading", guarded<datagram_io_stop_reading>::call, METH_NOARGS, "Stop receiving (a batch's rest is kept)."},
    {"discard", guarded<datagram_io_discard>::call, METH_NOARGS, "Drop the backlog, the watch and kept datagrams."},
    {"detach", guarded<datagram_io_detach>::call, METH_NOARGS, "Stop; drop the backlog and the transport."},
    {"set_write_limits", PYLOOP_FASTCALL(datagram_io_set_write_limits), METH_FASTCALL,
     "set_write_limits(high, low)\n--\n\nThe water marks of the backlog."},
    {"set_batch_limit", guarded<datagram_io_set_batch_limit>::call, METH_O, "set_batch_limit(n): datagrams per receive call."},
    {nullptr, nullptr, 0, nullptr},
};

#undef PYLOOP_FASTCALL

PyGetSetDef datagram_io_getset[] = {
    {"lost", get_lost, set_lost, "asyncio's _conn_lost.", nullptr},
    {"fd", get_fd, nullptr, "The transport's socket.", nullptr},
    {"pending", get_pending, nullptr, "Backlog bytes, per-datagram overheads included.", nullptr},
    {"backlog", get_backlog, nullptr, "Datagrams waiting for writability.", nullptr},
    {"waiting", get_waiting, nullptr, "True while the backlog waits for writability.", nullptr},
    {"reading", get_reading, nullptr, "True while the read callback is installed.", nullptr},
    {"batch_limit", get_batch_limit, nullptr, "Datagrams one receive call takes at most.", nullptr},
    {"receive_calls", get_receive_calls, nullptr, "Receive system calls made.", nullptr},
    {"send_calls", get_send_calls, nullptr, "Send system calls made.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyType_Slot datagram_io_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(guarded<datagram_io_new>::call)},
    {Py_tp_dealloc, reinterpret_cast<void*>(datagram_io_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(datagram_io_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(datagram_io_clear)},
    {Py_tp_methods, datagram_io_methods},
    {Py_tp_getset, datagram_io_getset},
    {Py_tp_doc, const_cast<char*>("DatagramIO(loop, fd, transport, family, connected, address, send_empty, header_size): a datagram transport's native I/O.")},
    {0, nullptr},
};

PyType_Spec datagram_io_spec = {"data_bridge.pyloop._pyloop.DatagramIO", sizeof(datagram_io_object), 0,
                                Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, datagram_io_slots};

int traverse_owner(void* payload, visitproc visit, void* arg) {
  Py_VISIT(static_cast<PyObject*>(datagram_io::from_payload(payload)->owner()));
  return 0;
}

}  // namespace

const datagram_io_events datagram_io_object_events{
    on_datagram_received, on_error_received, on_enter,          on_leave,
    on_above_high_water,  on_backlog_sent,   on_drained,        on_callback_failed,
    retain_owner,         release_owner};

const native_watch_kind datagram_read_kind{&datagram_io::read_ops, traverse_owner};
const native_watch_kind datagram_write_kind{&datagram_io::write_ops, traverse_owner};
const native_watch_kind datagram_resume_kind{&datagram_io::resume_ops, traverse_owner};

void export_datagram_io(nb::module_& m) {
  PyObject* type = PyType_FromSpec(&datagram_io_spec);
  if (type == nullptr) throw nb::python_error();
  module_state& s = state();
  s.owned_types.push_back(nb::steal(type));
  s.datagram_io_type = reinterpret_cast<PyTypeObject*>(type);
  m.attr("DatagramIO") = nb::borrow(type);
  m.def("install_datagram_methods", &install_datagram_methods, nb::arg("cls"),
        "Install the native sendto() on a datagram transport class with an `_io` slot.");
}

}  // namespace pyloop::bindings
