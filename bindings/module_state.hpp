// bindings/module_state.hpp — Python objects the extension caches, filled at import.
#pragma once

#include <vector>

#include <nanobind/nanobind.h>

#include "errors.hpp"

namespace pyloop::bindings {

namespace nb = nanobind;

struct handle_object;

// Memory of dead handles kept for reuse, as CPython keeps Future objects: a call_soon in
// steady state then neither allocates nor counts toward the garbage collector's threshold.
// Thread safety: GIL held.
struct handle_freelist {
  static constexpr int capacity = 2048;
  handle_object* items[capacity];  // untracked, field-cleared handle memory
  int count = 0;                   // entries in use
};

// Everything the hot paths would otherwise look up by name on every call. One instance per
// module, created by export_module_state() and released when the module is torn down
// (a capsule on the module owns it), never a static nb::object.
// Thread safety: written once during import, read-only afterwards (GIL held).
struct module_state {
  PyTypeObject* handle_type = nullptr;        // data_bridge.pyloop._pyloop.Handle
  PyTypeObject* timer_handle_type = nullptr;  // data_bridge.pyloop._pyloop.TimerHandle
  PyTypeObject* loop_type = nullptr;          // data_bridge.pyloop._pyloop.Loop
  PyTypeObject* sock_op_type = nullptr;       // a sock_* operation waiting for readiness
  PyTypeObject* stream_io_type = nullptr;     // data_bridge.pyloop._pyloop.StreamIO
  PyTypeObject* datagram_io_type = nullptr;   // data_bridge.pyloop._pyloop.DatagramIO
  // Offset of the `_io` slot in instances of the class given to install_datagram_methods().
  Py_ssize_t datagram_io_slot_offset = 0;
  // Offset of the `_io` slot in instances of the transport class given to
  // install_stream_methods() (where write() finds its StreamIO).
  Py_ssize_t stream_io_slot_offset = 0;
  PyTypeObject* tls_session_type = nullptr;   // data_bridge.pyloop._pyloop.TLSSession
  // Offset of the `_tls` slot in instances of the TLS transport class given to
  // install_tls_methods() (where its write() finds its TLSSession).
  Py_ssize_t tls_slot_offset = 0;
  std::vector<nb::object> owned_types;        // keeps the types above alive
  nb::object future_type;                     // asyncio.Future (the C accelerated one)
  nb::object task_type;                       // asyncio.Task
  nb::object gaierror;                        // socket.gaierror
  nb::object socket_type;                     // socket.socket: the only class sock_* serve natively
  nb::object kwnames_loop;                    // ("loop",) for Future(loop=...)
  nb::object kwnames_loop_name_context;       // ("loop", "name", "context") for Task(...)
  nb::object str_context;                     // "context", to parse keyword arguments
  nb::object str_check_thread;                // "_check_thread"
  nb::object str_check_callback;              // "_check_callback"
  nb::object str_run_handle_debug;            // "_run_handle_debug"
  nb::object str_create_task_with_factory;    // "_create_task_with_factory"
  nb::object str_handle_signal;               // "_handle_signal"
  nb::object str_log_slow_callback;           // "_log_slow_callback"
  nb::object str_slow_callback_duration;      // "slow_callback_duration"
  // The transport's slow paths, called by StreamIO (python/.../_transport.py):
  nb::object str_on_write_error;              // "_on_write_error"
  nb::object str_maybe_pause_protocol;        // "_maybe_pause_protocol"
  nb::object str_maybe_resume_protocol;       // "_maybe_resume_protocol"
  nb::object str_protocol_paused;             // "_protocol_paused"
  nb::object str_on_drained;                  // "_on_drained"
  nb::object str_on_eof;                      // "_on_eof"
  nb::object str_fatal_error;                 // "_fatal_error"
  nb::object str_protocol_error;              // "_protocol_error"
  nb::object str_data_received;               // "data_received"
  nb::object str_get_buffer;                  // "get_buffer"
  nb::object str_buffer_updated;              // "buffer_updated"
  nb::object minus_one;                       // -1, get_buffer's size hint
  nb::object str_fileno;                      // "fileno"
  nb::object str_gettimeout;                  // "gettimeout"
  nb::object str_create_future;               // "create_future"
  nb::object str_ensure_fd_no_transport;      // "_ensure_fd_no_transport"
  nb::object str_done;                        // "done"
  nb::object str_set_result;                  // "set_result"
  nb::object str_set_exception;               // "set_exception"
  // The datagram transport (python/.../_datagram.py) and its protocol, called by DatagramIO:
  nb::object str_datagram_received;           // "datagram_received"
  nb::object str_error_received;              // "error_received"
  nb::object str_sendto_slow;                 // "_sendto_slow"
  nb::object str_callback_error;              // "_callback_error"
  // SSLProtocol's slow paths, called by TLSSession (python/.../_tls.py; made by
  // export_tls_session):
  nb::object str_tls_input;                   // "_tls_input"
  nb::object str_tls_flush;                   // "_tls_flush"
  nb::object str_write_appdata;               // "_write_appdata"
  nb::object str_ssl_protocol;                // "_ssl_protocol"
  nb::object tls_error_factory;               // (ssl_error, code) -> ssl.SSLError (_tls.ssl_error)
  // Python glue installed by the package (data_bridge/pyloop/_glue.py) at import:
  nb::object report_handle_exception;  // (handle, exc) -> None: builds the context dict
  nb::object handle_repr;              // (handle) -> str, asyncio's Handle repr format
  nb::object extract_stack;            // () -> list: the caller's stack, for debug mode
  nb::object cancelled_error;          // asyncio.CancelledError (native bridge completions)
  PyTypeObject* native_buffer_type = nullptr;  // _pyloop.NativeBuffer (native bridge)
  PyTypeObject* native_future_type = nullptr;  // _pyloop.NativeFuture (native bridge)
  nb::object future_cancel;            // asyncio.Future.cancel, which NativeFuture.cancel extends
  handle_freelist free_handles;        // recycled Handle memory
  handle_freelist free_timer_handles;  // recycled TimerHandle memory

  ~module_state();
};

// The one module_state of the loaded extension.
module_state& state() noexcept;
// The same, or null once the module has been torn down (interpreter exit): objects that
// outlive the module (a handle kept in a global) must check before using it.
module_state* state_if_alive() noexcept;

void export_module_state(nb::module_& m);

// Drops a reference Py_CLEAR-style: the field is empty before any finalizer runs.
inline void clear_ref(nb::object& field) noexcept {
  nb::object gone = std::move(field);
}

}  // namespace pyloop::bindings
