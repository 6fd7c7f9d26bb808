// bindings/socket_address.cpp — sockaddr <-> Python, as the socket module converts them.
#include "socket_address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace pyloop::bindings {
namespace {

nb::object unix_path(const sockaddr_un* address, socklen_t length) noexcept {
  const std::size_t path_length = length - offsetof(sockaddr_un, sun_path);
#ifdef __linux__
  // An abstract name (leading NUL) is its bytes, all of them.
  if (path_length > 0 && address->sun_path[0] == '\0') {
    return nb::steal(PyBytes_FromStringAndSize(address->sun_path,
                                               static_cast<Py_ssize_t>(path_length)));
  }
#endif
  const std::size_t text = ::strnlen(address->sun_path, path_length);
  return nb::steal(PyUnicode_DecodeFSDefaultAndSize(address->sun_path, static_cast<Py_ssize_t>(text)));
}

// An exact int in [0, max]; false (no exception) otherwise.
bool small_int(PyObject* value, unsigned long max, unsigned long& out) noexcept {
  if (!PyLong_CheckExact(value)) return false;
  const unsigned long v = PyLong_AsUnsignedLong(value);
  if (v == static_cast<unsigned long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();  // negative or too large: the socket module's error, not ours
    return false;
  }
  if (v > max) return false;
  out = v;
  return true;
}

// The ASCII text of an exact str, or null (no exception).
const char* ascii_host(PyObject* host, Py_ssize_t& size) noexcept {
  if (!PyUnicode_CheckExact(host) || !PyUnicode_IS_ASCII(host)) return nullptr;
  size = PyUnicode_GET_LENGTH(host);
  const char* text = reinterpret_cast<const char*>(PyUnicode_DATA(host));  // NUL-terminated
  // An embedded NUL is the socket module's error to raise.
  return std::strlen(text) == static_cast<std::size_t>(size) ? text : nullptr;
}

bool ipv4_from_python(PyObject* address, sockaddr_storage& out, socklen_t& length) noexcept {
  if (!PyTuple_CheckExact(address) || PyTuple_GET_SIZE(address) != 2) return false;
  Py_ssize_t size = 0;
  const char* host = ascii_host(PyTuple_GET_ITEM(address, 0), size);
  unsigned long port = 0;
  if (host == nullptr || size == 0 || !small_int(PyTuple_GET_ITEM(address, 1), 0xffff, port)) {
    return false;
  }
  auto* in = reinterpret_cast<sockaddr_in*>(&out);
  std::memset(in, 0, sizeof *in);
  // inet_pton takes strict dotted quads only, which the socket module reads the same way;
  // everything else ('' , '<broadcast>', names, short forms) is the socket module's to read.
  if (::inet_pton(AF_INET, host, &in->sin_addr) != 1) return false;
  in->sin_family = AF_INET;
  in->sin_port = htons(static_cast<std::uint16_t>(port));
  length = sizeof *in;
  return true;
}

bool ipv6_from_python(PyObject* address, sockaddr_storage& out, socklen_t& length) noexcept {
  if (!PyTuple_CheckExact(address)) return false;
  const Py_ssize_t items = PyTuple_GET_SIZE(address);
  if (items < 2 || items > 4) return false;
  Py_ssize_t size = 0;
  const char* host = ascii_host(PyTuple_GET_ITEM(address, 0), size);
  unsigned long port = 0, flowinfo = 0, scope_id = 0;
  if (host == nullptr || std::memchr(host, ':', size) == nullptr ||
      std::memchr(host, '%', size) != nullptr ||
      !small_int(PyTuple_GET_ITEM(address, 1), 0xffff, port) ||
      (items > 2 && !small_int(PyTuple_GET_ITEM(address, 2), 0xfffff, flowinfo)) ||
      (items > 3 && !small_int(PyTuple_GET_ITEM(address, 3), 0xffffffffUL, scope_id))) {
    return false;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&out);
  std::memset(in6, 0, sizeof *in6);
  if (::inet_pton(AF_INET6, host, &in6->sin6_addr) != 1) return false;
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(static_cast<std::uint16_t>(port));
  in6->sin6_flowinfo = htonl(static_cast<std::uint32_t>(flowinfo));
  in6->sin6_scope_id = static_cast<std::uint32_t>(scope_id);
  length = sizeof *in6;
  return true;
}

bool unix_from_python(PyObject* address, sockaddr_storage& out, socklen_t& length) noexcept {
  nb::object encoded;
  if (PyUnicode_CheckExact(address)) {
    encoded = nb::steal(PyUnicode_EncodeFSDefault(address));
    if (!encoded.is_valid()) {
      PyErr_Clear();  // the socket module raises its own error for it
      return false;
    }
  } else if (PyBytes_CheckExact(address)) {
    encoded = nb::borrow(address);
  } else {
    return false;
  }
  const char* path = PyBytes_AS_STRING(encoded.ptr());
  const auto size = static_cast<std::size_t>(PyBytes_GET_SIZE(encoded.ptr()));
  auto* un = reinterpret_cast<sockaddr_un*>(&out);
  std::memset(un, 0, sizeof *un);
  const bool abstract = size > 0 && path[0] == '\0';
  // Too long, or empty: the socket module's error (or its behaviour) decides.
  if (size == 0 || size > sizeof un->sun_path || (!abstract && size == sizeof un->sun_path)) {
    return false;
  }
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path, path, size);
  length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + size + (abstract ? 0 : 1));
  return true;
}

}  // namespace

nb::object host_to_python(int family, const void* raw) noexcept {
  if (family == AF_INET) {
    // The dotted quad inet_ntop writes (and the socket module returns), without its printf.
    const auto* octets = static_cast<const unsigned char*>(raw);
    char text[INET_ADDRSTRLEN];
    char* end = text;
    for (int i = 0; i < 4; ++i) {
      unsigned v = octets[i];
      if (v >= 100) {
        *end++ = static_cast<char>('0' + v / 100);
        v %= 100;
        *end++ = static_cast<char>('0' + v / 10);
      } else if (v >= 10) {
        *end++ = static_cast<char>('0' + v / 10);
      }
      *end++ = static_cast<char>('0' + v % 10);
      if (i < 3) *end++ = '.';
    }
    const Py_ssize_t size = end - text;
    PyObject* host = PyUnicode_New(size, 127);
    if (host != nullptr) std::memcpy(PyUnicode_1BYTE_DATA(host), text, static_cast<std::size_t>(size));
    return nb::steal(host);
  }
  char host[INET6_ADDRSTRLEN];
  if (::inet_ntop(family, raw, host, sizeof host) == nullptr) {
    PyErr_SetFromErrno(PyExc_OSError);
    return nb::object();
  }
  return nb::steal(PyUnicode_FromString(host));
}

nb::object ip_address_to_python(const sockaddr* address, PyObject* host) noexcept {
  const bool v6 = address->sa_family == AF_INET6;
  PyObject* tuple = PyTuple_New(v6 ? 4 : 2);
  if (tuple == nullptr) return nb::object();
  nb::object result = nb::steal(tuple);
  unsigned port;
  if (v6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    port = ntohs(in6->sin6_port);
    PyObject* flowinfo = PyLong_FromUnsignedLong(ntohl(in6->sin6_flowinfo));
    if (flowinfo == nullptr) return nb::object();
    PyTuple_SET_ITEM(tuple, 2, flowinfo);
    PyObject* scope_id = PyLong_FromUnsignedLong(in6->sin6_scope_id);
    if (scope_id == nullptr) return nb::object();
    PyTuple_SET_ITEM(tuple, 3, scope_id);
  } else {
    port = ntohs(reinterpret_cast<const sockaddr_in*>(address)->sin_port);
  }
  PyObject* number = PyLong_FromLong(static_cast<long>(port));
  if (number == nullptr) return nb::object();
  PyTuple_SET_ITEM(tuple, 1, number);
  PyTuple_SET_ITEM(tuple, 0, Py_NewRef(host));
  return result;
}

nb::object address_to_python(const sockaddr* address, socklen_t length) noexcept {
  if (length == 0) return nb::borrow(Py_None);
  switch (address->sa_family) {
    case AF_INET: {
      nb::object host = host_to_python(AF_INET, &reinterpret_cast<const sockaddr_in*>(address)->sin_addr);
      if (!host.is_valid()) return host;
      return ip_address_to_python(address, host.ptr());
    }
    case AF_INET6: {
      nb::object host = host_to_python(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr);
      if (!host.is_valid()) return host;
      return ip_address_to_python(address, host.ptr());
    }
    case AF_UNIX:
      return unix_path(reinterpret_cast<const sockaddr_un*>(address), length);
    default:
      return nb::steal(Py_BuildValue("(iy#)", address->sa_family, address->sa_data,
                                     static_cast<Py_ssize_t>(sizeof address->sa_data)));
  }
}

bool address_from_python(int family, PyObject* address, sockaddr_storage& out,
                         socklen_t& length) noexcept {
  switch (family) {
    case AF_INET:
      return ipv4_from_python(address, out, length);
    case AF_INET6:
      return ipv6_from_python(address, out, length);
    case AF_UNIX:
      return unix_from_python(address, out, length);
    default:
      return false;
  }
}

}  // namespace pyloop::bindings
