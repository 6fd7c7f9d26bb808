// bindings/module_state.hpp — Python objects the extension caches, filled at import.
#pragma once

#include <vector>

#include <nanobind/nanobind.h>

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
  // Python glue installed by the package (data_bridge/pyloop/_glue.py) at import:
  nb::object report_handle_exception;  // (handle, exc) -> None: builds the context dict
  nb::object handle_repr;              // (handle) -> str, asyncio's Handle repr format
  nb::object extract_stack;            // () -> list: the caller's stack, for debug mode
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

// Takes the current exception out of the error indicator (normalized, with its traceback).
inline nb::object take_exception() noexcept {
#if PY_VERSION_HEX >= 0x030C0000
  return nb::steal(PyErr_GetRaisedException());
#else
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  if (traceback != nullptr && value != nullptr) PyException_SetTraceback(value, traceback);
  nb::object keep_type = nb::steal(type), keep_traceback = nb::steal(traceback);
  return nb::steal(value);
#endif
}

// Puts an exception taken with take_exception() back into the error indicator.
inline void restore_exception(nb::object exc) noexcept {
#if PY_VERSION_HEX >= 0x030C0000
  PyErr_SetRaisedException(exc.release().ptr());
#else
  PyObject* value = exc.release().ptr();
  PyErr_Restore(Py_NewRef(reinterpret_cast<PyObject*>(Py_TYPE(value))), value,
                PyException_GetTraceback(value));
#endif
}

// True when the pending exception must leave the loop (asyncio re-raises these two).
inline bool exiting_exception_pending() noexcept {
  return PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
}

// Drops a reference Py_CLEAR-style: the field is empty before any finalizer runs.
inline void clear_ref(nb::object& field) noexcept {
  nb::object gone = std::move(field);
}

}  // namespace pyloop::bindings
