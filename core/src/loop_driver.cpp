// core/src/loop_driver.cpp — one iteration of the loop, in asyncio's phase order (see header).
#include "pyloop/loop_driver.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <asio/post.hpp>

namespace pyloop {

loop_driver::loop_driver() : keep_alive_(asio::make_work_guard(io_)) {}

loop_driver::~loop_driver() {
  mailbox_->close();  // first: no other thread may deliver to a driver being destroyed
  clear();
  keep_alive_.reset();
}

double loop_driver::now() noexcept {
  using seconds = std::chrono::duration<double>;
  return std::chrono::duration_cast<seconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double loop_driver::clock_resolution() noexcept {
  using period = std::chrono::steady_clock::period;
  return static_cast<double>(period::num) / static_cast<double>(period::den);
}

void loop_driver::call_soon_threadsafe(callback cb) {
  incoming_.push(cb);
  // At most one wakeup is in flight: a busy loop drains the inbox every iteration anyway,
  // and a waiting loop needs only one reason to return from the reactor.
  if (!wakeup_posted_.exchange(true, std::memory_order_acq_rel)) {
    asio::post(io_, [this] { wakeup_posted_.store(false, std::memory_order_release); });
  }
}

void loop_driver::take_incoming() {
  if (incoming_.maybe_nonempty()) incoming_.drain_into(ready_);
}

double loop_driver::next_deadline() {
  timers_.prune();
  return timers_.empty() ? -1.0 : timers_.top().when;
}

int loop_driver::interrupt_fd(std::error_code& ec) {
  ec = interrupt_.open();
  return ec ? -1 : interrupt_.write_fd();
}

bool loop_driver::wait(double timeout_seconds) {
  if (hooks_.before_wait) hooks_.before_wait(hooks_.data);
  std::size_t handled;
  if (timeout_seconds < 0) {
    handled = io_.run_one();
  } else {
    handled = io_.run_one_for(std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(timeout_seconds)));
  }
  // run_one returns after the first completion: take every other one already available,
  // so all descriptors ready now are dispatched this iteration, as a selector reports them.
  if (handled > 0 && io_sources_ > 0) io_.poll();
  return hooks_.after_wait == nullptr || hooks_.after_wait(hooks_.data);
}

void loop_driver::move_due_timers() {
  const double end = now() + clock_resolution();
  while (!timers_.empty() && timers_.top().when < end) {
    timer_entry due = timers_.pop();
    if (due.cb.cancelled()) {
      // Cancelled after the prune phase (during the wait): drop it here, as asyncio's
      // ready-queue loop would skip it.
      due.cb.discard();
      continue;
    }
    if (due.cb.ops->unscheduled) due.cb.ops->unscheduled(due.cb.payload);
    ready_.push(due.cb);
  }
}

run_status loop_driver::run_once() {
  take_incoming();
  timers_.prune();

  if (!ready_.empty() || stopping_) {
    if (io_sources_ > 0) io_.poll();
  } else {
    double timeout = -1.0;
    if (!timers_.empty()) {
      timeout = std::clamp(timers_.top().when - now(), 0.0, maximum_wait_seconds);
    }
    // A deadline already passed with no I/O to look at needs no trip to the reactor.
    if (timeout != 0.0 || io_sources_ > 0 || wakeup_posted_.load(std::memory_order_acquire)) {
      if (!wait(timeout)) return run_status::aborted;
    }
  }
  take_incoming();
  if (interrupt_.signals_pending() && hooks_.on_signals != nullptr &&
      !hooks_.on_signals(hooks_.data)) {
    return run_status::aborted;
  }
  move_due_timers();

  // Snapshot the count: callbacks queued from now on run next turn, as in _run_once.
  run_status status = run_status::stopped;
  for (std::size_t todo = ready_.size(); todo > 0; --todo) {
    if (ready_.pop().invoke() == callback_status::abort) {
      status = run_status::aborted;
      break;
    }
  }
  if (hooks_.end_of_turn != nullptr && !hooks_.end_of_turn(hooks_.data)) {
    status = run_status::aborted;
  }
  return status;
}

run_status loop_driver::run_until_stopped() {
  for (;;) {
    if (run_once() == run_status::aborted) {
      stopping_ = false;
      return run_status::aborted;
    }
    if (stopping_) break;
  }
  stopping_ = false;
  return run_status::stopped;
}

void loop_driver::clear() {
  for (auto& [fd, w] : watches_) {
    w->detach();
    remove_io_source();
  }
  watches_.clear();
  ready_.clear();
  timers_.clear();
  incoming_.clear();
  // Complete the waits that detaching aborted, so the watches free themselves now.
  io_.poll();
}

std::error_code loop_driver::watch(int fd, io_watch::direction d, callback cb,
                                   callback& replaced) {
  replaced = callback{nullptr, nullptr};
  auto found = watches_.find(fd);
  io_watch* w;
  if (found != watches_.end()) {
    w = found->second;
  } else {
    w = new io_watch(io_, ready_, fd);
    if (std::error_code ec = w->open()) {
      w->detach();
      return ec;
    }
    watches_.emplace(fd, w);
    add_io_source();
  }
  replaced = w->install(d, cb);
  return {};
}

callback loop_driver::unwatch(int fd, io_watch::direction d) {
  auto found = watches_.find(fd);
  if (found == watches_.end()) return callback{nullptr, nullptr};
  io_watch* w = found->second;
  callback removed = w->remove(d);
  if (w->idle()) {
    watches_.erase(found);
    w->detach();
    remove_io_source();
  }
  return removed;
}

bool loop_driver::watching(int fd, io_watch::direction d) const {
  auto found = watches_.find(fd);
  return found != watches_.end() && found->second->has(d);
}

}  // namespace pyloop
