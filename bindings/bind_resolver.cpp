// bindings/bind_resolver.cpp — Loop._resolve and Loop._resolve_name: getaddrinfo and getnameinfo
// on the native runtime, into a future.
#include <netdb.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <unordered_map>

#include "loop_methods.hpp"
#include "module_state.hpp"
#include "pyloop/resolver.hpp"

namespace pyloop::bindings {
namespace {

// sockaddr -> the tuple socket.getaddrinfo gives: (host, port) for IPv4, (host, port,
// flowinfo, scope_id) for IPv6 (the scope only in scope_id, not as a %suffix of the host),
// and (family, raw bytes) for anything else.
nb::object socket_address(const sockaddr* address, socklen_t) {
  char host[INET6_ADDRSTRLEN];
  const void* raw = nullptr;
  if (address->sa_family == AF_INET) {
    raw = &reinterpret_cast<const sockaddr_in*>(address)->sin_addr;
  } else if (address->sa_family == AF_INET6) {
    raw = &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr;
  }
  if (raw != nullptr && ::inet_ntop(address->sa_family, raw, host, sizeof host) == nullptr) {
    set_os_error(errno);
    return nb::object();
  }
  if (address->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(address);
    return nb::steal(Py_BuildValue("(si)", host, static_cast<int>(ntohs(in->sin_port))));
  }
  if (address->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    return nb::steal(Py_BuildValue("(siII)", host, static_cast<int>(ntohs(in6->sin6_port)),
                                   static_cast<unsigned>(ntohl(in6->sin6_flowinfo)),
                                   static_cast<unsigned>(in6->sin6_scope_id)));
  }
  return nb::steal(Py_BuildValue("(iy#)", address->sa_family, address->sa_data,
                                 static_cast<Py_ssize_t>(sizeof address->sa_data)));
}

// Sets the exception the socket module raises for a getaddrinfo/getnameinfo status: OSError
// from errno for EAI_SYSTEM, else socket.gaierror(status, gai_strerror(status)).
void set_gai_error(int status, int system_errno) {
  if (status == EAI_SYSTEM) {
    set_os_error(system_errno);
    return;
  }
  nb::object error = nb::steal(Py_BuildValue("(is)", status, gai_strerror(status)));
  if (error.is_valid()) PyErr_SetObject(state().gaierror.ptr(), error.ptr());
}

// The result list, or null with the exception socket.getaddrinfo would raise.
nb::object query_result(const address_query& q) {
  if (q.status != 0) {
    set_gai_error(q.status, q.system_errno);
    return nb::object();
  }
  nb::object list = nb::steal(PyList_New(0));
  if (!list.is_valid()) return nb::object();
  for (const addrinfo* ai = q.result; ai != nullptr; ai = ai->ai_next) {
    nb::object address = socket_address(ai->ai_addr, ai->ai_addrlen);
    if (!address.is_valid()) return nb::object();
    nb::object entry = nb::steal(Py_BuildValue("(iiisO)", ai->ai_family, ai->ai_socktype,
                                               ai->ai_protocol,
                                               ai->ai_canonname ? ai->ai_canonname : "",
                                               address.ptr()));
    if (!entry.is_valid() || PyList_Append(list.ptr(), entry.ptr()) < 0) return nb::object();
  }
  return list;
}

void settle(PyObject* future, const char* method, PyObject* value) {
  nb::object done = nb::steal(PyObject_CallMethod(future, "done", nullptr));
  if (!done.is_valid()) return;
  if (done.ptr() == Py_True) return;  // cancelled while the query ran
  // "(O)", not "O": a tuple result (getnameinfo's) must arrive as one argument, not be spread.
  nb::object ignored = nb::steal(PyObject_CallMethod(future, method, "(O)", value));
}

// Removes and returns the future waiting for query id; empty if none is (the loop was cleared).
nb::object take_future(loop_object* loop, std::uint64_t id) {
  auto found = loop->pending_queries->find(id);
  if (found == loop->pending_queries->end()) return nb::object();
  nb::object future = std::move(found->second);
  loop->pending_queries->erase(found);
  return future;
}

// Completes future with result, or with the exception pending when result is empty.
callback_status complete(const nb::object& future, const nb::object& result) {
  if (result.is_valid()) {
    settle(future.ptr(), "set_result", result.ptr());
  } else {
    nb::object exc = take_exception();
    settle(future.ptr(), "set_exception", exc.ptr());
  }
  if (PyErr_Occurred()) {
    if (exiting_exception_pending()) return callback_status::abort;
    PyErr_WriteUnraisable(future.ptr());
  }
  return callback_status::done;
}

callback_status resolved(void* payload) noexcept {
  std::unique_ptr<address_query> q(static_cast<address_query*>(payload));
  nb::object future = take_future(static_cast<loop_object*>(q->owner), q->id);
  if (!future.is_valid()) return callback_status::done;
  return complete(future, query_result(*q));
}

// getnameinfo's answer as socket.getnameinfo gives it: (host, service), both str from UTF-8.
callback_status named(void* payload) noexcept {
  std::unique_ptr<name_query> q(static_cast<name_query*>(payload));
  nb::object future = take_future(static_cast<loop_object*>(q->owner), q->id);
  if (!future.is_valid()) return callback_status::done;
  nb::object result;
  if (q->status != 0) {
    set_gai_error(q->status, q->system_errno);
  } else {
    result = nb::steal(Py_BuildValue("(ss)", q->host.c_str(), q->service.c_str()));
  }
  return complete(future, result);
}

// Loop closed with the answer queued: the future stays pending, as an executor future would.
void dropped(void* payload) noexcept { delete static_cast<address_query*>(payload); }
void name_dropped(void* payload) noexcept { delete static_cast<name_query*>(payload); }

const callback_ops query_ops{resolved, dropped, nullptr, nullptr, nullptr};
const callback_ops name_query_ops{named, name_dropped, nullptr, nullptr, nullptr};

bool optional_bytes(PyObject* value, std::optional<std::string>& out) {
  if (value == Py_None) return true;
  if (!PyBytes_Check(value)) {
    PyErr_SetString(PyExc_TypeError, "_resolve() expects bytes or None for host and port");
    return false;
  }
  out.emplace(PyBytes_AS_STRING(value), static_cast<size_t>(PyBytes_GET_SIZE(value)));
  return true;
}

// Files future under a new query id on the loop (where the GC sees it) and returns the id.
std::uint64_t register_query(loop_object* loop, nb::object future) {
  if (loop->pending_queries == nullptr) {
    loop->pending_queries = new std::unordered_map<std::uint64_t, nb::object>();
  }
  std::uint64_t id = ++loop->last_query_id;
  loop->pending_queries->emplace(id, std::move(future));
  return id;
}

// Hands a registered query to the native runtime; if that fails (std::bad_alloc), the query
// is forgotten again before the exception goes on to the entry point's guard.
template <class Submit>
void submit(loop_object* loop, std::uint64_t id, Submit&& hand_over) {
  try {
    hand_over();
  } catch (...) {
    loop->pending_queries->erase(id);
    throw;
  }
}

}  // namespace

// _resolve(host, port, family, type, proto, flags, future): host and port are bytes or None,
// encoded as socket.getaddrinfo encodes them (PyLoop.getaddrinfo does that); the future gets
// socket.getaddrinfo's list (enums left to the caller) or its exception.
PyObject* loop_resolve(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 7) {
    PyErr_SetString(PyExc_TypeError, "_resolve() takes 7 arguments");
    return nullptr;
  }
  loop_object* loop = as_loop(self);
  if (!require_open(loop)) return nullptr;
  auto q = std::make_unique<address_query>();
  if (!optional_bytes(args[0], q->host) || !optional_bytes(args[1], q->service)) return nullptr;
  int* ints[] = {&q->family, &q->type, &q->protocol, &q->flags};
  for (int i = 0; i < 4; ++i) {
    long v = PyLong_AsLong(args[2 + i]);
    if (v == -1 && PyErr_Occurred()) return nullptr;
    *ints[i] = static_cast<int>(v);
  }
  q->id = register_query(loop, nb::borrow(args[6]));
  q->owner = loop;
  submit(loop, q->id, [&] { resolve_async(loop->driver->mailbox(), std::move(q), &query_ops); });
  Py_RETURN_NONE;
}

// _resolve_name(sockaddr, flags) -> future of (host, service). The arguments are read exactly
// as socket.getnameinfo reads them (same conversions, same exceptions and messages, raised
// here, before any future exists); only getnameinfo() itself, which may wait on a reverse DNS
// lookup, runs on the native runtime.
PyObject* loop_resolve_name(PyObject* self, PyObject* args) {
  loop_object* loop = as_loop(self);
  // First, as asyncio's run_in_executor checks it before the arguments are looked at.
  if (!require_open(loop)) return nullptr;
  // The socket module's own argument formats: "i" raises its TypeError/OverflowError for
  // flags and port, "s" refuses bytes and embedded NULs, "I" wraps flowinfo and scope_id
  // modulo 2**32 (so -1 is caught below as out of range), and the ';' text replaces the
  // message when the tuple has the wrong shape.
  PyObject* sockaddr = nullptr;
  int flags = 0;
  if (!PyArg_ParseTuple(args, "Oi:getnameinfo", &sockaddr, &flags)) return nullptr;
  if (!PyTuple_Check(sockaddr)) {
    PyErr_SetString(PyExc_TypeError, "getnameinfo() argument 1 must be a tuple");
    return nullptr;
  }
  const char* host = nullptr;
  int port = 0;
  unsigned int flowinfo = 0, scope_id = 0;
  if (!PyArg_ParseTuple(sockaddr, "si|II;getnameinfo(): illegal sockaddr argument", &host, &port,
                        &flowinfo, &scope_id)) {
    return nullptr;
  }
  if (flowinfo > 0xfffff) {  // the 20 bits an IPv6 flow label has
    PyErr_SetString(PyExc_OverflowError, "getnameinfo(): flowinfo must be 0-1048575.");
    return nullptr;
  }
  // Audit hooks see the same event as for socket.getnameinfo, which asyncio's loop calls.
  if (PySys_Audit("socket.getnameinfo", "(O)", sockaddr) < 0) return nullptr;

  // The host must be numeric: it is parsed, never looked up, so this stays on the loop thread.
  // The port goes in as decimal text, so getaddrinfo treats odd values (negative, above
  // 65535) as the socket module's call does; only a negative one sends glibc to the local
  // services database before it fails.
  char port_text[16];
  std::snprintf(port_text, sizeof port_text, "%d", port);
  numeric_address parsed = parse_numeric_address(host, port_text);
  if (parsed.status != 0) {
    set_gai_error(parsed.status, parsed.system_errno);
    return nullptr;
  }
  if (parsed.count > 1) {
    PyErr_SetString(PyExc_OSError, "sockaddr resolved to multiple addresses");
    return nullptr;
  }
  if (parsed.address.ss_family == AF_INET && PyTuple_GET_SIZE(sockaddr) != 2) {
    PyErr_SetString(PyExc_OSError, "IPv4 sockaddr must be 2 tuple");
    return nullptr;
  }
  if (parsed.address.ss_family == AF_INET6) {
    // The tuple's flowinfo and scope_id win over the host text, even when they are absent:
    // ("fe80::1%lo", 80) is named without its scope, as socket.getnameinfo names it.
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&parsed.address);
    in6->sin6_flowinfo = htonl(flowinfo);
    in6->sin6_scope_id = scope_id;
  }

  // Through create_future(), as asyncio wraps its executor future: a subclass's override
  // makes the future here too.
  nb::object future = nb::steal(PyObject_CallMethod(self, "create_future", nullptr));
  if (!future.is_valid()) return nullptr;
  auto q = std::make_unique<name_query>();
  q->address = parsed.address;
  q->address_length = parsed.length;
  q->flags = flags;
  q->id = register_query(loop, future);
  q->owner = loop;
  submit(loop, q->id, [&] { resolve_name_async(loop->driver->mailbox(), std::move(q), &name_query_ops); });
  return future.release().ptr();
}

}  // namespace pyloop::bindings
