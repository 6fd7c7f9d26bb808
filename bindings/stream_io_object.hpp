// bindings/stream_io_object.hpp — StreamIO: the native I/O of one stream transport.
#pragma once

#include <Python.h>

#include <nanobind/nanobind.h>

#include "loop_object.hpp"
#include "pyloop/stream_reader.hpp"
#include "pyloop/stream_writer.hpp"

namespace pyloop::bindings {

// Layout of data_bridge.pyloop._pyloop.StreamIO: the core's reader and writer of one
// transport's descriptor, and the Python objects their events reach. The Python transport
// (python/.../_transport.py) keeps it in its `_io` slot; the core calls back through the
// event tables in bind_stream_io.cpp (reading) and bind_stream_write.cpp (writing), and the
// reader's and writer's owner pointer is this object.
// Thread safety: the loop's thread, GIL held.
struct stream_io_object {
  PyObject_HEAD
  nb::object loop;       // the loop_object, until dealloc: its driver outlives reader and writer
  nb::object transport;  // the Python transport, until detach(): the slow paths call it
  nb::object protocol;   // while reading: receives data_received or get_buffer/buffer_updated
  nb::object context;    // while reading: the contextvars.Context the protocol runs in
  nb::object entered;    // the Context the running read callback entered (on_enter to on_leave)
  nb::object tls;        // a TLSSession while TLS runs over this stream (set_tls): bytes read go to it
  Py_buffer lent;        // get_buffer()'s memory during one read into it (obj null otherwise)
  double read_started;   // debug mode: loop time at which the running read callback began
  stream_writer writer;  // the write half: queue, sending policy, writability watch
  stream_reader reader;  // the read half: the readiness callback
  int lost;              // writes after the connection was lost (asyncio's _conn_lost)
  descriptor_kind kind;  // socket (recv/send) or stream (read/write: a pipe transport's)
  bool closing;          // a pipe transport is closing: writes are dropped and counted
  bool eof;              // write_eof() was called: writes are refused
  bool blocked;          // a sendfile is in progress: writes are refused
};

inline stream_io_object* as_stream_io(void* o) noexcept { return static_cast<stream_io_object*>(o); }
inline loop_object* loop_of(const stream_io_object* io) noexcept { return as_loop(io->loop.ptr()); }

// Calls transport.<name>(*args) for a slow path (interned name from module state). True when
// it returned, or when the transport is gone (detached); false with its exception set.
bool call_transport(stream_io_object* io, PyObject* name, PyObject* arg = nullptr) noexcept;

// What a writer call's outcome means to Python: None, or null with the exception it left or
// implies (the transport's pending error, "Event loop is closed", the watch's OSError).
PyObject* write_result(stream_io_object* io, write_outcome outcome) noexcept;

// The event functions the reader and the writer share: a failure inside a readiness callback
// (reported as unraisable on the transport, or aborting for SystemExit/KeyboardInterrupt),
// and the references watches and the flush list hold on the StreamIO.
callback_status io_callback_failed(void* owner) noexcept;
void retain_io(void* owner) noexcept;
void release_io(void* owner) noexcept;

// The events the core's reader and writer report to a StreamIO.
extern const stream_reader_events stream_io_reader_events;  // bind_stream_io.cpp
extern const stream_writer_events stream_io_writer_events;  // bind_stream_write.cpp

// The transport's write() and writelines(), installed on its class (bind_stream_write.cpp).
void install_stream_methods(nb::handle cls);

}  // namespace pyloop::bindings
