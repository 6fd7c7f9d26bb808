// bindings/bind_datagram_send.cpp — sendto() of datagram transports.
//
// sendto() is a C function installed on the transport class as a method descriptor (no
// Python frame per datagram). It checks what asyncio's selector transport checks, in its
// order (the data's type, an empty datagram before 3.13, the fixed destination, a lost
// connection), converts the destination to a sockaddr (the address object the latest
// datagram came from, and the one the latest sendto() converted, are recognized by identity
// and not converted again) and
// hands the datagram to the core's datagram_io, which sends it at once or keeps it in the
// backlog. Destinations the socket module would have to resolve (host names, special names,
// odd types) and sends on a socket already gone take the transport's _sendto_slow, which runs
// asyncio's own steps with the socket module, so their errors are exactly the socket module's.
#include "datagram_io_object.hpp"
#include "module_state.hpp"
#include "socket_address.hpp"

#include <structmember.h>  // after Python.h: PyMemberDef of the `_io` slot

#include <cstring>

namespace pyloop::bindings {
namespace {

// asyncio's constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES.
constexpr int log_threshold_for_connlost_writes = 5;

datagram_io_object* datagram_io_of(PyObject* transport) {
  module_state& s = state();
  PyObject* io = *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(transport) +
                                               s.datagram_io_slot_offset);
  if (io == nullptr || !PyObject_TypeCheck(io, s.datagram_io_type)) {
    PyErr_SetString(PyExc_RuntimeError, "transport is not initialized");
    return nullptr;
  }
  return as_datagram_io(io);
}

bool warn_lost_send() {
  nb::object logging = nb::steal(PyImport_ImportModule("logging"));
  if (!logging.is_valid()) return false;
  nb::object logger = nb::steal(PyObject_CallMethod(logging.ptr(), "getLogger", "s", "asyncio"));
  if (!logger.is_valid()) return false;
  nb::object done = nb::steal(
      PyObject_CallMethod(logger.ptr(), "warning", "s", "socket.send() raised exception."));
  return done.is_valid();
}

// asyncio: `if addr not in (None, self._address): raise ValueError(...)`.
int address_allowed(datagram_io_object* io, PyObject* addr) {
  if (addr == Py_None || addr == io->address.ptr()) return 1;
  nb::object choices = nb::steal(PyTuple_Pack(2, Py_None, io->address.ptr()));
  if (!choices.is_valid()) return -1;
  const int found = PySequence_Contains(choices.ptr(), addr);
  if (found != 0) return found;
  nb::object text = nb::steal(PyObject_Str(io->address.ptr()));
  if (!text.is_valid()) return -1;
  PyErr_Format(PyExc_ValueError, "Invalid address: must be None or %U", text.ptr());
  return -1;
}

PyObject* send_slow(PyObject* transport, PyObject* data, PyObject* addr) {
  PyObject* argv[] = {transport, data, addr};
  return PyObject_VectorcallMethod(state().str_sendto_slow.ptr(), argv,
                                   3 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
}

// Where the datagram goes: null for the connected peer; false when only the socket module
// can tell (the slow path).
bool destination(datagram_io_object* io, PyObject* addr, const sockaddr*& to, socklen_t& length) {
  if (io->connected) {
    to = nullptr;
    length = 0;
    return true;
  }
  if (addr == Py_None) return false;  // the socket module's TypeError, through asyncio's path
  if (addr == io->address.ptr() && io->peer_length != 0) {
    to = reinterpret_cast<const sockaddr*>(&io->peer);
    length = io->peer_length;
    return true;
  }
  to = io->peers.latest_sockaddr(addr, length);
  if (to != nullptr) return true;
  sockaddr_storage parsed;
  socklen_t parsed_length = 0;
  if (!address_from_python(io->family, addr, parsed, parsed_length)) return false;
  io->peers.set_sent(addr, reinterpret_cast<const sockaddr*>(&parsed), parsed_length);
  to = io->peers.latest_sockaddr(addr, length);
  return true;
}

// The common path of sendto() and send_resolved(): `slow` says whether a destination the
// native conversion does not take may go to the transport's _sendto_slow.
PyObject* send_datagram_from_python(PyObject* transport, PyObject* data, PyObject* addr, bool slow) {
  datagram_io_object* io = datagram_io_of(transport);
  if (io == nullptr) return nullptr;
  // An exact bytes (the common case) is read in place: immutable, its truth is its length.
  const bool plain = PyBytes_CheckExact(data);
  if (!plain && !PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
    PyErr_Format(PyExc_TypeError, "data argument must be a bytes-like object, not '%.80s'",
                 Py_TYPE(data)->tp_name);
    return nullptr;
  }
  if (!io->send_empty) {  // before 3.13: `if not data: return`
    const int truth = plain ? PyBytes_GET_SIZE(data) != 0 : PyObject_IsTrue(data);
    if (truth <= 0) return truth < 0 ? nullptr : Py_NewRef(Py_None);
  }
  const bool fixed = io->address.is_valid();
  if (fixed) {
    const int allowed = address_allowed(io, addr);
    if (allowed <= 0) return nullptr;
    addr = io->address.ptr();
  }
  if (io->lost > 0) {
    if (fixed) {
      if (io->lost >= log_threshold_for_connlost_writes && !warn_lost_send()) return nullptr;
      ++io->lost;
      Py_RETURN_NONE;
    }
    if (slow) return send_slow(transport, data, addr);  // asyncio tries the socket as it is
  }
  nb::object keep_io = nb::borrow(reinterpret_cast<PyObject*>(io));  // events may detach it
  nb::object keep_addr = nb::borrow(addr);
  const sockaddr* to = nullptr;
  socklen_t to_length = 0;
  if (!destination(io, addr, to, to_length)) {
    if (slow) return send_slow(transport, data, addr);
    PyErr_SetString(PyExc_ValueError, "send_resolved(): not a numeric address");
    return nullptr;
  }
  if (plain) {  // alive while the caller's argument is
    return datagram_result(io, io->io.send(datagram_out{PyBytes_AS_STRING(data),
                                                        static_cast<std::size_t>(PyBytes_GET_SIZE(data)),
                                                        to, to_length}));
  }
  Py_buffer view;
  if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
    // A buffer the socket module cannot send either (a non-contiguous memoryview): its
    // error, through asyncio's steps.
    if (!slow || exiting_exception_pending()) return nullptr;
    PyErr_Clear();
    return send_slow(transport, data, addr);
  }
  datagram_outcome outcome = datagram_outcome::ok;
  try {
    outcome = io->io.send(datagram_out{static_cast<const char*>(view.buf),
                                       static_cast<std::size_t>(view.len), to, to_length});
  } catch (...) {
    PyBuffer_Release(&view);
    throw;
  }
  PyBuffer_Release(&view);
  return datagram_result(io, outcome);
}

PyObject* parse_sendto(const char* name, PyObject* const* args, Py_ssize_t nargs,
                       PyObject* kwnames, PyObject*& data, PyObject*& addr) {
  data = nargs > 0 ? args[0] : nullptr;
  addr = nargs > 1 ? args[1] : Py_None;
  if (nargs > 2) {
    PyErr_Format(PyExc_TypeError, "%s() takes from 2 to 3 positional arguments but %zd were given",
                 name, nargs + 1);
    return nullptr;
  }
  const Py_ssize_t keywords = kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames);
  for (Py_ssize_t i = 0; i < keywords; ++i) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, i);
    PyObject* value = args[nargs + i];
    if (PyUnicode_CompareWithASCIIString(key, "data") == 0 && data == nullptr) {
      data = value;
    } else if (PyUnicode_CompareWithASCIIString(key, "addr") == 0 && nargs < 2) {
      addr = value;
    } else {
      PyErr_Format(PyExc_TypeError, "%s() got an unexpected or repeated keyword argument '%U'",
                   name, key);
      return nullptr;
    }
  }
  if (data == nullptr) {
    PyErr_Format(PyExc_TypeError, "%s() missing 1 required positional argument: 'data'", name);
    return nullptr;
  }
  return Py_None;
}

// DatagramTransport.sendto(data, addr=None)
PyObject* transport_sendto(PyObject* transport, PyObject* const* args, Py_ssize_t nargs,
                           PyObject* kwnames) {
  PyObject *data, *addr;
  if (parse_sendto("sendto", args, nargs, kwnames, data, addr) == nullptr) return nullptr;
  return send_datagram_from_python(transport, data, addr, true);
}

// DatagramTransport._send_resolved(data, addr): sendto() for an address _sendto_slow turned
// into its numeric form; never takes the slow path again.
PyObject* transport_send_resolved(PyObject* transport, PyObject* const* args, Py_ssize_t nargs,
                                  PyObject* kwnames) {
  PyObject *data, *addr;
  if (parse_sendto("_send_resolved", args, nargs, kwnames, data, addr) == nullptr) return nullptr;
  return send_datagram_from_python(transport, data, addr, false);
}

PyMethodDef transport_sendto_def = {
    "sendto", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<transport_sendto>::call)),
    METH_FASTCALL | METH_KEYWORDS,
    "sendto(data, addr=None)\n--\n\nSend data to addr (the connected peer when addr is None)."};
PyMethodDef transport_send_resolved_def = {
    "_send_resolved", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<transport_send_resolved>::call)),
    METH_FASTCALL | METH_KEYWORDS,
    "_send_resolved(data, addr)\n--\n\nsendto() with a numeric address (no slow path)."};

}  // namespace

// install_datagram_methods(cls): makes cls.sendto (and _send_resolved) this file's functions.
// cls must declare an `_io` slot holding its DatagramIO.
void install_datagram_methods(nb::handle cls) {
  if (!PyType_Check(cls.ptr())) throw nb::type_error("install_datagram_methods() needs a class");
  auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
  nb::object slot = nb::steal(PyObject_GetAttrString(cls.ptr(), "_io"));
  if (!slot.is_valid()) throw nb::python_error();
  if (Py_TYPE(slot.ptr()) != &PyMemberDescr_Type) {
    throw nb::type_error("install_datagram_methods(): `_io` must be a __slots__ entry");
  }
  state().datagram_io_slot_offset = reinterpret_cast<PyMemberDescrObject*>(slot.ptr())->d_member->offset;
  for (PyMethodDef* def : {&transport_sendto_def, &transport_send_resolved_def}) {
    nb::object descriptor = nb::steal(PyDescr_NewMethod(type, def));
    if (!descriptor.is_valid() || PyObject_SetAttrString(cls.ptr(), def->ml_name, descriptor.ptr()) < 0) {
      throw nb::python_error();
    }
  }
}

}  // namespace pyloop::bindings
