// bindings/tls_session_object.hpp — TLSSession: the native data phase of one TLS connection.
#pragma once

#include <Python.h>

#include <nanobind/nanobind.h>

#include "pyloop/tls_session.hpp"
#include "stream_io_object.hpp"

namespace pyloop::bindings {

// Layout of data_bridge.pyloop._pyloop.TLSSession. It drives the SSL object of a Python
// ssl.SSLObject (through its _ssl._SSLSocket, kept alive here) once the handshake is done:
// ciphertext the StreamIO reads is decrypted and handed to the application protocol, and
// writes to the application's transport are encrypted and queued on the StreamIO's writer,
// with no Python frame between. asyncio's SSLProtocol (python/.../_tls.py) keeps every other
// duty and says through `read_fast`/`write_fast` when the native paths may run; otherwise
// they hand over to it (_tls_input, _write_appdata).
// Thread safety: the loop's thread, GIL held.
struct tls_session_object {
  PyObject_HEAD
  tls_session session;     // the SSL object's data phase (borrowed from `sslsock`)
  nb::object sslsock;      // the _ssl._SSLSocket owning the SSL object
  nb::object ssl_protocol; // the SSLProtocol: its slow paths and its error reporting
  nb::object io;           // the StreamIO of the transport under TLS, until close()
  nb::object app_protocol; // receives the plaintext
  bool app_buffered;       // app_protocol is a BufferedProtocol
  bool read_fast;          // SSLProtocol is WRAPPED and the application reads: decrypt here
  bool write_fast;         // WRAPPED, no backlog, no writing paused: encrypt here
};

inline tls_session_object* as_tls(PyObject* o) noexcept { return reinterpret_cast<tls_session_object*>(o); }

// The StreamIO's read hook while a TLSSession is attached (set_tls): ciphertext in.
bool tls_data_received(stream_io_object* io, const char* data, std::size_t size) noexcept;

// One write to the StreamIO's writer with asyncio's checks (write_eof, sendfile, a lost
// connection): what SocketTransport.write(data) does (bind_stream_write.cpp).
PyObject* stream_io_write(stream_io_object* io, PyObject* data) noexcept;
// The same for `size` bytes at `data`, valid during the call (copied if they must wait).
PyObject* stream_io_write_raw(stream_io_object* io, const char* data, std::size_t size) noexcept;

// asyncio's message for a failure in the data phase (SSLProtocol._do_read, _write_appdata).
inline constexpr const char* ssl_protocol_error = "Fatal error on SSL protocol";

// Calls ssl_protocol.<name>(*args), one of its slow paths; true when it returned (or the
// session is closed), false with its exception set.
bool call_ssl_protocol(tls_session_object* t, PyObject* name, PyObject* a = nullptr,
                       PyObject* b = nullptr) noexcept;
// An error inside the data phase: as SSLProtocol._do_read and _write_appdata do, anything but
// SystemExit and KeyboardInterrupt goes to its _fatal_error with `message`. True when handled.
bool ssl_failed(tls_session_object* t, const char* message) noexcept;
// Sets the ssl.SSLError the ssl module would raise for `r` (built by _tls.ssl_error from the
// SSL_get_error code, the error code and its reason's text).
void set_tls_error(const tls_result& r) noexcept;
// Sends the records the session made: those of write_to, then the write BIO's (bind_tls_write.cpp).
bool flush_output(tls_session_object* t) noexcept;
// Makes cls.write and cls.writelines the TLS transport's native ones (bind_tls_write.cpp).
void install_tls_methods(nb::handle cls);

void export_tls_session(nb::module_& m);

}  // namespace pyloop::bindings
