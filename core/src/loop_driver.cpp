// core/src/loop_driver.cpp — one iteration of the loop, in asyncio's phase order (see header).
#include "pyloop/loop_driver.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <new>

namespace pyloop {

loop_driver::loop_driver() : open_error_(readiness_.open()) {
  if (open_error_) closed_ = true;  // nothing to wait on: it must not run
}

loop_driver::~loop_driver() { close(); }

void loop_driver::close() noexcept {
  mailbox_->close();  // first: no other thread may deliver to a driver being closed
  clear();
  release_asio();
  interrupt_.close();
  readiness_.close();
  closed_ = true;
}

void loop_driver::release_asio() noexcept {
  // The readiness set owns its descriptor: Asio must forget it without closing it.
  if (readiness_in_asio_ && readiness_in_asio_->is_open()) {
    try {
      (void)readiness_in_asio_->release();
    } catch (const std::exception&) {
      // Cannot happen for a descriptor Asio holds; if it did, Asio closes a copy at worst.
    }
  }
  readiness_in_asio_.reset();
  io_.reset();  // its reactor's descriptors go with it; pending handlers are destroyed
  asio_busy_ = false;
}

asio::io_context& loop_driver::io() {
  if (!io_) io_ = std::make_unique<asio::io_context>(1);
  return *io_;
}

char* loop_driver::receive_buffer() noexcept {
  if (!receive_buffer_) receive_buffer_.reset(new (std::nothrow) char[receive_buffer_size]);
  return receive_buffer_.get();
}

void loop_driver::schedule_flush(stream_writer* writer) {
  flush_list_.push_back(writer);  // first: if it throws, nothing changed
  writer->in_flush_list_ = true;
  writer->events_.retain(writer->owner_);
}

void loop_driver::forget_flush(stream_writer* writer) noexcept {
  writer->in_flush_list_ = false;
  bool found = false;
  for (auto it = flush_list_.begin(); it != flush_list_.end(); ++it) {
    if (*it == writer) {
      flush_list_.erase(it);
      found = true;
      break;
    }
  }
  // Not listed for the next flush: it may be waiting in a list being sent right now.
  for (flush_in_progress* f = flushing_; f != nullptr && !found; f = f->outer) {
    for (stream_writer*& slot : *f->due) {
      if (slot == writer) {
        slot = nullptr;
        found = true;
        break;
      }
    }
  }
  if (found) writer->events_.release(writer->owner_);  // the list's reference
}

void loop_driver::release_flush_list() noexcept {
  std::vector<stream_writer*> listed;
  listed.swap(flush_list_);
  for (stream_writer* w : listed) {
    w->in_flush_list_ = false;
    w->events_.release(w->owner_);
  }
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
  // and a waiting loop needs only one reason to return from its wait.
  if (!wakeup_posted_.exchange(true, std::memory_order_acq_rel)) readiness_.wake();
}

void loop_driver::take_incoming() {
  if (incoming_.maybe_nonempty()) incoming_.drain_into(ready_);
}

double loop_driver::next_deadline() {
  timers_.prune();
  return timers_.empty() ? -1.0 : timers_.top().when;
}

int loop_driver::interrupt_fd(std::error_code& ec) noexcept {
  if (interrupt_.is_open()) return interrupt_.write_fd();
  if (closed_) {
    ec = std::make_error_code(std::errc::bad_file_descriptor);
    return -1;
  }
  ec = interrupt_.open();
  if (!ec) ec = readiness_.update(interrupt_.read_fd(), 0, readable);
  if (ec) interrupt_.close();  // a pipe the loop cannot wait on is of no use
  return ec ? -1 : interrupt_.write_fd();
}

void loop_driver::collect(readiness_set::result ready) {
  // The wait consumed any wakeup: the next call_soon_threadsafe must wake again. The exchange
  // (not a store) orders the sender's queued callback before the take_incoming() after this.
  (void)wakeup_posted_.exchange(false, std::memory_order_acq_rel);
  for (const ready_descriptor& r : ready) {
    if (r.fd == interrupt_.read_fd()) {
      interrupt_.drain();
      continue;
    }
    // A descriptor with no watch left is one whose removal the kernel could not apply (it
    // was closed while a duplicate stays open); nothing runs for it, as with a selector.
    auto found = watches_.find(r.fd);
    if (found != watches_.end()) found->second->on_ready(r.bits);
  }
}

void loop_driver::poll_asio() {
  // Each call locks Asio's scheduler several times (about 7% of a sleep(0) iteration):
  // skipped while no native code has asked for the context.
  if (!io_) return;
  // An io_context stops when it runs out of work; restarting is what lets handlers that
  // native code queued since then run.
  if (io_->stopped()) io_->restart();
  io_->poll();
  asio_busy_ = !io_->stopped();
}

namespace {

// Rounded up, as asyncio's selector timeouts are, so a wait never ends before a deadline.
int to_milliseconds(double seconds) {
  return seconds < 0 ? -1 : static_cast<int>(std::ceil(seconds * 1000.0));
}

}  // namespace

bool loop_driver::wait(double timeout_seconds) {
  if (hooks_.before_wait) hooks_.before_wait(hooks_.data);
  // The after-wait hook must run whatever happens (it retakes the GIL): a failure while
  // waiting (std::bad_alloc queueing a ready descriptor) is rethrown only after it.
  std::exception_ptr failure;
  try {
    if (asio_busy_) {
      wait_inside_asio(timeout_seconds);
    } else {
      collect(readiness_.wait(to_milliseconds(timeout_seconds)));
    }
  } catch (...) {
    failure = std::current_exception();
  }
  const bool ok = hooks_.after_wait == nullptr || hooks_.after_wait(hooks_.data);
  if (failure) std::rethrow_exception(failure);
  return ok;
}

void loop_driver::wait_inside_asio(double timeout_seconds) {
  // Asio has native work pending (its timers, sockets or a work guard): block in Asio's
  // reactor, where the readiness set is one more descriptor, so either side ends the wait.
  asio::io_context& io = *io_;
  bool nested = readiness_in_asio_ && readiness_in_asio_->is_open();
  if (!nested) {
    try {
      // Asio's reactor (its own epoll, eventfd and timerfd) is made here, on first use.
      if (!readiness_in_asio_) readiness_in_asio_.emplace(io);
      asio::error_code ec;
      readiness_in_asio_->assign(readiness_.native_handle(), ec);
      nested = !ec;
    } catch (const std::exception&) {
      nested = false;  // out of descriptors or memory: fall back to polling below
    }
  }
  if (nested) {
    readiness_in_asio_->async_wait(asio::posix::stream_descriptor::wait_read,
                                   [](const asio::error_code&) {});
  } else if (timeout_seconds < 0 || timeout_seconds > 0.001) {
    timeout_seconds = 0.001;  // Asio refused the set: look at both every millisecond
  }
  if (timeout_seconds < 0) {
    io.run_one();
  } else {
    io.run_one_for(std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(timeout_seconds)));
  }
  // The wait on the set is this iteration's only: cancelling it lets io_ run out of work
  // once native work is done, and the loop go back to blocking in the set alone.
  if (nested) {
    asio::error_code ignored;
    readiness_in_asio_->cancel(ignored);
  }
  io.poll();
  collect(readiness_.wait(0));
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
  running_ = true;
  struct not_running_after {
    bool& flag;
    ~not_running_after() { flag = false; }
  } reset{running_};
  take_incoming();
  timers_.prune();
  poll_asio();

  if (!ready_.empty() || stopping_) {
    if (io_sources_ > 0) collect(readiness_.wait(0));
  } else {
    double timeout = -1.0;
    if (!timers_.empty()) {
      timeout = std::clamp(timers_.top().when - now(), 0.0, maximum_wait_seconds);
    }
    // A deadline already passed with no I/O to look at needs no trip to the readiness set.
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
  ++turn_;
  if (hooks_.end_of_turn != nullptr && !hooks_.end_of_turn(hooks_.data)) {
    status = run_status::aborted;
  }
  return status;
}

run_status loop_driver::run_until_stopped() {
  // However the loop is left (stopped, aborted, or an exception such as std::bad_alloc), a
  // stop() request is spent, as asyncio's run_forever resets _stopping.
  struct reset_stopping {
    bool& flag;
    ~reset_stopping() { flag = false; }
  } reset{stopping_};
  for (;;) {
    if (run_once() == run_status::aborted) return run_status::aborted;
    if (stopping_) return run_status::stopped;
  }
}

void loop_driver::clear() {
  // Taken out of the registry first: discarding a callback may run foreign code (a Python
  // finalizer) that calls back into the driver (unwatch, watch, call_soon); it finds an
  // empty registry, never one being iterated. What it installs meanwhile stays installed.
  std::unordered_map<int, io_watch*> detached;
  detached.swap(watches_);
  for (auto& [fd, w] : detached) {
    w->detach();
    remove_io_source();
  }
  release_flush_list();
  ready_.clear();  // drops queued dispatches: the detached watches free themselves
  timers_.clear();
  incoming_.clear();
}

std::error_code loop_driver::watch(int fd, io_watch::direction d, callback cb,
                                   callback& replaced) noexcept {
  replaced = callback{nullptr, nullptr};
  if (closed_) return std::make_error_code(std::errc::bad_file_descriptor);
  auto found = watches_.find(fd);
  if (found != watches_.end()) return found->second->install(d, cb, replaced);
  // The registry's slot first: if memory runs out, nothing of cb has been taken.
  std::unordered_map<int, io_watch*>::iterator slot;
  try {
    slot = watches_.emplace(fd, nullptr).first;
  } catch (const std::bad_alloc&) {
    return std::make_error_code(std::errc::not_enough_memory);
  }
  auto* w = new (std::nothrow) io_watch(readiness_, ready_, fd);
  std::error_code ec = w == nullptr ? std::make_error_code(std::errc::not_enough_memory)
                                    : w->install(d, cb, replaced);
  if (ec) {
    watches_.erase(slot);
    if (w != nullptr) w->detach();  // nothing installed: only the registry's reference goes
    return ec;
  }
  slot->second = w;
  add_io_source();
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

bool loop_driver::saw_hangup(int fd) const {
  auto found = watches_.find(fd);
  return found != watches_.end() && found->second->saw_hangup();
}

bool loop_driver::watching(int fd, io_watch::direction d) const {
  auto found = watches_.find(fd);
  return found != watches_.end() && found->second->has(d);
}

}  // namespace pyloop
