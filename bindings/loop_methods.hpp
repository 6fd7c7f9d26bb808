// bindings/loop_methods.hpp — the Loop type's methods, defined by concept in the bind_*.cpp
// files and gathered into one method table by bind_loop.cpp.
#pragma once

#include "loop_object.hpp"

namespace pyloop::bindings {

// Python's own phrasing for a missing argument: TypeError "f() missing 1 required positional
// argument: 'name'". Returns null.
PyObject* missing_argument(const char* method, const char* name);

// Scheduling (bind_scheduling.cpp): noexcept, each catching what may throw where it throws
// (a queue that cannot grow), as these are the hottest entry points.
PyObject* loop_call_soon(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) noexcept;
PyObject* loop_call_soon_threadsafe(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) noexcept;
PyObject* loop_call_later(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) noexcept;
PyObject* loop_call_at(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) noexcept;
PyObject* loop_time(PyObject* self, PyObject*) noexcept;
PyObject* loop_create_future(PyObject* self, PyObject*) noexcept;
PyObject* loop_create_task(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) noexcept;

// Readiness (bind_readiness.cpp).
PyObject* loop_add_reader(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames);
PyObject* loop_add_writer(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames);
PyObject* loop_remove_reader(PyObject* self, PyObject* fd);
PyObject* loop_remove_writer(PyObject* self, PyObject* fd);

// Signals (bind_signals.cpp).
bool dispatch_signals(void* loop) noexcept;  // the driver's after-wait signal hook
PyObject* loop_watch_signals(PyObject* self, PyObject* enabled);
PyObject* loop_make_handle(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames);
PyObject* loop_add_callback(PyObject* self, PyObject* handle);
PyObject* loop_signal_wakeup_fd(PyObject* self, PyObject*);

// Name resolution on the native runtime (bind_resolver.cpp).
PyObject* loop_resolve(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
PyObject* loop_resolve_name(PyObject* self, PyObject* args);

// The sock_* calls (bind_sock_ops.cpp).
PyObject* loop_sock_recv(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
PyObject* loop_sock_recv_into(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
PyObject* loop_sock_sendall(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
PyObject* loop_sock_wait(PyObject* self, PyObject* const* args, Py_ssize_t nargs);

}  // namespace pyloop::bindings
