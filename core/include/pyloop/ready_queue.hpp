// core/include/pyloop/ready_queue.hpp — FIFO of callbacks due to run in the next loop iteration.
#pragma once

#include <cstddef>
#include <memory>

#include "pyloop/callback.hpp"

namespace pyloop {

// A growable ring buffer of callbacks. Push and pop are O(1) and allocate only when the
// ring grows; the capacity is kept, so a loop in steady state allocates nothing here.
// Thread safety: none; used only from the loop's thread.
class ready_queue {
 public:
  ready_queue() = default;
  ready_queue(const ready_queue&) = delete;
  ready_queue& operator=(const ready_queue&) = delete;
  ~ready_queue() { clear(); }

  void push(callback cb) {
    if (size_ == capacity_) grow();
    slots_[(head_ + size_) & (capacity_ - 1)] = cb;
    ++size_;
  }

  // Precondition: !empty().
  callback pop() noexcept {
    callback cb = slots_[head_];
    head_ = (head_ + 1) & (capacity_ - 1);
    --size_;
    return cb;
  }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  // Discards every queued callback. Discarding may run foreign code (a finalizer) that
  // queues more work: the queue is detached first, so those land in a fresh queue.
  void clear() noexcept;

  // Visits each queued payload in FIFO order (for garbage-collector traversal).
  template <class Visitor>
  void for_each(Visitor&& visit) const {
    for (std::size_t i = 0; i < size_; ++i) visit(slots_[(head_ + i) & (capacity_ - 1)]);
  }

 private:
  void grow();

  std::unique_ptr<callback[]> slots_;  // ring storage, capacity_ entries (a power of two)
  std::size_t capacity_ = 0;           // number of slots allocated
  std::size_t head_ = 0;               // index of the oldest entry
  std::size_t size_ = 0;               // number of queued entries
};

}  // namespace pyloop
