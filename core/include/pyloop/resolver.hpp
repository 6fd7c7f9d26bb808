// core/include/pyloop/resolver.hpp — getaddrinfo() on the native runtime.
#pragma once

#include <netdb.h>

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

}  // namespace pyloop
