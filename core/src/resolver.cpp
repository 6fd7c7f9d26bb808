// core/src/resolver.cpp — getaddrinfo() and getnameinfo() off the loop thread, completing
// through the mailbox.
#include "pyloop/resolver.hpp"

#include <cerrno>
#include <cstring>

#include "pyloop/loop_driver.hpp"
#include "pyloop/native_runtime.hpp"

namespace pyloop {

bool loop_mailbox::deliver(callback cb) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (loop_ == nullptr) return false;
  loop_->call_soon_threadsafe(cb);
  return true;
}

void loop_mailbox::close() {
  std::lock_guard<std::mutex> lock(mutex_);
  loop_ = nullptr;
}

void resolve_async(std::shared_ptr<loop_mailbox> mailbox, std::unique_ptr<address_query> query,
                   const callback_ops* ops) {
  address_query* raw = query.release();
  run_on_native_runtime([mailbox = std::move(mailbox), raw, ops] {
    std::unique_ptr<address_query> q(raw);
    addrinfo hints;
    std::memset(&hints, 0, sizeof hints);
    hints.ai_family = q->family;
    hints.ai_socktype = q->type;
    hints.ai_protocol = q->protocol;
    hints.ai_flags = q->flags;
    q->status = ::getaddrinfo(q->host ? q->host->c_str() : nullptr,
                              q->service ? q->service->c_str() : nullptr, &hints, &q->result);
    if (q->status == EAI_SYSTEM) q->system_errno = errno;
    if (mailbox->deliver(callback{ops, q.get()})) q.release();
    // Otherwise the loop is gone: the query (pure C++) is freed here.
  });
}

void resolve_name_async(std::shared_ptr<loop_mailbox> mailbox, std::unique_ptr<name_query> query,
                        const callback_ops* ops) {
  name_query* raw = query.release();
  run_on_native_runtime([mailbox = std::move(mailbox), raw, ops] {
    std::unique_ptr<name_query> q(raw);
    char host[NI_MAXHOST];
    char service[NI_MAXSERV];
    q->status = ::getnameinfo(reinterpret_cast<const sockaddr*>(&q->address), q->address_length,
                              host, sizeof host, service, sizeof service, q->flags);
    if (q->status == EAI_SYSTEM) q->system_errno = errno;
    if (q->status == 0) {
      q->host = host;
      q->service = service;
    }
    if (mailbox->deliver(callback{ops, q.get()})) q.release();
    // Otherwise the loop is gone: the query is freed here, as in resolve_async.
  });
}

numeric_address parse_numeric_address(const char* host, const char* port) {
  numeric_address out;
  addrinfo hints;
  std::memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  // SOCK_DGRAM keeps getaddrinfo to one entry per address (no TCP/UDP/raw triplets).
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICHOST;
  addrinfo* found = nullptr;
  out.status = ::getaddrinfo(host, port, &hints, &found);
  if (out.status == EAI_SYSTEM) out.system_errno = errno;
  if (out.status != 0) return out;
  for (const addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) ++out.count;
  if (found->ai_addrlen <= sizeof out.address) {
    std::memcpy(&out.address, found->ai_addr, found->ai_addrlen);
    out.length = found->ai_addrlen;
  }
  ::freeaddrinfo(found);
  return out;
}

}  // namespace pyloop
