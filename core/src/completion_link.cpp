// core/src/completion_link.cpp — a native future's completion, handed to its loop from any thread.
#include "pyloop/completion_link.hpp"

#include <new>

namespace pyloop {

completion_link::~completion_link() {
  if (hook_.release != nullptr) hook_.release(hook_.ctx);
}

void completion_link::release() noexcept {
  // acq_rel: the last holder must see every write the others made before they let go.
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

link_delivery completion_link::complete(callback cb) noexcept {
  if (completed_.exchange(true, std::memory_order_acq_rel)) return link_delivery::already_completed;
  try {
    if (mailbox_->deliver(cb)) return link_delivery::delivered;
  } catch (const std::bad_alloc&) {
    // The hand-over queue could not grow: the completion is lost as if the loop had closed;
    // the caller frees it (the Python future stays pending).
  }
  return link_delivery::loop_closed;
}

void completion_link::mark_cancelled() noexcept {
  if (cancelled_.exchange(true, std::memory_order_acq_rel)) return;
  if (completed()) return;  // the native side finished first: nothing left to stop
  if (hook_.cancel != nullptr) hook_.cancel(hook_.ctx);
}

}  // namespace pyloop
