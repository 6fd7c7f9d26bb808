// bindings/loop_object.hpp — the native base of PyLoop: a Python object around a loop_driver.
#pragma once

#include <Python.h>

#include <nanobind/nanobind.h>

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "pyloop/loop_driver.hpp"

namespace pyloop::bindings {

// Layout of data_bridge.pyloop._pyloop.Loop instances. PyLoop (Python) derives from it and
// adds __dict__ and __weakref__.
// Thread safety: the loop's thread only, GIL held; call_soon_threadsafe is the exception and
// only touches driver->call_soon_threadsafe().
struct loop_object {
  PyObject_HEAD
  loop_driver* driver;            // the engine; owned, deleted with the object
  PyThreadState* released_state;  // saved thread state while the GIL is released in a wait
  unsigned long thread_id;        // threading.get_ident() of the running thread
  bool running;                   // thread_id is meaningful (run_forever is active)
  bool debug;                     // asyncio debug mode
  bool closed;                    // close() has run
  bool watching_signals;          // the interrupt pipe counts as an I/O source
  nanobind::object task_factory;  // set_task_factory()'s callable; empty for asyncio.Task
  char* read_buffer;              // transports' receive buffer (read_buffer_size bytes), lazy
  // Futures of getaddrinfo/getnameinfo queries running on the native runtime, by id; lazy.
  std::unordered_map<std::uint64_t, nanobind::object>* pending_queries;
  std::uint64_t last_query_id;    // id of the latest query
  // StreamSenders written to during this turn (strong references), flushed at its end; lazy.
  std::vector<PyObject*>* flush_list;
  std::uint64_t sends;            // send calls of stream senders (diagnostics, tests)
  std::uint64_t turn;             // loop turns ended so far (stream senders' write pattern)
};

// Size of the per-loop receive buffer: the most one transport read takes (asyncio's 256 KiB).
inline constexpr Py_ssize_t read_buffer_size = 256 * 1024;

inline loop_object* as_loop(PyObject* o) noexcept { return reinterpret_cast<loop_object*>(o); }

void export_loop(nanobind::module_& m);

// Loop._resolve and Loop._resolve_name (bindings/bind_resolver.cpp).
PyObject* loop_resolve(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
PyObject* loop_resolve_name(PyObject* self, PyObject* args);

// An integer descriptor from a Python int, with asyncio's errors (ValueError below 0,
// OverflowError past the C range). False with the exception set.
bool as_descriptor(PyObject* value, int& fd);

// One recv() on fd through the loop's receive buffer, as bytes of the size received (b""
// at end of stream); null with the errno's OSError subclass set (BlockingIOError if empty).
nanobind::object recv_bytes(loop_object* loop, int fd);
// The same for at most `size` bytes: up to the loop's buffer size through that buffer,
// beyond into a bytes object of `size` shrunk to what arrived, as socket.recv(size) does.
// When the call would block: null, would_block set and no exception set.
nanobind::object recv_bytes(loop_object* loop, int fd, Py_ssize_t size, bool& would_block);

// Disposes of a readiness callback that was replaced or removed: a native one is released
// (its discard() tells its owner the watch is gone), a Python handle is cancelled. False
// with an exception set if cancel() raised.
bool dispose_watch_callback(const pyloop::callback& cb);

// A kind of native readiness callback (stream reader, stream sender, sock_* operation): the
// core's operations, and the garbage collector's view of the payload, which the loop's
// tp_traverse visits while the callback is installed or queued.
struct native_watch_kind {
  pyloop::callback_ops ops;
  int (*traverse)(void* payload, visitproc visit, void* arg);
};
extern const native_watch_kind stream_reader_kind;  // bindings/bind_stream_reader.cpp
extern const native_watch_kind stream_sender_kind;  // bindings/bind_stream_sender.cpp
extern const native_watch_kind sock_op_kind;        // bindings/bind_sock_ops.cpp

// The native kind of cb, or null (a Python handle, or a core-internal entry).
const native_watch_kind* native_kind_of(const pyloop::callback& cb) noexcept;

// For native kinds: never cancelled while queued (they are removed, not cancelled).
inline bool never_cancelled(const void*) noexcept { return false; }
// For kinds whose payload is a Python object holding one reference per installation/run.
inline void retain_object_payload(void* payload) noexcept { Py_INCREF(static_cast<PyObject*>(payload)); }
inline int traverse_object_payload(void* payload, visitproc visit, void* arg) {
  Py_VISIT(static_cast<PyObject*>(payload));
  return 0;
}

// Loop._add_stream_reader (bindings/bind_stream_reader.cpp).
PyObject* loop_add_stream_reader(PyObject* self, PyObject* const* args, Py_ssize_t nargs);

// The native write path of stream transports (bindings/bind_stream_sender.cpp).
void export_stream_sender(nanobind::module_& m);
// Every sender written to since the last flush sends its queue (create_future, close).
bool flush_stream_senders(void* loop) noexcept;
// The end_of_turn hook: counts the turn, then flushes as above.
bool end_stream_turn(void* loop) noexcept;
// Drops the loop's list of senders to flush (close, GC).
void drop_stream_senders(loop_object* loop) noexcept;
// Loop._sock_recv, _sock_recv_into, _sock_sendall (bindings/bind_sock_ops.cpp).
PyObject* loop_sock_recv(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
PyObject* loop_sock_recv_into(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
PyObject* loop_sock_sendall(PyObject* self, PyObject* const* args, Py_ssize_t nargs);
void export_sock_ops(nanobind::module_& m);

}  // namespace pyloop::bindings
