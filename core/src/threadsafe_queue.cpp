// core/src/threadsafe_queue.cpp — the cross-thread inbox of a loop.
#include "pyloop/threadsafe_queue.hpp"

namespace pyloop {

void threadsafe_queue::push(callback cb) {
  std::lock_guard<std::mutex> lock(mutex_);
  inbox_.push_back(cb);
  pending_.store(true, std::memory_order_release);
}

void threadsafe_queue::drain_into(ready_queue& ready) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    draining_.swap(inbox_);
    pending_.store(false, std::memory_order_release);
  }
  for (const callback& cb : draining_) ready.push(cb);
  draining_.clear();
}

void threadsafe_queue::clear() noexcept {
  std::vector<callback> detached;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    detached.swap(inbox_);
    pending_.store(false, std::memory_order_release);
  }
  for (const callback& cb : detached) cb.discard();
}

}  // namespace pyloop
