// bindings/handle_object.hpp — Handle and TimerHandle: a callback, its arguments and context.
#pragma once

#include <Python.h>

#include <nanobind/nanobind.h>

#include "pyloop/callback.hpp"

namespace pyloop::bindings {

namespace nb = nanobind;

// Layout shared by Handle and TimerHandle (asyncio.events.Handle / TimerHandle counterparts).
// The queues hold a strong reference to a handle as a callback payload; the handle holds the
// callback, its arguments, the context to run it in, and its loop.
// Thread safety: GIL held for every access.
struct handle_object {
  PyObject_HEAD
  nb::object loop;              // the loop that runs this handle
  nb::object callback;          // what to call; empty once cancelled
  nb::object args;              // tuple of positional arguments; empty once cancelled
  nb::object context;           // contextvars.Context the callback runs in
  nb::object source_traceback;  // list of frames in debug mode, else empty
  nb::object repr;              // repr saved at cancellation in debug mode, else empty
  PyObject* weakrefs;           // weak reference list (CPython manages it)
  double when;                  // deadline in loop time (TimerHandle only)
  bool cancelled;               // cancel() was called
  bool scheduled;               // still in the loop's timer heap (TimerHandle only)
  bool is_timer;                // instance of TimerHandle
};

inline handle_object* as_handle(void* o) noexcept { return static_cast<handle_object*>(o); }

// Creates a handle for callback(*args) in context (None or null: a copy of the current one).
// Returns a new reference, or null with an exception set.
handle_object* new_handle(PyObject* loop, PyObject* callback, PyObject* const* args,
                          Py_ssize_t nargs, PyObject* context);
handle_object* new_timer_handle(double when, PyObject* loop, PyObject* callback,
                                PyObject* const* args, Py_ssize_t nargs, PyObject* context);

// Runs the handle's callback now (no debug bookkeeping). Returns abort with the exception
// set for SystemExit and KeyboardInterrupt; any other exception goes to the loop's
// exception handler, as asyncio's Handle._run does.
callback_status run_handle(handle_object* h) noexcept;

// The callback_ops tables that let the core queue handles. Each queued entry owns one
// reference to the handle.
extern const callback_ops handle_callback_ops;
extern const callback_ops timer_callback_ops;

// Takes over a reference that a queue or readiness watch held. A handle still referenced
// elsewhere becomes tracked by the garbage collector from here on (see bind_handle.cpp).
nb::object release_from_queue(void* payload) noexcept;

// tp_traverse helper for the loop: visits what a queued handle keeps alive on the loop's
// behalf (handles in queues are not tracked by the collector themselves).
int traverse_queued_handle(void* payload, visitproc visit, void* arg);

void export_handle(nb::module_& m);

}  // namespace pyloop::bindings
