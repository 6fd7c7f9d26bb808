// core/src/ready_queue.cpp — growth and clearing of the ready queue's ring buffer.
#include "pyloop/ready_queue.hpp"

#include <utility>

namespace pyloop {

void ready_queue::grow() {
  const std::size_t new_capacity = capacity_ == 0 ? 64 : capacity_ * 2;
  auto grown = std::make_unique<callback[]>(new_capacity);
  for (std::size_t i = 0; i < size_; ++i) grown[i] = slots_[(head_ + i) & (capacity_ - 1)];
  slots_ = std::move(grown);
  capacity_ = new_capacity;
  head_ = 0;
}

void ready_queue::clear() noexcept {
  if (size_ == 0) return;  // also ends the detached queue's own destructor call
  ready_queue detached;
  std::swap(slots_, detached.slots_);
  std::swap(capacity_, detached.capacity_);
  std::swap(head_, detached.head_);
  std::swap(size_, detached.size_);
  while (!detached.empty()) detached.pop().discard();
}

}  // namespace pyloop
