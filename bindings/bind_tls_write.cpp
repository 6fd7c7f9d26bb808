// bindings/bind_tls_write.cpp — write() and writelines() of the TLS application transport.
//
// Installed on python/.../_tls.py's _SSLTransport as C method descriptors (as the stream
// transport's are, bind_stream_write.cpp), they find the TLSSession at the `_tls` slot's
// fixed offset. While the session's write path is open, data is encrypted at once
// (tls_session::write_to: the records go to a buffer, not through the write BIO's memory) and
// handed to the StreamIO's writer; otherwise, as asyncio's transport does, it goes to
// SSLProtocol._write_appdata.
#include "module_state.hpp"
#include "tls_session_object.hpp"

#include <structmember.h>  // after Python.h: PyMemberDef of the `_tls` slot

#include <vector>

namespace pyloop::bindings {
namespace {

// Records encrypted by write_to, waiting to be handed to the StreamIO's writer (which copies
// what it cannot send at once). One per thread: a loop and its sessions live on one thread.
// They belong to the connection of the write() or writelines() running: records_scope
// leaves the buffer empty whatever way the call ends, so nothing reaches another connection.
thread_local std::vector<char> records;
constexpr std::size_t max_kept_records = 1 << 20;  // capacity kept between writes

struct records_scope {
  records_scope() noexcept { records.clear(); }
  ~records_scope() {
    records.clear();
    // One huge write must not pin its size for the thread's lifetime.
    if (records.capacity() > max_kept_records) std::vector<char>().swap(records);
  }
  records_scope(const records_scope&) = delete;
  records_scope& operator=(const records_scope&) = delete;
};

}  // namespace

// Sends the records encrypted by write_to, then what the SSL object wrote to its write BIO
// (one `bytes`, queued by reference).
bool flush_output(tls_session_object* t) noexcept {
  if (!records.empty()) {
    std::vector<char> out;
    out.swap(records);  // records is empty again whatever the writer's events do
    bool sent = true;
    if (t->io.is_valid()) {
      nb::object io = t->io;
      nb::object done = nb::steal(stream_io_write_raw(as_stream_io(io.ptr()), out.data(), out.size()));
      sent = done.is_valid();
    }
    out.clear();
    out.swap(records);  // keeps the capacity for the next write
    if (!sent) return false;
  }
  const std::size_t pending = t->session.output_pending();
  if (pending == 0 || !t->io.is_valid()) return true;
  PyObject* raw = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(pending));
  if (raw == nullptr) return false;
  const std::size_t n = t->session.take_output(PyBytes_AS_STRING(raw), pending);
  if (n != pending && _PyBytes_Resize(&raw, static_cast<Py_ssize_t>(n)) < 0) return false;
  nb::object bytes = nb::steal(raw);
  nb::object io = t->io;
  nb::object done = nb::steal(stream_io_write(as_stream_io(io.ptr()), bytes.ptr()));
  return done.is_valid();
}

namespace {

// -- the application transport's write() and writelines() ---------------------------------

tls_session_object* session_of(PyObject* transport) noexcept {
  module_state& s = state();
  PyObject* slot = *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(transport) + s.tls_slot_offset);
  if (slot == nullptr || !PyObject_TypeCheck(slot, s.tls_session_type)) return nullptr;
  return as_tls(slot);
}

// The slow path: SSLProtocol._write_appdata(list_of_data), as asyncio's transport calls it.
PyObject* write_appdata(PyObject* transport, tls_session_object* t, PyObject* list_of_data) {
  module_state& s = state();
  nb::object protocol = t != nullptr && t->ssl_protocol.is_valid()
                            ? t->ssl_protocol
                            : nb::steal(PyObject_GetAttr(transport, s.str_ssl_protocol.ptr()));
  if (!protocol.is_valid()) return nullptr;
  PyObject* argv[] = {protocol.ptr(), list_of_data};
  return PyObject_VectorcallMethod(s.str_write_appdata.ptr(), argv,
                                   2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
}

// Encrypts one piece (the fast path) into `records`, or into the write BIO when something
// already waits there; false with the error handled or pending.
bool encrypt(tls_session_object* t, PyObject* data, bool& handled, nb::object& rest) noexcept {
  Py_buffer view;
  if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
    // asyncio's SSLObject.write() fails inside _write_appdata's try: a fatal error, not a raise.
    handled = ssl_failed(t, ssl_protocol_error);
    return false;
  }
  const char* bytes = static_cast<const char*>(view.buf);
  const auto size = static_cast<std::size_t>(view.len);
  tls_result r = t->session.output_pending() == 0 ? t->session.write_to(bytes, size, records)
                                                  : t->session.write(bytes, size);
  if (r.status == tls_status::want_read) {
    // The SSL object needs the peer first (a TLS 1.2 renegotiation): what it did not take
    // goes to SSLProtocol's backlog, as _do_write keeps it on SSLWantReadError.
    rest = nb::steal(PyBytes_FromStringAndSize(bytes + r.size, static_cast<Py_ssize_t>(size - r.size)));
    PyBuffer_Release(&view);
    if (!rest.is_valid()) return false;
    return true;
  }
  PyBuffer_Release(&view);
  if (r.status == tls_status::ok) return true;
  set_tls_error(r);
  handled = ssl_failed(t, ssl_protocol_error);
  return false;
}

// After a write the SSL object could not finish: the records go out, then the rest (the
// unwritten tail and the pieces after it) to SSLProtocol._write_appdata.
PyObject* finish_with_backlog(PyObject* transport, tls_session_object* t, nb::object rest) {
  if (!flush_output(t) && !ssl_failed(t, ssl_protocol_error)) return nullptr;
  return write_appdata(transport, t, rest.ptr());
}

// _SSLTransport.write(data)
PyObject* tls_transport_write(PyObject* transport, PyObject* data) {
  if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
    PyErr_Format(PyExc_TypeError, "data: expecting a bytes-like instance, got %.200s",
                 Py_TYPE(data)->tp_name);
    return nullptr;
  }
  // asyncio's `if not data: return`. A memoryview is asked as asyncio asks it: a released
  // one raises ValueError here (its buffer's stale length would reach the SSL write instead).
  const int nonempty = PyBytes_Check(data)       ? PyBytes_GET_SIZE(data) != 0
                       : PyByteArray_Check(data) ? PyByteArray_GET_SIZE(data) != 0
                                                 : PyObject_IsTrue(data);
  if (nonempty < 0) return nullptr;
  if (nonempty == 0) Py_RETURN_NONE;
  tls_session_object* t = session_of(transport);
  if (t == nullptr || !t->write_fast) {
    nb::object one = nb::steal(PyTuple_Pack(1, data));
    if (!one.is_valid()) return nullptr;
    return write_appdata(transport, t, one.ptr());
  }
  nb::object keep = nb::borrow(reinterpret_cast<PyObject*>(t));
  records_scope scope;
  bool handled = false;
  nb::object rest;
  if (!encrypt(t, data, handled, rest)) return handled ? Py_NewRef(Py_None) : nullptr;
  if (rest.is_valid()) {
    nb::object pieces = nb::steal(PyTuple_Pack(1, rest.ptr()));
    if (!pieces.is_valid()) return nullptr;
    return finish_with_backlog(transport, t, std::move(pieces));
  }
  if (!flush_output(t) && !ssl_failed(t, ssl_protocol_error)) return nullptr;
  Py_RETURN_NONE;
}

// _SSLTransport.writelines(list_of_data)
PyObject* tls_transport_writelines(PyObject* transport, PyObject* list_of_data) {
  tls_session_object* t = session_of(transport);
  if (t == nullptr || !t->write_fast) return write_appdata(transport, t, list_of_data);
  nb::object items = nb::steal(PySequence_Fast(list_of_data, "can only join an iterable"));
  if (!items.is_valid()) return nullptr;
  const Py_ssize_t count = PySequence_Fast_GET_SIZE(items.ptr());
  PyObject** item = PySequence_Fast_ITEMS(items.ptr());
  // asyncio's _write_appdata takes len() of each piece as it queues it, outside its error
  // handling: a piece without a length (an int, a released memoryview) raises to the caller.
  // A list with such a piece, or with a piece of any other type (whose len() or buffer could
  // run Python code while `item` points into the list), goes to that very code: its errors
  // and its backlog are then asyncio's own.
  for (Py_ssize_t i = 0; i < count; ++i) {
    PyObject* piece = item[i];
    if (PyBytes_Check(piece) || PyByteArray_Check(piece)) continue;
    if (PyMemoryView_Check(piece) && PyObject_Size(piece) >= 0) continue;  // C code only
    PyErr_Clear();
    return write_appdata(transport, t, items.ptr());
  }
  nb::object keep = nb::borrow(reinterpret_cast<PyObject*>(t));
  records_scope scope;
  for (Py_ssize_t i = 0; i < count; ++i) {
    bool handled = false;
    // On a failure the connection is closed by _fatal_error and the records of the pieces
    // before are dropped: asyncio's _do_write never hands them to the transport either.
    nb::object rest;
    if (!encrypt(t, item[i], handled, rest)) return handled ? Py_NewRef(Py_None) : nullptr;
    if (rest.is_valid()) {
      nb::object pieces = nb::steal(PyList_New(count - i));
      if (!pieces.is_valid()) return nullptr;
      PyList_SET_ITEM(pieces.ptr(), 0, rest.release().ptr());
      for (Py_ssize_t j = i + 1; j < count; ++j) PyList_SET_ITEM(pieces.ptr(), j - i, Py_NewRef(item[j]));
      return finish_with_backlog(transport, t, std::move(pieces));
    }
  }
  if (!flush_output(t) && !ssl_failed(t, ssl_protocol_error)) return nullptr;
  Py_RETURN_NONE;
}

PyMethodDef tls_write_def = {"write", guarded<tls_transport_write>::call, METH_O,
                             "write(data)\n--\n\nEncrypt data for the peer."};
PyMethodDef tls_writelines_def = {"writelines", guarded<tls_transport_writelines>::call, METH_O,
                                  "writelines(list_of_data)\n--\n\nEncrypt every piece for the peer."};

}  // namespace

// install_tls_methods(cls): cls.write and cls.writelines become the functions above; cls
// must declare a `_tls` slot holding its TLSSession (or None).
void install_tls_methods(nb::handle cls) {
  if (!PyType_Check(cls.ptr())) throw nb::type_error("install_tls_methods() needs a class");
  nb::object slot = nb::steal(PyObject_GetAttrString(cls.ptr(), "_tls"));
  if (!slot.is_valid()) throw nb::python_error();
  if (Py_TYPE(slot.ptr()) != &PyMemberDescr_Type) {
    throw nb::type_error("install_tls_methods(): `_tls` must be a __slots__ entry");
  }
  state().tls_slot_offset = reinterpret_cast<PyMemberDescrObject*>(slot.ptr())->d_member->offset;
  auto* type = reinterpret_cast<PyTypeObject*>(cls.ptr());
  for (PyMethodDef* def : {&tls_write_def, &tls_writelines_def}) {
    nb::object descriptor = nb::steal(PyDescr_NewMethod(type, def));
    if (!descriptor.is_valid() || PyObject_SetAttrString(cls.ptr(), def->ml_name, descriptor.ptr()) < 0) {
      throw nb::python_error();
    }
  }
}

}  // namespace pyloop::bindings
