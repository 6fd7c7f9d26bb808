// core/include/pyloop/timer_heap.hpp — the loop's min-heap of scheduled callbacks, by deadline.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pyloop/callback.hpp"

namespace pyloop {

// A scheduled callback: when it is due and its insertion order (ties run first-in first-out).
struct timer_entry {
  double when;          // deadline, in the loop clock's seconds
  std::uint64_t order;  // insertion sequence number, breaks ties between equal deadlines
  callback cb;          // what to run
};

// Binary min-heap on (when, order). Cancelled entries are left in place and dropped lazily
// when they reach the top; when they make up most of a large heap it is rebuilt without them,
// the policy asyncio's _run_once follows (more than 100 entries, more than half cancelled).
// Thread safety: none; used only from the loop's thread.
class timer_heap {
 public:
  static constexpr std::size_t compact_min_size = 100;
  static constexpr double compact_cancelled_fraction = 0.5;

  timer_heap() = default;
  timer_heap(const timer_heap&) = delete;
  timer_heap& operator=(const timer_heap&) = delete;
  ~timer_heap() { clear(); }

  void push(double when, callback cb);

  bool empty() const noexcept { return entries_.empty(); }
  std::size_t size() const noexcept { return entries_.size(); }
  // Precondition: !empty().
  const timer_entry& top() const noexcept { return entries_.front(); }
  // Removes and returns the earliest entry. Precondition: !empty().
  timer_entry pop();

  // Records that one entry still in the heap was cancelled.
  void note_cancelled() noexcept { ++cancelled_; }
  std::size_t cancelled_count() const noexcept { return cancelled_; }

  // Drops cancelled entries: all of them if they dominate the heap, else those at the top,
  // so that top() is a live deadline afterwards (or the heap is empty).
  void prune();

  // Discards every entry (detached first, as ready_queue::clear does).
  void clear() noexcept;

  template <class Visitor>
  void for_each(Visitor&& visit) const {
    for (const timer_entry& e : entries_) visit(e.cb);
  }

 private:
  void compact();
  void forget_cancelled_top();

  std::vector<timer_entry> entries_;  // the heap, ordered by earlier()
  std::uint64_t next_order_ = 0;      // sequence number for the next push
  std::size_t cancelled_ = 0;         // cancelled entries still stored in entries_
};

}  // namespace pyloop
