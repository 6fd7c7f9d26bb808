// core/src/timer_heap.cpp — the deadline heap: ordering, lazy cancellation, compaction.
#include "pyloop/timer_heap.hpp"

#include <algorithm>
#include <utility>

namespace pyloop {
namespace {

// std::*_heap build a max-heap, so "greater" puts the earliest deadline on top.
struct later_first {
  bool operator()(const timer_entry& a, const timer_entry& b) const noexcept {
    if (a.when != b.when) return a.when > b.when;
    return a.order > b.order;
  }
};

}  // namespace

void timer_heap::push(double when, callback cb) {
  entries_.push_back(timer_entry{when, next_order_++, cb});
  std::push_heap(entries_.begin(), entries_.end(), later_first{});
}

timer_entry timer_heap::pop() {
  std::pop_heap(entries_.begin(), entries_.end(), later_first{});
  timer_entry e = entries_.back();
  entries_.pop_back();
  return e;
}

void timer_heap::prune() {
  if (entries_.size() > compact_min_size &&
      static_cast<double>(cancelled_) / static_cast<double>(entries_.size()) >
          compact_cancelled_fraction) {
    compact();
    return;
  }
  while (!entries_.empty() && entries_.front().cb.cancelled()) forget_cancelled_top();
}

void timer_heap::forget_cancelled_top() {
  timer_entry e = pop();
  if (cancelled_ > 0) --cancelled_;
  e.cb.discard();
}

void timer_heap::compact() {
  std::vector<timer_entry> live;
  live.reserve(entries_.size() - std::min(cancelled_, entries_.size()));
  std::vector<timer_entry> dead;
  for (const timer_entry& e : entries_) (e.cb.cancelled() ? dead : live).push_back(e);
  entries_ = std::move(live);
  std::make_heap(entries_.begin(), entries_.end(), later_first{});
  cancelled_ = 0;
  // Discard last: a finalizer run by discard() may schedule timers into the rebuilt heap.
  for (const timer_entry& e : dead) e.cb.discard();
}

void timer_heap::clear() noexcept {
  std::vector<timer_entry> detached;
  detached.swap(entries_);
  cancelled_ = 0;
  for (const timer_entry& e : detached) e.cb.discard();
}

}  // namespace pyloop
