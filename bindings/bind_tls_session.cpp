// bindings/bind_tls_session.cpp — TLSSession: TLS records decrypted and encrypted natively
// between a StreamIO and the application protocol, under asyncio's SSLProtocol.
//
// The handshake, the shutdown, the timeouts and every state change stay asyncio's
// (sslproto.SSLProtocol, subclassed in python/.../_tls.py), so they raise what asyncio
// raises. What they leave to this file is the data phase, the part run per message:
// - reading: the StreamIO appends the ciphertext it read to the SSL object's read BIO
//   (the very BIO of the Python ssl.MemoryBIO), then, while `read_fast`, SSL_read decrypts
//   straight into a `bytes` for data_received, or into get_buffer()'s memory;
// - writing (bind_tls_write.cpp): the application transport's write() encrypts with
//   SSL_write, and the records go to the StreamIO's writer, which coalesces them per loop
//   turn like any other write.
// When the flags are down (handshake, a paused side, a backlog, shutdown) the same calls go
// to SSLProtocol's own methods: _tls_input after the ciphertext was appended, _write_appdata.
// Reaching the SSL object: _ssl._SSLSocket keeps `SSL *ssl` after PyObject_HEAD and one
// PyObject* (CPython 3.11 to 3.13, Modules/_ssl.c), and _ssl._SSLContext keeps `SSL_CTX *ctx`
// right after PyObject_HEAD. Both are checked against each other before use
// (tls_session::is_session_of: the SSL belongs to that SSL_CTX and its app data is the
// _SSLSocket), and _tls.py first checks that _ssl and this module share one libssl.
#include "tls_session_object.hpp"

#include <cstring>
#include <new>

#include "module_state.hpp"

namespace pyloop::bindings {
namespace {

// The members of _ssl's objects reached here (see the banner).
struct ssl_socket_head {
  PyObject_HEAD
  PyObject* socket;  // the weak reference to the socket (null for an SSLObject)
  ssl_st* ssl;
};
struct ssl_context_head {
  PyObject_HEAD
  void* ctx;  // SSL_CTX*
};

bool type_is(PyTypeObject* type, const char* name) noexcept {
  for (; type != nullptr; type = type->tp_base) {
    if (std::strcmp(type->tp_name, name) == 0) return true;
  }
  return false;
}

nb::object str(const char* s) { return nb::steal(PyUnicode_InternFromString(s)); }

}  // namespace

bool call_ssl_protocol(tls_session_object* t, PyObject* name, PyObject* a, PyObject* b) noexcept {
  if (!t->ssl_protocol.is_valid()) return true;
  nb::object protocol = t->ssl_protocol;
  PyObject* argv[] = {protocol.ptr(), a, b};
  const std::size_t nargs = a == nullptr ? 1 : b == nullptr ? 2 : 3;
  nb::object done = nb::steal(PyObject_VectorcallMethod(
      name, argv, nargs | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  return done.is_valid();
}

bool ssl_failed(tls_session_object* t, const char* message) noexcept {
  if (exiting_exception_pending()) return false;
  nb::object exc = take_exception();
  nb::object text = nb::steal(PyUnicode_FromString(message));
  if (!text.is_valid()) return false;
  return call_ssl_protocol(t, state().str_fatal_error.ptr(), exc.ptr(), text.ptr());
}

void set_tls_error(const tls_result& r) noexcept {
  module_state& s = state();
  nb::object args = nb::steal(
      Py_BuildValue("(iks)", r.ssl_error, r.error, tls_session::reason_text(r.error)));
  if (!args.is_valid()) return;
  nb::object exc = nb::steal(PyObject_CallObject(s.tls_error_factory.ptr(), args.ptr()));
  if (!exc.is_valid()) return;
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
}

namespace {

constexpr std::size_t max_record = 16 * 1024;  // TLS's largest plaintext record

// One call to the application protocol's method with one argument.
bool call_app(tls_session_object* t, PyObject* name, PyObject* arg) noexcept {
  nb::object protocol = t->app_protocol;
  PyObject* argv[] = {protocol.ptr(), arg};
  nb::object done = nb::steal(
      PyObject_VectorcallMethod(name, argv, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  return done.is_valid();
}

// Decrypts what is buffered into one bytes for data_received (SSLProtocol._do_read__copied
// joins the records of one read the same way).
tls_result read_copied(tls_session_object* t, bool& ok) noexcept {
  const std::size_t waiting = t->session.input_pending() + t->session.plaintext_pending();
  if (waiting == 0) return tls_result{0, tls_status::want_read, 0, 0};
  // Room for a record OpenSSL already holds in part (taken from the BIO by an earlier read).
  const std::size_t capacity = waiting + max_record;
  PyObject* raw = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(capacity));
  if (raw == nullptr) {
    ok = false;
    return {};
  }
  tls_result r = t->session.read(PyBytes_AS_STRING(raw), capacity);
  if (r.size == 0) {
    Py_DECREF(raw);
    return r;
  }
  if (r.size != capacity && _PyBytes_Resize(&raw, static_cast<Py_ssize_t>(r.size)) < 0) {
    ok = false;
    return r;
  }
  nb::object bytes = nb::steal(raw);
  ok = call_app(t, state().str_data_received.ptr(), bytes.ptr());
  return r;
}

// Decrypts into the application's get_buffer() memory, then buffer_updated (as
// SSLProtocol._do_read__buffered, whose size hint is the ciphertext waiting).
// With `data` (the first read when nothing waits in the read BIO), the records are decrypted
// straight from the bytes just received and what the SSL object did not take is fed, also
// when get_buffer fails (the bytes are never lost).
tls_result read_buffered(tls_session_object* t, bool& ok, const char* data = nullptr,
                         std::size_t size = 0) noexcept {
  if (data == nullptr && t->session.input_pending() + t->session.plaintext_pending() == 0) {
    return tls_result{0, tls_status::want_read, 0, 0};
  }
  auto fail = [&]() -> tls_result {
    if (data != nullptr && !t->session.feed(data, size)) {
      PyErr_Clear();  // the failure already pending is the one to report
    }
    ok = false;
    return {};
  };
  module_state& s = state();
  nb::object hint = nb::steal(PyLong_FromSize_t(data != nullptr ? size : t->session.input_pending()));
  if (!hint.is_valid()) return fail();
  nb::object protocol = t->app_protocol;
  PyObject* argv[] = {protocol.ptr(), hint.ptr()};
  nb::object buffer = nb::steal(PyObject_VectorcallMethod(
      s.str_get_buffer.ptr(), argv, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  Py_buffer view;
  if (!buffer.is_valid() || PyObject_GetBuffer(buffer.ptr(), &view, PyBUF_WRITABLE) < 0) return fail();
  if (view.len == 0) {
    PyBuffer_Release(&view);
    PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
    return fail();
  }
  char* into = static_cast<char*>(view.buf);
  const auto capacity = static_cast<std::size_t>(view.len);
  tls_result r;
  if (data != nullptr) {
    std::size_t consumed = 0;
    r = t->session.read_from(data, size, into, capacity, consumed);
    if (consumed < size && !t->session.feed(data + consumed, size - consumed)) {
      PyBuffer_Release(&view);
      PyErr_NoMemory();
      ok = false;
      return r;
    }
  } else {
    r = t->session.read(into, capacity);
  }
  PyBuffer_Release(&view);
  if (r.size > 0) {
    nb::object count = nb::steal(PyLong_FromSize_t(r.size));
    ok = count.is_valid() && call_app(t, s.str_buffer_updated.ptr(), count.ptr());
  }
  return r;
}

// read_copied's first read when nothing waits in the read BIO: decrypted straight from the
// bytes just received (tls_session::read_from); what the SSL object did not take is fed.
tls_result read_copied_direct(tls_session_object* t, const char* data, std::size_t size,
                              bool& ok) noexcept {
  const std::size_t capacity = size + t->session.plaintext_pending() + max_record;
  PyObject* raw = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(capacity));
  if (raw == nullptr) {
    ok = false;
    return {};
  }
  std::size_t consumed = 0;
  tls_result r = t->session.read_from(data, size, PyBytes_AS_STRING(raw), capacity, consumed);
  if (consumed < size && !t->session.feed(data + consumed, size - consumed)) {
    Py_DECREF(raw);
    PyErr_NoMemory();
    ok = false;
    return r;
  }
  if (r.size == 0) {
    Py_DECREF(raw);
    return r;
  }
  if (_PyBytes_Resize(&raw, static_cast<Py_ssize_t>(r.size)) < 0) {
    ok = false;
    return r;
  }
  nb::object bytes = nb::steal(raw);
  ok = call_app(t, state().str_data_received.ptr(), bytes.ptr());
  return r;
}

}  // namespace

bool tls_data_received(stream_io_object* io, const char* data, std::size_t size) noexcept {
  nb::object keep = io->tls;  // alive whatever the callbacks do
  tls_session_object* t = as_tls(keep.ptr());
  module_state& s = state();
  // The common case: records straight from the received bytes (nothing waits in the BIO).
  const bool direct = t->read_fast && t->session.input_pending() == 0;
  if (!direct && !t->session.feed(data, size)) {
    PyErr_NoMemory();
    return ssl_failed(t, ssl_protocol_error);
  }
  if (!t->read_fast) return call_ssl_protocol(t, s.str_tls_input.ptr()) || ssl_failed(t, ssl_protocol_error);
  bool first = direct;
  while (t->read_fast) {
    bool ok = true;
    tls_result r = t->app_buffered ? (first ? read_buffered(t, ok, data, size) : read_buffered(t, ok))
                   : first ? read_copied_direct(t, data, size, ok) : read_copied(t, ok);
    first = false;
    if (!ok) return ssl_failed(t, ssl_protocol_error);
    if (r.status == tls_status::ok) continue;  // the buffer filled up: read on
    if (r.status == tls_status::want_read) break;
    if (r.status == tls_status::closed) {
      // close_notify: SSLProtocol reads it again (the SSL object keeps answering so) and
      // runs eof_received and its shutdown.
      return call_ssl_protocol(t, s.str_tls_input.ptr()) || ssl_failed(t, ssl_protocol_error);
    }
    set_tls_error(r);
    return ssl_failed(t, ssl_protocol_error);
  }
  if (t->session.output_pending() == 0) return true;
  // Records the SSL object wrote while reading (a TLS 1.3 key update's answer).
  if (t->write_fast) return flush_output(t) || ssl_failed(t, ssl_protocol_error);
  return call_ssl_protocol(t, s.str_tls_flush.ptr()) || ssl_failed(t, ssl_protocol_error);
}

namespace {

// tls_shares_openssl(ssl_module_path, version): the _ssl module at that path resolves
// SSL_read to this module's libssl, of OpenSSL version `version`.
bool tls_shares_openssl(const char* ssl_module_path, unsigned long version) {
  return tls_session::library_version() == version && tls_session::shares_library_with(ssl_module_path);
}

void install_tls_glue(nb::object make_error) { state().tls_error_factory = std::move(make_error); }

// -- the TLSSession type ---------------------------------------------------------------------

// TLSSession(sslsock, context, ssl_protocol, io)
PyObject* tls_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
  PyObject *sslsock, *context, *ssl_protocol, *io;
  static const char* keywords[] = {"sslsock", "context", "ssl_protocol", "io", nullptr};
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOO:TLSSession", const_cast<char**>(keywords),
                                   &sslsock, &context, &ssl_protocol, &io)) {
    return nullptr;
  }
  if (!type_is(Py_TYPE(sslsock), "_ssl._SSLSocket") || !type_is(Py_TYPE(context), "_ssl._SSLContext")) {
    PyErr_SetString(PyExc_TypeError, "TLSSession() needs an _ssl._SSLSocket and its _ssl._SSLContext");
    return nullptr;
  }
  if (!PyObject_TypeCheck(io, state().stream_io_type)) {
    PyErr_SetString(PyExc_TypeError, "TLSSession() needs a StreamIO");
    return nullptr;
  }
  ssl_st* ssl = reinterpret_cast<ssl_socket_head*>(sslsock)->ssl;
  if (!tls_session::is_session_of(ssl, reinterpret_cast<ssl_context_head*>(context)->ctx, sslsock)) {
    PyErr_SetString(PyExc_TypeError, "TLSSession(): the SSL object is not where it was expected");
    return nullptr;
  }
  PyObject* self = type->tp_alloc(type, 0);
  if (self == nullptr) return nullptr;
  tls_session_object* t = as_tls(self);
  new (&t->session) tls_session(ssl);
  new (&t->sslsock) nb::object(nb::borrow(sslsock));
  new (&t->ssl_protocol) nb::object(nb::borrow(ssl_protocol));
  new (&t->io) nb::object(nb::borrow(io));
  new (&t->app_protocol) nb::object(nb::none());
  t->app_buffered = false;
  t->read_fast = false;
  t->write_fast = false;
  return self;
}

int tls_traverse(PyObject* self, visitproc visit, void* arg) {
  tls_session_object* t = as_tls(self);
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(t->sslsock.ptr());
  Py_VISIT(t->ssl_protocol.ptr());
  Py_VISIT(t->io.ptr());
  Py_VISIT(t->app_protocol.ptr());
  return 0;
}

int tls_clear(PyObject* self) {
  tls_session_object* t = as_tls(self);
  t->read_fast = t->write_fast = false;
  clear_ref(t->ssl_protocol);
  clear_ref(t->io);
  clear_ref(t->app_protocol);
  return 0;  // sslsock stays until dealloc: the session borrows its SSL object
}

void tls_dealloc(PyObject* self) {
  PyObject_GC_UnTrack(self);
  tls_session_object* t = as_tls(self);
  tls_clear(self);
  t->app_protocol.~object();
  t->io.~object();
  t->ssl_protocol.~object();
  t->sslsock.~object();
  t->session.~tls_session();
  PyTypeObject* type = Py_TYPE(self);
  type->tp_free(self);
  Py_DECREF(type);
}

// set_app_protocol(protocol, buffered)
PyObject* tls_set_app_protocol(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_Format(PyExc_TypeError, "set_app_protocol() takes 2 arguments (%zd given)", nargs);
    return nullptr;
  }
  const int buffered = PyObject_IsTrue(args[1]);
  if (buffered < 0) return nullptr;
  tls_session_object* t = as_tls(self);
  t->app_protocol = nb::borrow(args[0]);
  t->app_buffered = buffered != 0;
  Py_RETURN_NONE;
}

// set_flags(read_fast, write_fast)
PyObject* tls_set_flags(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2) {
    PyErr_Format(PyExc_TypeError, "set_flags() takes 2 arguments (%zd given)", nargs);
    return nullptr;
  }
  const int r = PyObject_IsTrue(args[0]), w = PyObject_IsTrue(args[1]);
  if (r < 0 || w < 0) return nullptr;
  tls_session_object* t = as_tls(self);
  t->read_fast = r != 0 && t->io.is_valid();
  t->write_fast = w != 0 && t->io.is_valid();
  Py_RETURN_NONE;
}

PyObject* tls_close(PyObject* self, PyObject*) {
  tls_clear(self);
  Py_RETURN_NONE;
}

PyObject* get_read_fast(PyObject* self, void*) { return PyBool_FromLong(as_tls(self)->read_fast); }
PyObject* get_write_fast(PyObject* self, void*) { return PyBool_FromLong(as_tls(self)->write_fast); }

PyMethodDef tls_methods[] = {
    {"set_app_protocol", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<tls_set_app_protocol>::call)), METH_FASTCALL,
     "set_app_protocol(protocol, buffered)\n--\n\nThe protocol that receives the plaintext."},
    {"set_flags", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(guarded<tls_set_flags>::call)), METH_FASTCALL,
     "set_flags(read_fast, write_fast)\n--\n\nWhich native paths may run now."},
    {"close", guarded<tls_close>::call, METH_NOARGS, "Stop: drop the protocols and the StreamIO."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef tls_getset[] = {
    {"read_fast", get_read_fast, nullptr, "Records are decrypted natively.", nullptr},
    {"write_fast", get_write_fast, nullptr, "Writes are encrypted natively.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyType_Slot tls_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(guarded<tls_new>::call)},
    {Py_tp_dealloc, reinterpret_cast<void*>(tls_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(tls_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(tls_clear)},
    {Py_tp_methods, tls_methods},
    {Py_tp_getset, tls_getset},
    {Py_tp_doc, const_cast<char*>("TLSSession(sslsock, context, ssl_protocol, io): the native data phase of a TLS connection.")},
    {0, nullptr},
};

PyType_Spec tls_spec = {"data_bridge.pyloop._pyloop.TLSSession", sizeof(tls_session_object), 0,
                        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, tls_slots};

}  // namespace

void export_tls_session(nb::module_& m) {
  PyObject* type = PyType_FromSpec(&tls_spec);
  if (type == nullptr) throw nb::python_error();
  module_state& s = state();
  s.owned_types.push_back(nb::steal(type));
  s.tls_session_type = reinterpret_cast<PyTypeObject*>(type);
  s.str_tls_input = str("_tls_input");
  s.str_tls_flush = str("_tls_flush");
  s.str_write_appdata = str("_write_appdata");
  s.str_ssl_protocol = str("_ssl_protocol");
  m.attr("TLSSession") = nb::borrow(type);
  m.def("install_tls_methods", &install_tls_methods, nb::arg("cls"),
        "Install the native write() and writelines() on a TLS transport class with a `_tls` slot.");
  m.def("tls_shares_openssl", &tls_shares_openssl, nb::arg("ssl_module_path"), nb::arg("version"),
        "True when the _ssl module at that path uses this module's libssl, of that version.");
  m.def("_install_tls_glue", &install_tls_glue, nb::arg("make_error"),
        "Installs the function that builds ssl.SSLError from (ssl_error, error code, reason text).");
}

}  // namespace pyloop::bindings
