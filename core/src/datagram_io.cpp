// core/src/datagram_io.cpp — batched receives, immediate sends, the backlog and its watch.
#include "pyloop/datagram_io.hpp"

#include <algorithm>
#include <cstring>
#include <new>

#include "pyloop/loop_driver.hpp"

namespace pyloop {
namespace {

// Where batches are received: one area per thread (a loop runs on one thread, and a batch is
// delivered before the next receive), made on first use. Its pages are touched only as
// datagrams fill them, so small datagrams keep it mostly unresident.
struct batch_area {
  std::unique_ptr<char[]> memory;  // datagram_io::batch_area_size bytes, or null
  sockaddr_storage from[max_datagram_batch];
  datagram_slot slots[max_datagram_batch];
};

batch_area* thread_batch_area() noexcept {
  thread_local batch_area area;
  if (!area.memory) area.memory.reset(new (std::nothrow) char[datagram_io::batch_area_size]);
  return area.memory ? &area : nullptr;
}

}  // namespace

const callback_ops datagram_io::read_ops{run_read, drop_read, nullptr, nullptr, retain_payload};
const callback_ops datagram_io::write_ops{run_write, drop_write, nullptr, nullptr,
                                          retain_payload};
const callback_ops datagram_io::resume_ops{run_resume, drop_resume, nullptr, nullptr, nullptr};

datagram_io::datagram_io(loop_driver& loop, int fd, bool ip, const datagram_io_events& events,
                         void* owner) noexcept
    : loop_(loop), events_(events), owner_(owner), fd_(fd), ip_(ip) {}

datagram_io::~datagram_io() {
  stop_reading();
  discard();
}

void datagram_io::set_batch_limit(std::size_t limit) noexcept {
  batch_limit_ = std::clamp<std::size_t>(limit, 1, max_datagram_batch);
}

// -- receiving ----------------------------------------------------------------------------

std::error_code datagram_io::start_reading() noexcept {
  if (reading_) return {};
  events_.retain(owner_);  // the registry's reference
  callback replaced;
  if (std::error_code ec =
          loop_.watch(fd_, io_watch::direction::read, callback{&read_ops, this}, replaced)) {
    events_.release(owner_);
    return ec;
  }
  reading_ = true;
  // A transport's descriptor is refused to add_reader: whatever was installed is let go of.
  if (replaced.ops != nullptr) replaced.discard();
  // Datagrams kept from an interrupted batch go first, even if the socket stays quiet.
  if (kept_next_ < kept_.size()) queue_resume();
  return {};
}

void datagram_io::stop_reading() noexcept {
  if (!reading_) return;
  callback removed = loop_.unwatch(fd_, io_watch::direction::read);
  if (removed.ops != nullptr) removed.discard();  // drop_read: reading_ false, owner released
  reading_ = false;
}

void datagram_io::queue_resume() noexcept {
  if (resume_queued_) return;
  events_.retain(owner_);
  try {
    loop_.call_soon(callback{&resume_ops, this});
    resume_queued_ = true;
  } catch (const std::bad_alloc&) {
    events_.release(owner_);  // the next readiness delivers them instead
  }
}

// The rest of a batch, [first, count) of the batch area, when delivery stops before its end.
void datagram_io::keep_rest(std::size_t first, std::size_t count) noexcept {
  if (discarded_ || first >= count) return;
  batch_area* area = thread_batch_area();
  try {
    for (std::size_t i = first; i < count; ++i) {
      const datagram_slot& s = area->slots[i];
      kept k{std::vector<char>(s.data, s.data + s.size), {}, s.from_length};
      std::memcpy(&k.from, s.from, sizeof k.from);
      kept_.push_back(std::move(k));
    }
  } catch (const std::bad_alloc&) {
    // Out of memory: the rest of this batch is lost, as a full socket buffer would drop it.
  }
}

bool datagram_io::deliver_kept() {
  while (kept_next_ < kept_.size()) {
    if (!reading_) return true;  // paused again: the rest waits
    // Moved out: the event may discard() or add to kept_ while it runs.
    kept k = std::move(kept_[kept_next_++]);
    if (!events_.datagram_received(owner_, k.data.data(), k.data.size(),
                                   reinterpret_cast<const sockaddr*>(&k.from), k.from_length)) {
      if (reading_ && kept_next_ < kept_.size()) queue_resume();
      return false;
    }
  }
  kept_.clear();
  kept_next_ = 0;
  return true;
}

bool datagram_io::receive_batch() {
  batch_area* area = thread_batch_area();
  const std::size_t slot_size = ip_ ? ip_slot_size : max_datagram_size;
  std::size_t count = 1;
  char* memory;
  if (area != nullptr) {
    memory = area->memory.get();
    count = std::min(batch_limit_, batch_area_size / slot_size);
  } else {
    memory = loop_.receive_buffer();  // one datagram at a time, as asyncio reads
    if (memory == nullptr) return events_.error_received(owner_, ENOMEM, datagram_context::receiving);
  }
  static thread_local sockaddr_storage lone_from;
  datagram_slot lone{memory, std::min(slot_size, loop_driver::receive_buffer_size), 0, &lone_from, 0};
  datagram_slot* slots = &lone;
  if (area != nullptr) {
    slots = area->slots;
    for (std::size_t i = 0; i < count; ++i) {
      slots[i] = datagram_slot{memory + i * slot_size, slot_size, 0, &area->from[i], 0};
    }
  }
  ++receive_calls_;
  io_result got = receive_datagrams(fd_, slots, count);
  if (got.would_block()) return true;  // the readiness was spurious
  if (!got.ok()) return events_.error_received(owner_, got.error, datagram_context::receiving);
  const auto received = static_cast<std::size_t>(got.bytes);
  discarded_ = false;
  for (std::size_t i = 0; i < received; ++i) {
    // Paused, closed or aborted by the previous datagram's protocol call.
    if (!reading_) {
      if (area != nullptr) keep_rest(i, received);
      return true;
    }
    const datagram_slot& s = slots[i];
    if (!events_.datagram_received(owner_, s.data, s.size,
                                   reinterpret_cast<const sockaddr*>(s.from), s.from_length)) {
      if (area != nullptr) keep_rest(i + 1, received);
      if (reading_ && kept_next_ < kept_.size()) queue_resume();
      return false;
    }
  }
  return true;
}

callback_status datagram_io::run_read(void* payload) noexcept {
  datagram_io* d = from_payload(payload);
  const datagram_io_events& events = d->events_;
  void* owner = d->owner_;
  callback_status status = callback_status::done;
  if (d->reading_) {  // else removed after this dispatch was queued
    bool ok = events.enter(owner);
    if (ok) {
      ok = d->deliver_kept();
      if (ok && d->reading_ && d->kept_.empty()) ok = d->receive_batch();
      ok = events.leave(owner) && ok;
    }
    if (!ok) status = events.callback_failed(owner);
  }
  events.release(owner);  // the dispatch's reference; d may be gone after this
  return status;
}

callback_status datagram_io::run_resume(void* payload) noexcept {
  datagram_io* d = from_payload(payload);
  const datagram_io_events& events = d->events_;
  void* owner = d->owner_;
  d->resume_queued_ = false;
  callback_status status = callback_status::done;
  if (d->reading_ && d->kept_next_ < d->kept_.size()) {
    bool ok = events.enter(owner);
    if (ok) {
      ok = d->deliver_kept();
      ok = events.leave(owner) && ok;
    }
    if (!ok) status = events.callback_failed(owner);
  }
  events.release(owner);  // the queued entry's reference
  return status;
}

void datagram_io::drop_read(void* payload) noexcept {
  datagram_io* d = from_payload(payload);
  d->reading_ = false;
  d->events_.release(d->owner_);
}

void datagram_io::drop_resume(void* payload) noexcept {
  datagram_io* d = from_payload(payload);
  d->resume_queued_ = false;
  d->events_.release(d->owner_);
}

void datagram_io::retain_payload(void* payload) noexcept {
  datagram_io* d = from_payload(payload);
  d->events_.retain(d->owner_);
}

// -- sending ------------------------------------------------------------------------------

// asyncio's sendto: at once when nothing waits; what the kernel refuses with EAGAIN waits for
// writability, and the backlog past the high-water mark pauses the protocol.
datagram_outcome datagram_io::send(const datagram_out& d) {
  if (queue_.empty()) {
    ++send_calls_;
    io_result sent = send_datagram(fd_, d);
    if (sent.ok()) return datagram_outcome::ok;
    if (!sent.would_block()) {
      return events_.error_received(owner_, sent.error, datagram_context::sending)
                 ? datagram_outcome::ok
                 : datagram_outcome::owner_failed;
    }
    if (datagram_outcome started = start_watching(); started != datagram_outcome::ok) {
      return started;
    }
  }
  queued q{std::unique_ptr<char[]>(new char[std::max<std::size_t>(d.size, 1)]), d.size, {}, 0};
  std::memcpy(q.data.get(), d.data, d.size);
  if (d.to != nullptr) {
    std::memcpy(&q.to, d.to, std::min<std::size_t>(d.to_length, sizeof q.to));
    q.to_length = d.to_length;
  }
  queue_.push_back(std::move(q));
  size_ += d.size + overhead_;
  if (size_ > high_water_ && !events_.above_high_water(owner_)) {
    return datagram_outcome::owner_failed;
  }
  return datagram_outcome::ok;
}

void datagram_io::pop_front() noexcept {
  size_ -= std::min(size_, queue_.front().size + overhead_);
  queue_.pop_front();
}

void datagram_io::discard() noexcept {
  stop_watching();
  queue_.clear();
  size_ = 0;
  kept_.clear();
  kept_next_ = 0;
  discarded_ = true;
}

datagram_outcome datagram_io::start_watching() {
  if (loop_.closed()) return datagram_outcome::loop_closed;
  events_.retain(owner_);  // the watch's reference
  callback replaced;
  if (std::error_code ec = loop_.watch(fd_, io_watch::direction::write,
                                       callback{&write_ops, this}, replaced)) {
    events_.release(owner_);
    last_error_ = ec.value();
    return datagram_outcome::watch_failed;
  }
  watching_ = true;
  if (replaced.ops != nullptr) replaced.discard();
  return datagram_outcome::ok;
}

void datagram_io::stop_watching() noexcept {
  if (!watching_) return;
  callback removed = loop_.unwatch(fd_, io_watch::direction::write);
  if (removed.ops != nullptr) removed.discard();  // drop_write: watching_ false, owner released
  watching_ = false;
}

// asyncio's _sendto_ready: send the backlog in order until the kernel would block; a failed
// datagram is dropped and reported, and the rest waits for the next writability. Then the
// protocol may resume, and an empty backlog ends the watch (and finishes a close).
bool datagram_io::on_writable() {
  if (!watching_) return true;  // stopped after this dispatch was queued
  while (!queue_.empty()) {
    datagram_out batch[max_datagram_batch];
    const std::size_t count = std::min(queue_.size(), max_datagram_batch);
    for (std::size_t i = 0; i < count; ++i) {
      const queued& q = queue_[i];
      batch[i] = datagram_out{q.data.get(), q.size,
                              q.to_length ? reinterpret_cast<const sockaddr*>(&q.to) : nullptr,
                              q.to_length};
    }
    ++send_calls_;
    io_result sent = send_datagrams(fd_, batch, count);
    if (sent.would_block()) break;
    if (!sent.ok()) {
      pop_front();
      return events_.error_received(owner_, sent.error, datagram_context::backlog);
    }
    if (sent.bytes == 0) break;
    for (ssize_t i = 0; i < sent.bytes; ++i) pop_front();
  }
  if (!events_.backlog_sent(owner_)) return false;  // may queue more
  if (queue_.empty() && watching_) {
    stop_watching();
    return events_.drained(owner_);
  }
  return true;
}

callback_status datagram_io::run_write(void* payload) noexcept {
  datagram_io* d = from_payload(payload);
  const datagram_io_events& events = d->events_;
  void* owner = d->owner_;
  callback_status status = callback_status::done;
  if (!d->on_writable()) status = events.callback_failed(owner);
  events.release(owner);  // the dispatch's reference; d may be gone after this
  return status;
}

void datagram_io::drop_write(void* payload) noexcept {
  datagram_io* d = from_payload(payload);
  d->watching_ = false;
  d->events_.release(d->owner_);
}

}  // namespace pyloop
