"""data_bridge/pyloop/_tls.py — TLS over PyLoop's stream transport: asyncio's SSLProtocol with
its data phase native.

asyncio's sslproto.SSLProtocol keeps every duty it has (the handshake through Python's
ssl.SSLObject, so the same exceptions and extra info; timeouts; the shutdown; flow control;
the application transport), as the running interpreter defines it. This subclass adds one
thing: once the handshake is done, over PyLoop's SocketTransport, a native TLSSession
(bindings/bind_tls_session.cpp over core/src/tls_session.cpp) drives the very SSL object of
the SSLObject: ciphertext read goes to its read BIO and is decrypted for the application
protocol, and the application transport's write() encrypts and queues the records, with no
Python frame between. The subclass tells the session, at every change of state, whether the
native paths may run (`_sync_native`); when they may not, the native code hands the same
calls to this class (`_tls_input`, `_tls_flush`, `_write_appdata`).

The native path needs Python's _ssl module and this extension to share one libssl (checked
once, NATIVE_TLS); otherwise everything runs as asyncio's code (docs/decisions/0023).
"""

from __future__ import annotations

import _ssl
import ssl
import sys
import types
from asyncio import base_events, selector_events, sslproto

from . import _pyloop
from ._pyloop import StreamIO, TLSSession, install_tls_methods
from ._transport import SocketTransport

_WRAPPED = sslproto.SSLProtocolState.WRAPPED
_DO_HANDSHAKE = sslproto.SSLProtocolState.DO_HANDSHAKE
_FLUSHING = sslproto.SSLProtocolState.FLUSHING
_SHUTDOWN = sslproto.SSLProtocolState.SHUTDOWN

# The native data phase drives the SSL object Python's _ssl module made: only when both use
# the same libssl (the same library, not another copy of the same version).
# An _ssl built into the interpreter (no file of its own) is not checked: asyncio's path.
# The bindings read the SSL object at its place in _ssl's _SSLSocket, which is the same from
# CPython 3.11 to 3.14 (Modules/_ssl.c); a later version runs asyncio's path until checked.
_SSL_LAYOUT_KNOWN = (3, 11) <= sys.version_info[:2] <= (3, 14)
_SSL_MODULE_FILE = getattr(_ssl, "__file__", None)
NATIVE_TLS = _SSL_LAYOUT_KNOWN and _SSL_MODULE_FILE is not None and _pyloop.tls_shares_openssl(
    _SSL_MODULE_FILE, ssl.OPENSSL_VERSION_NUMBER)

_ERR_LIB_OFFSET = 23  # OpenSSL 3's ERR_GET_LIB / ERR_GET_REASON split of an error code
_ERR_REASON_MASK = 0x7FFFFF
# OpenSSL's library numbers (ERR_LIB_*) and the mnemonics Python prints for them. Python 3.11
# exposes its tables as _ssl.lib_codes_to_names and _ssl.err_codes_to_names; 3.12 does not.
_LIBRARIES = getattr(_ssl, "lib_codes_to_names", None) or {
    2: "SYS", 3: "BN", 4: "RSA", 5: "DH", 6: "EVP", 7: "BUF", 8: "OBJ", 9: "PEM", 10: "DSA",
    11: "X509", 13: "ASN1", 14: "CONF", 15: "CRYPTO", 16: "EC", 20: "SSL", 32: "BIO",
    33: "PKCS7", 34: "X509V3", 35: "PKCS12", 36: "RAND", 37: "DSO", 38: "ENGINE", 39: "OCSP",
    40: "UI", 41: "COMP", 42: "ECDSA", 43: "ECDH", 44: "OSSL_STORE", 45: "FIPS", 46: "CMS",
    47: "TS", 48: "HMAC", 50: "CT", 51: "ASYNC", 52: "KDF", 53: "SM2", 54: "ESS",
    55: "PROP", 56: "CRMF", 57: "PROV", 58: "CMP", 59: "OSSL_ENCODER", 60: "OSSL_DECODER",
    61: "HTTP",
}
_REASONS = getattr(_ssl, "err_codes_to_names", None) or {}


def ssl_error(ssl_error_code: int, code: int, text: str) -> ssl.SSLError:
    """The ssl.SSLError the ssl module raises for an OpenSSL failure in read() or write():
    the same class, errno, library, reason and "[LIB: REASON] text" message (without the
    "(_ssl.c:LINE)" suffix, which names a line of the _ssl module's source)."""
    if ssl_error_code == ssl.SSL_ERROR_SYSCALL and code == 0:
        return ssl.SSLEOFError(ssl.SSL_ERROR_EOF, "EOF occurred in violation of protocol")
    lib = (code >> _ERR_LIB_OFFSET) & 0xFF
    library = _LIBRARIES.get(lib)
    # Python's reason mnemonics are OpenSSL's macro names; OpenSSL's texts are those names
    # in lower case with spaces, which gives the name back where Python's table is not exposed.
    reason = _REASONS.get((lib, code & _ERR_REASON_MASK)) or (
        text.upper().replace(" ", "_") if text else None)
    if reason is not None and library is not None:
        text = f"[{library}: {reason}] {text}"
    elif library is not None:
        text = f"[{library}] {text}"
    cls = {ssl.SSL_ERROR_SYSCALL: ssl.SSLSyscallError,
           ssl.SSL_ERROR_WANT_WRITE: ssl.SSLWantWriteError}.get(ssl_error_code, ssl.SSLError)
    exc = cls(ssl_error_code, text or f"unknown error ({code:#x})")
    exc.library = library
    exc.reason = reason
    return exc


_pyloop._install_tls_glue(ssl_error)


class _SSLTransport(sslproto._SSLProtocolTransport):
    """asyncio's TLS application transport; write() and writelines() are native
    (install_tls_methods): encrypted at once while the session's write path is open, else
    handed to SSLProtocol._write_appdata as asyncio's transport does."""

    __slots__ = ("_tls",)

    def __init__(self, loop, ssl_protocol):
        self._tls = None
        super().__init__(loop, ssl_protocol)


install_tls_methods(_SSLTransport)


class SSLProtocol(sslproto.SSLProtocol):
    """asyncio's SSLProtocol whose data phase runs in a native TLSSession when it can."""

    _native = None  # the TLSSession, from the end of the handshake to connection_lost

    # -- the application transport and protocol -------------------------------------------

    def _get_app_transport(self):
        if self._app_transport is None:
            if self._app_transport_created:
                raise RuntimeError("Creating _SSLProtocolTransport twice")
            self._app_transport = _SSLTransport(self._loop, self)
            self._app_transport_created = True
        return self._app_transport

    def _set_app_protocol(self, app_protocol):
        super()._set_app_protocol(app_protocol)
        if self._native is not None:
            self._native.set_app_protocol(app_protocol, self._app_protocol_is_buffer)

    # -- attaching the native session ---------------------------------------------------------

    def _attach_native(self):
        transport = self._transport
        io = getattr(transport, "_io", None)
        if not NATIVE_TLS or type(io) is not StreamIO:
            return
        sslobj = self._sslobj
        try:
            session = TLSSession(sslobj._sslobj, sslobj.context, self, io)
        except TypeError:
            return  # not the SSL object layout this build knows: asyncio's path throughout
        session.set_app_protocol(self._app_protocol, self._app_protocol_is_buffer)
        self._native = session
        io.set_tls(session)
        if self._app_transport is not None:
            self._app_transport._tls = session

    def _detach_native(self):
        session = self._native
        if session is None:
            return
        self._native = None
        session.close()
        io = getattr(self._transport, "_io", None)
        if type(io) is StreamIO:
            io.set_tls(None)
        if self._app_transport is not None:
            self._app_transport._tls = None

    def _sync_native(self):
        """Opens or closes the native paths to match the state asyncio's code keeps."""
        session = self._native
        if session is None:
            return
        wrapped = self._state is _WRAPPED
        session.set_flags(
            wrapped and not self._app_reading_paused,
            wrapped and not self._ssl_writing_paused and not self._app_writing_paused
            and not self._write_backlog)

    # -- state changes: each one re-syncs the native paths ---------------------------------

    def _set_state(self, new_state):
        super()._set_state(new_state)
        if new_state is _WRAPPED and self._native is None:
            self._attach_native()
        self._sync_native()

    def connection_lost(self, exc):
        self._detach_native()
        super().connection_lost(exc)

    def _pause_reading(self):
        super()._pause_reading()
        self._sync_native()

    def _resume_reading(self):
        super()._resume_reading()
        self._sync_native()

    def pause_writing(self):
        super().pause_writing()
        self._sync_native()

    def resume_writing(self):
        super().resume_writing()
        self._sync_native()

    def _write_appdata(self, list_of_data):
        super()._write_appdata(list_of_data)
        self._sync_native()

    def _control_app_writing(self):
        super()._control_app_writing()
        self._sync_native()

    # -- called by the native session on its slow paths ---------------------------------------

    def _tls_input(self):
        """Ciphertext was appended to the read BIO natively: what buffer_updated does next."""
        state = self._state
        if state is _DO_HANDSHAKE:
            self._do_handshake()
        elif state is _WRAPPED:
            self._do_read()
        elif state is _FLUSHING:
            self._do_flush()
        elif state is _SHUTDOWN:
            self._do_shutdown()

    def _tls_flush(self):
        """Records written while reading, with the write path closed: as _do_read ends."""
        if self._write_backlog:
            self._do_write()
        else:
            self._process_outgoing()


# asyncio's own orchestration, by reference (docs/decisions/0003), with the names it uses for
# SSLProtocol resolved to the class above, and, in _make_ssl_transport (the ssl= of
# create_connection, create_server and connect_accepted_socket), the selector loop's socket
# transport resolved to PyLoop's native one: loop.start_tls and _make_ssl_transport run the
# interpreter's own code on PyLoop's classes.
_SSLPROTO = types.SimpleNamespace(**vars(sslproto))
_SSLPROTO.SSLProtocol = SSLProtocol


def _rebound(function, **names):
    namespace = dict(function.__globals__, sslproto=_SSLPROTO, **names)
    clone = types.FunctionType(function.__code__, namespace, function.__name__,
                               function.__defaults__, function.__closure__)
    clone.__kwdefaults__ = function.__kwdefaults__
    clone.__qualname__ = function.__qualname__
    clone.__doc__ = function.__doc__
    return clone


start_tls = _rebound(base_events.BaseEventLoop.start_tls)
make_ssl_transport = _rebound(selector_events.BaseSelectorEventLoop._make_ssl_transport,
                              _SelectorSocketTransport=SocketTransport)
