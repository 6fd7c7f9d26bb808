// bindings/datagram_io_object.hpp — DatagramIO: the native I/O of one datagram transport.
#pragma once

#include <Python.h>

#include <sys/socket.h>

#include <nanobind/nanobind.h>

#include "loop_object.hpp"
#include "peer_addresses.hpp"
#include "pyloop/datagram_io.hpp"

namespace pyloop::bindings {

// Layout of data_bridge.pyloop._pyloop.DatagramIO: the core's datagram_io of one transport's
// socket, and the Python objects its events reach. The Python transport
// (python/.../_datagram.py) keeps it in its `_io` slot; sendto() is a C function installed on
// the transport class (bind_datagram_send.cpp) that finds it there.
// Thread safety: the loop's thread, GIL held.
struct datagram_io_object {
  PyObject_HEAD
  nb::object loop;          // the loop_object, until dealloc: its driver outlives io
  nb::object transport;     // the Python transport, until detach(): the slow paths call it
  nb::object protocol;      // while reading: receives datagram_received and error_received
  nb::object context;       // while reading: the contextvars.Context the protocol runs in
  nb::object entered;       // the Context the running read callback entered (on_enter to on_leave)
  nb::object address;       // asyncio's _address: the fixed destination (remote_addr), or empty
  peer_addresses peers;     // address objects of recent peers, the latest conversion's sockaddr
  sockaddr_storage peer;    // the sockaddr of `address` when it converted natively
  socklen_t peer_length;    // its length (0: `address` is empty or converts only in Python)
  double read_started;      // debug mode: loop time at which the running read callback began
  datagram_io io;           // the core: receive batches, sends, the backlog
  int family;               // the socket's address family
  int lost;                 // asyncio's _conn_lost
  bool connected;           // the socket has a peer: send() without an address
  bool send_empty;          // empty datagrams are sent (3.13); before, sendto(b"") does nothing
};

inline datagram_io_object* as_datagram_io(void* o) noexcept {
  return static_cast<datagram_io_object*>(o);
}

inline loop_object* loop_of_datagram(const datagram_io_object* io) noexcept {
  return as_loop(io->loop.ptr());
}

// The events the core's datagram_io reports to a DatagramIO (bind_datagram_io.cpp).
extern const datagram_io_events datagram_io_object_events;

// Calls transport.<name>(*args) (interned name). True when it returned or when the transport
// is gone (detached); false with its exception set.
bool call_datagram_transport(datagram_io_object* io, PyObject* name, PyObject* arg1 = nullptr,
                             PyObject* arg2 = nullptr) noexcept;

// What a send's outcome means to Python: None, or null with the exception set.
PyObject* datagram_result(datagram_io_object* io, datagram_outcome outcome) noexcept;

// The transport's sendto(), installed on its class (bind_datagram_send.cpp).
void install_datagram_methods(nb::handle cls);

}  // namespace pyloop::bindings
