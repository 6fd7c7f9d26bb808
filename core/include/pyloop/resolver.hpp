// core/include/pyloop/resolver.hpp — getaddrinfo() and getnameinfo() on the native runtime.
#pragma once

#include <netdb.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "pyloop/loop_mailbox.hpp"

namespace pyloop {

// One getaddrinfo() call: its arguments, and once done its result or error.
struct address_query {
  std::optional<std::string> host;     // node name; nullopt for NULL
  std::optional<std::string> service;  // service or port; nullopt for NULL
  int family = 0, type = 0, protocol = 0, flags = 0;
  int status = 0;              // getaddrinfo's return value (0 or an EAI_* code)
  int system_errno = 0;        // errno when status is EAI_SYSTEM
  addrinfo* result = nullptr;  // owned; freed with the query
  std::uint64_t id = 0;        // the requester's tag for this query
  void* owner = nullptr;       // the requester (opaque to the core)

  address_query() = default;
  address_query(const address_query&) = delete;
  address_query& operator=(const address_query&) = delete;
  ~address_query() {
    if (result != nullptr) ::freeaddrinfo(result);
  }
};

// Resolves query on the native runtime, then delivers callback{ops, query} to the mailbox;
// the callback owns the query. If the mailbox is closed by then, the query is deleted there.
void resolve_async(std::shared_ptr<loop_mailbox> mailbox, std::unique_ptr<address_query> query,
                   const callback_ops* ops);

// One getnameinfo() call: the socket address and flags, and once done the names or error.
// Thread safety: none needed; one thread owns it at a time (requester, worker, then loop).
struct name_query {
  sockaddr_storage address{};    // the IPv4 or IPv6 address to name
  socklen_t address_length = 0;  // bytes of address in use
  int flags = 0;                 // NI_* flags, passed through
  std::string host;              // the host name (or numeric host) found
  std::string service;           // the service name (or port number) found
  int status = 0;                // getnameinfo's return value (0 or an EAI_* code)
  int system_errno = 0;          // errno when status is EAI_SYSTEM
  std::uint64_t id = 0;          // the requester's tag for this query
  void* owner = nullptr;         // the requester (opaque to the core)
};

// Names query's address on the native runtime (a reverse lookup may wait on DNS), then
// delivers callback{ops, query} to the mailbox as resolve_async does, with the same ownership.
void resolve_name_async(std::shared_ptr<loop_mailbox> mailbox, std::unique_ptr<name_query> query,
                        const callback_ops* ops);

// A numeric host and decimal port as socket addresses, read by getaddrinfo() with
// AI_NUMERICHOST and SOCK_DGRAM: the way socket.getnameinfo turns its sockaddr tuple into the
// address it names, errors included. No host is looked up, so the loop's thread may call it.
struct numeric_address {
  int status = 0;              // getaddrinfo's return value (0 or an EAI_* code)
  int system_errno = 0;        // errno when status is EAI_SYSTEM
  int count = 0;               // addresses found; socket.getnameinfo refuses more than one
  sockaddr_storage address{};  // the first address found
  socklen_t length = 0;        // bytes of address in use
};
numeric_address parse_numeric_address(const char* host, const char* port);

}  // namespace pyloop
