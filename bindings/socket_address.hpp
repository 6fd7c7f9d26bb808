// bindings/socket_address.hpp — socket addresses between the kernel's sockaddr and the Python
// objects the socket module uses for them.
#pragma once

#include <Python.h>

#include <sys/socket.h>

#include <nanobind/nanobind.h>

namespace pyloop::bindings {

namespace nb = nanobind;

// A sockaddr as socket.recvfrom() returns it: None for an empty address, (host, port) for
// AF_INET, (host, port, flowinfo, scope_id) for AF_INET6, a str path or (Linux) the bytes of
// an abstract name for AF_UNIX, (family, raw bytes) otherwise. Null with an exception set.
nb::object address_to_python(const sockaddr* address, socklen_t length) noexcept;

// The host string of an in_addr (family AF_INET) or in6_addr (AF_INET6), as inet_ntop
// writes it.
nb::object host_to_python(int family, const void* raw) noexcept;

// The tuple of an AF_INET or AF_INET6 sockaddr around its host string `host`: (host, port),
// or (host, port, flowinfo, scope_id).
nb::object ip_address_to_python(const sockaddr* address, PyObject* host) noexcept;

// The plain forms of an address that socket.sendto() accepts, converted without a lookup:
// (numeric IPv4, port) for AF_INET; (numeric IPv6 without a scope suffix, port[, flowinfo
// [, scope_id]]) for AF_INET6; a str or bytes path for AF_UNIX; every integer exactly an int
// in range. Anything else (host names, '' and '<broadcast>', out-of-range numbers, other
// types) returns false without an exception: the caller hands it to the socket module, whose
// resolution and errors are then exactly its own.
bool address_from_python(int family, PyObject* address, sockaddr_storage& out,
                         socklen_t& length) noexcept;

}  // namespace pyloop::bindings
