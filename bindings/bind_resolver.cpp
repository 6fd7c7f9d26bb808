// bindings/bind_resolver.cpp — Loop._resolve: getaddrinfo on the native runtime, into a future.
#include <netdb.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <memory>
#include <unordered_map>

#include "loop_object.hpp"
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
    PyErr_SetFromErrno(PyExc_OSError);
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

// The result list, or null with the exception socket.getaddrinfo would raise.
nb::object query_result(const address_query& q) {
  if (q.status == EAI_SYSTEM) {
    errno = q.system_errno;
    PyErr_SetFromErrno(PyExc_OSError);
    return nb::object();
  }
  if (q.status != 0) {
    nb::object error = nb::steal(Py_BuildValue("(is)", q.status, gai_strerror(q.status)));
    if (error.is_valid()) PyErr_SetObject(state().gaierror.ptr(), error.ptr());
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
  nb::object ignored = nb::steal(PyObject_CallMethod(future, method, "O", value));
}

callback_status resolved(void* payload) noexcept {
  std::unique_ptr<address_query> q(static_cast<address_query*>(payload));
  loop_object* loop = static_cast<loop_object*>(q->owner);
  auto found = loop->pending_queries->find(q->id);
  if (found == loop->pending_queries->end()) return callback_status::done;
  nb::object future = std::move(found->second);
  loop->pending_queries->erase(found);
  nb::object result = query_result(*q);
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

// Loop closed with the answer queued: the future stays pending, as an executor future would.
void dropped(void* payload) noexcept { delete static_cast<address_query*>(payload); }

bool never_cancelled(const void*) noexcept { return false; }

const callback_ops query_ops{resolved, dropped, never_cancelled, nullptr, nullptr};

bool optional_bytes(PyObject* value, std::optional<std::string>& out) {
  if (value == Py_None) return true;
  if (!PyBytes_Check(value)) {
    PyErr_SetString(PyExc_TypeError, "_resolve() expects bytes or None for host and port");
    return false;
  }
  out.emplace(PyBytes_AS_STRING(value), static_cast<size_t>(PyBytes_GET_SIZE(value)));
  return true;
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
  if (loop->closed || loop->driver == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
    return nullptr;
  }
  auto q = std::make_unique<address_query>();
  if (!optional_bytes(args[0], q->host) || !optional_bytes(args[1], q->service)) return nullptr;
  int* ints[] = {&q->family, &q->type, &q->protocol, &q->flags};
  for (int i = 0; i < 4; ++i) {
    long v = PyLong_AsLong(args[2 + i]);
    if (v == -1 && PyErr_Occurred()) return nullptr;
    *ints[i] = static_cast<int>(v);
  }
  if (loop->pending_queries == nullptr) {
    loop->pending_queries = new std::unordered_map<std::uint64_t, nb::object>();
  }
  q->id = ++loop->last_query_id;
  q->owner = loop;
  loop->pending_queries->emplace(q->id, nb::borrow(args[6]));
  resolve_async(loop->driver->mailbox(), std::move(q), &query_ops);
  Py_RETURN_NONE;
}

}  // namespace pyloop::bindings
