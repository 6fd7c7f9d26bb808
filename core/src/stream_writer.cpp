// core/src/stream_writer.cpp — queueing, the sending policy, and the writability watch.
#include "pyloop/stream_writer.hpp"

#include <cstdlib>
#include <cstring>
#include <new>

#include "pyloop/loop_driver.hpp"

namespace pyloop {

const callback_ops stream_writer::watch_ops{run_watch, drop_watch, nullptr, nullptr, retain_watch};

stream_writer::stream_writer(loop_driver& loop, int fd, descriptor_kind kind,
                             const stream_writer_events& events, void* owner) noexcept
    : loop_(loop), events_(events), owner_(owner), fd_(fd), kind_(kind) {}

stream_writer::~stream_writer() {
  stop_watching();
  drop_chunks();
  if (in_flush_list_) loop_.forget_flush(this);
}

// -- when to send -------------------------------------------------------------------------

// Coalescing pays when a callback writes several times (a header, then a body): one system
// call instead of several. A transport that writes once per turn (an echo, a request/response
// exchange) gains nothing from it, and waiting for the end of the callback delays its answer
// by whatever the callback does after writing. So a transport whose last turns with writes
// each had a single write sends the first write of a turn at once, as asyncio always does; a
// second write in the same turn is queued (the rest of the burst shares one send) and puts
// the transport back to coalescing until it has again written once per turn this often. A
// fresh transport starts coalescing, so a burst never costs more than one extra send, and
// only when it follows such a run of single writes.
bool stream_writer::note_write() noexcept {
  const std::uint64_t turn = loop_.turn();
  if (write_turn_ != turn) {
    if (writes_in_turn_ == 1 && single_write_turns_ < single_write_turns_to_send_at_once) {
      ++single_write_turns_;
    }
    write_turn_ = turn;
    writes_in_turn_ = 0;
  }
  if (writes_in_turn_ < 2) ++writes_in_turn_;
  if (writes_in_turn_ > 1) {
    single_write_turns_ = 0;
    return false;
  }
  return single_write_turns_ >= single_write_turns_to_send_at_once;
}

write_outcome stream_writer::write(const char* data, std::size_t size, void* keep) {
  if (size == 0) return write_outcome::ok;
  const bool send_at_once = note_write();
  const std::size_t before = size_;
  if (size_ == 0 && !watching_ &&
      (send_at_once || (keep == nullptr && size >= send_now_threshold))) {
    // Straight from the caller's buffer: nothing is queued or copied unless the kernel
    // leaves part of it, and then only the rest is.
    io_result sent = send_direct(data, size);
    if (!sent.ok() && !sent.would_block()) {
      return report_failure(sent.error) ? write_outcome::ok : write_outcome::owner_failed;
    }
    const std::size_t taken = sent.ok() ? static_cast<std::size_t>(sent.bytes) : 0;
    if (taken == size) return write_outcome::ok;
    push_chunk(data + taken, size - taken, keep);
    // The kernel took what it could: it will take no more before the socket is writable.
    if (write_outcome started = start_watching(); started != write_outcome::ok) return started;
  } else {
    push_chunk(data, size, keep);
  }
  return after_queued(before, send_at_once);
}

void stream_writer::queue(const char* data, std::size_t size, void* keep) {
  if (size > 0) push_chunk(data, size, keep);
}

write_outcome stream_writer::finish_writes(std::size_t size_before, bool send_at_once) {
  return after_queued(size_before, send_at_once);
}

// After data joined the queue: send at the end of the turn; at once when note_write said so,
// when the loop is not running, or when the queue passed the high-water mark (then pause the
// protocol, as asyncio's write() does).
write_outcome stream_writer::after_queued(std::size_t size_before, bool send_at_once) {
  if (size_ == size_before || watching_) {
    // Nothing new, or data is already waiting for writability: the watch sends it.
    if (watching_ && size_ > high_water_ && !events_.above_high_water(owner_)) {
      return write_outcome::owner_failed;
    }
    return write_outcome::ok;
  }
  if (send_at_once || size_ > high_water_ || !loop_.running()) {
    if (write_outcome flushed = flush(); flushed != write_outcome::ok) return flushed;
    if (size_ > high_water_ && !events_.above_high_water(owner_)) {
      return write_outcome::owner_failed;
    }
    return write_outcome::ok;
  }
  if (!in_flush_list_) loop_.schedule_flush(this);
  return write_outcome::ok;
}

// -- the queue ----------------------------------------------------------------------------

void stream_writer::push_chunk(const char* data, std::size_t size, void* keep) {
  if (keep != nullptr) {
    chunks_.push_back(chunk{data, size, 0, keep});  // first: if it throws, nothing is retained
    events_.retain_chunk(keep);
  } else {
    // The caller may change its buffer once write() returns: copy it, as asyncio does.
    auto* copy = static_cast<char*>(std::malloc(size));
    if (copy == nullptr) throw std::bad_alloc();
    std::memcpy(copy, data, size);
    try {
      chunks_.push_back(chunk{copy, size, 0, nullptr});
    } catch (...) {
      std::free(copy);
      throw;
    }
  }
  size_ += size;
}

void stream_writer::release(chunk& c) noexcept {
  if (c.kept != nullptr) {
    events_.release_chunk(c.kept);
  } else {
    std::free(const_cast<char*>(c.data));
  }
}

void stream_writer::drop_chunks() noexcept {
  // Detached first: releasing a chunk may run a finalizer that writes again.
  std::vector<chunk> dropped;
  dropped.swap(chunks_);
  const std::size_t head = head_;
  head_ = 0;
  size_ = 0;
  for (std::size_t i = head; i < dropped.size(); ++i) release(dropped[i]);
  if (chunks_.empty()) {
    dropped.clear();
    chunks_.swap(dropped);  // keep the capacity
  }
}

// -- sending ------------------------------------------------------------------------------

io_result stream_writer::send_direct(const char* data, std::size_t size) noexcept {
  loop_.count_send();
  return write_some(kind_, fd_, data, size);
}

// Sends queued chunks until the queue is empty or the kernel would block. On failure the
// queue is dropped and last_error_ holds the errno.
stream_writer::send_result stream_writer::send_queued() noexcept {
  while (size_ > 0) {
    iovec buffers[max_write_buffers];
    std::size_t count = 0;
    for (std::size_t i = head_; i < chunks_.size() && count < max_write_buffers; ++i, ++count) {
      const chunk& c = chunks_[i];
      buffers[count].iov_base = const_cast<char*>(c.data + c.sent);
      buffers[count].iov_len = c.size - c.sent;
    }
    loop_.count_send();
    io_result sent = write_vector(kind_, fd_, buffers, count);
    if (sent.would_block()) return send_result::blocked;
    if (!sent.ok()) {
      last_error_ = sent.error;
      drop_chunks();
      return send_result::failed;
    }
    auto taken = static_cast<std::size_t>(sent.bytes);
    size_ -= taken;
    while (taken > 0) {
      chunk& c = chunks_[head_];
      const std::size_t left = c.size - c.sent;
      if (taken < left) {
        c.sent += taken;
        break;
      }
      taken -= left;
      release(c);
      ++head_;
    }
    if (head_ == chunks_.size()) {
      chunks_.clear();
      head_ = 0;
    } else if (head_ >= 64 && head_ * 2 >= chunks_.size()) {
      // A queue that never empties (steady back-pressure) must not keep an entry for every
      // chunk it ever sent: drop the sent prefix once it is half the vector (amortized O(1)).
      chunks_.erase(chunks_.begin(), chunks_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  return send_result::drained;
}

// A failed send, as asyncio's write path reports it: the watch goes (the queue went with the
// failure), then the owner closes the transport.
bool stream_writer::report_failure(int error) {
  stop_watching();
  drop_chunks();
  return events_.write_failed(owner_, error);
}

write_outcome stream_writer::flush() {
  if (size_ == 0 || watching_) return write_outcome::ok;
  switch (send_queued()) {
    case send_result::drained:
      return write_outcome::ok;
    case send_result::blocked:
      return start_watching();
    case send_result::failed:
      break;
  }
  return report_failure(last_error_) ? write_outcome::ok : write_outcome::owner_failed;
}

void stream_writer::discard(bool send_first) noexcept {
  if (send_first && !watching_ && size_ > 0) (void)send_queued();  // a failure: closing anyway
  stop_watching();
  drop_chunks();
}

// -- the writability watch ----------------------------------------------------------------

write_outcome stream_writer::start_watching() {
  if (loop_.closed()) return write_outcome::loop_closed;
  events_.retain(owner_);  // the watch's reference
  callback replaced;
  if (std::error_code ec = loop_.watch(fd_, io_watch::direction::write,
                                       callback{&watch_ops, this}, replaced)) {
    events_.release(owner_);
    last_error_ = ec.value();
    return write_outcome::watch_failed;
  }
  watching_ = true;
  // A transport's descriptor is refused to add_writer, so nothing else should have been
  // installed; whatever was is let go of.
  if (replaced.ops != nullptr) replaced.discard();
  return write_outcome::ok;
}

void stream_writer::stop_watching() noexcept {
  if (!watching_) return;
  callback removed = loop_.unwatch(fd_, io_watch::direction::write);
  if (removed.ops != nullptr) removed.discard();  // drop_watch: watching_ false, owner released
  watching_ = false;
}

// The watch fired: send more; tell the owner when the protocol may resume and when the queue
// is empty (it then finishes a close or write_eof, or wakes a sendfile).
bool stream_writer::on_writable() {
  if (!watching_) return true;  // stopped after this dispatch was queued
  if (send_queued() == send_result::failed) return report_failure(last_error_);
  if (size_ <= low_water_ && !events_.at_low_water(owner_)) return false;
  // Resuming the protocol may have written more: only an empty queue ends the watch.
  if (size_ == 0 && watching_) {
    stop_watching();
    return events_.drained(owner_);
  }
  return true;
}

callback_status stream_writer::run_watch(void* payload) noexcept {
  stream_writer* w = from_watch(payload);
  const stream_writer_events& events = w->events_;
  void* owner = w->owner_;
  callback_status status = callback_status::done;
  if (!w->on_writable()) status = events.callback_failed(owner);
  events.release(owner);  // the dispatch's reference; w may be gone after this
  return status;
}

void stream_writer::drop_watch(void* payload) noexcept {
  stream_writer* w = from_watch(payload);
  w->watching_ = false;
  w->events_.release(w->owner_);
}

void stream_writer::retain_watch(void* payload) noexcept {
  stream_writer* w = from_watch(payload);
  w->events_.retain(w->owner_);
}

}  // namespace pyloop
