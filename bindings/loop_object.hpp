// bindings/loop_object.hpp — the native base of PyLoop: a Python object around a loop_driver,
// and what the bindings' files share about it.
#pragma once

#include <Python.h>

#include <nanobind/nanobind.h>

#include <cstdint>
#include <unordered_map>

#include "errors.hpp"
#include "pyloop/loop_driver.hpp"

namespace pyloop::bindings {

namespace nb = nanobind;

// Layout of data_bridge.pyloop._pyloop.Loop instances. PyLoop (Python) derives from it and
// adds __dict__ and __weakref__.
// Thread safety: the loop's thread only, GIL held; call_soon_threadsafe is the exception and
// only touches driver->call_soon_threadsafe().
struct loop_object {
  PyObject_HEAD
  // The engine: made by tp_new, closed (every kernel object released) by _close_native,
  // deleted with the object, so objects that keep the loop alive (transports, sock_* calls)
  // can always ask it closed().
  loop_driver* driver;
  PyThreadState* released_state;  // saved thread state while the GIL is released in a wait
  unsigned long thread_id;        // threading.get_ident() of the running thread
  bool running;                   // thread_id is meaningful (run_forever is active)
  bool debug;                     // asyncio debug mode
  bool closed;                    // close() has run
  bool watching_signals;          // the interrupt pipe counts as an I/O source
  nb::object task_factory;        // set_task_factory()'s callable; empty for asyncio.Task
  // Futures of getaddrinfo/getnameinfo queries running on the native runtime, by id; lazy.
  std::unordered_map<std::uint64_t, nb::object>* pending_queries;
  std::uint64_t last_query_id;    // id of the latest query
  // Native file jobs (data_bridge.pyloop.fs) submitted and not yet back, including those whose
  // caller was cancelled, and the futures waiting for that count to reach zero (a list, made
  // on first use): shutdown_default_executor waits for them as for the executor's threads.
  std::size_t file_jobs;
  nb::object file_jobs_waiters;
};

inline loop_object* as_loop(PyObject* o) noexcept { return reinterpret_cast<loop_object*>(o); }

// The one closed-loop check of the native methods: false with asyncio's RuntimeError set.
inline bool require_open(const loop_object* loop) noexcept {
  if (!loop->closed) return true;
  set_loop_closed();
  return false;
}

// An integer descriptor from a Python int, with asyncio's errors (ValueError below 0,
// OverflowError past the C range). False with the exception set.
bool as_descriptor(PyObject* value, int& fd);

// Disposes of a readiness callback that was replaced or removed: a native one is released
// (its discard() tells its owner the watch is gone), a Python handle is cancelled. False
// with an exception set if cancel() raised.
bool dispose_watch_callback(const pyloop::callback& cb);

// A kind of native readiness callback (a transport's reader or writer, a waiting sock_*
// call): the core's table, and the garbage collector's view of the payload, which the loop's
// tp_traverse visits while the callback is installed or queued.
struct native_watch_kind {
  const pyloop::callback_ops* ops;
  int (*traverse)(void* payload, visitproc visit, void* arg);
};
extern const native_watch_kind stream_reader_kind;  // bindings/bind_stream_io.cpp
extern const native_watch_kind stream_writer_kind;  // bindings/bind_stream_io.cpp
extern const native_watch_kind sock_op_kind;        // bindings/bind_sock_ops.cpp
// A datagram transport's read and write watches and its resume hand-off (a ready-queue entry).
extern const native_watch_kind datagram_read_kind;    // bindings/bind_datagram_io.cpp
extern const native_watch_kind datagram_write_kind;   // bindings/bind_datagram_io.cpp
extern const native_watch_kind datagram_resume_kind;  // bindings/bind_datagram_io.cpp
extern const native_watch_kind child_watch_kind;    // bindings/bind_child_watch.cpp

// The native kind of cb, or null (a Python handle, or a core-internal entry).
const native_watch_kind* native_kind_of(const pyloop::callback& cb) noexcept;

// The owner (a StreamIO object) of a stream writer listed for the end-of-turn flush.
PyObject* stream_io_of_writer(const pyloop::stream_writer* writer) noexcept;

// Every transport written to since the last flush sends its queue (end of turn,
// create_future, close). False when SystemExit/KeyboardInterrupt is pending (it leaves the
// loop once all are flushed); other failures went to sys.unraisablehook. An exception that
// was already pending is kept.
bool flush_stream_writers(loop_object* loop) noexcept;

void export_loop(nb::module_& m);
void export_stream_io(nb::module_& m);
void export_sock_ops(nb::module_& m);
void export_pipe(nb::module_& m);
void export_datagram_io(nb::module_& m);
void export_subprocess(nb::module_& m);
void export_child_watch(nb::module_& m);
void export_file_io(nb::module_& m);
void export_native_buffer(nb::module_& m);  // bindings/bind_native_buffer.cpp
void export_native_bridge(nb::module_& m);  // bindings/bind_native_bridge.cpp

}  // namespace pyloop::bindings
