// core/src/resolver.cpp — getaddrinfo() off the loop thread, completing through the mailbox.
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

}  // namespace pyloop
