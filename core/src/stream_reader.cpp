// core/src/stream_reader.cpp — one read per readiness callback, handed to the owner's events.
#include "pyloop/stream_reader.hpp"

#include <cerrno>

#include "pyloop/loop_driver.hpp"

namespace pyloop {

const callback_ops stream_reader::watch_ops{run_watch, drop_watch, nullptr, nullptr,
                                            retain_watch};

stream_reader::stream_reader(loop_driver& loop, int fd, descriptor_kind kind,
                             const stream_reader_events& events, void* owner) noexcept
    : loop_(loop), events_(events), owner_(owner), fd_(fd), kind_(kind) {}

std::error_code stream_reader::start(mode m) noexcept {
  mode_ = m;
  if (installed_) return {};
  events_.retain(owner_);  // the registry's reference
  callback replaced;
  if (std::error_code ec =
          loop_.watch(fd_, io_watch::direction::read, callback{&watch_ops, this}, replaced)) {
    events_.release(owner_);
    return ec;
  }
  installed_ = true;
  // A transport's descriptor is refused to add_reader, so nothing else should have been
  // installed; whatever was is let go of.
  if (replaced.ops != nullptr) replaced.discard();
  return {};
}

void stream_reader::stop() noexcept {
  if (!installed_) return;
  callback removed = loop_.unwatch(fd_, io_watch::direction::read);
  if (removed.ops != nullptr) removed.discard();  // drop_watch: installed_ false, owner released
  installed_ = false;
}

bool stream_reader::read_once() {
  char* buffer = loop_.receive_buffer();
  if (buffer == nullptr) return events_.read_failed(owner_, ENOMEM);
  io_result got = read_some(kind_, fd_, buffer, loop_driver::receive_buffer_size);
  if (got.would_block()) return true;  // the readiness was spurious
  if (!got.ok()) return events_.read_failed(owner_, got.error);
  if (got.bytes == 0) return events_.eof_received(owner_);
  return events_.data_received(owner_, buffer, static_cast<std::size_t>(got.bytes));
}

bool stream_reader::read_into_buffer() {
  lent_buffer into;
  if (!events_.get_buffer(owner_, into)) return false;
  if (into.size == 0) return true;  // the owner reported why
  io_result got = read_some(kind_, fd_, into.data, into.size);
  events_.release_buffer(owner_);
  if (got.would_block()) return true;
  if (!got.ok()) return events_.read_failed(owner_, got.error);
  if (got.bytes == 0) return events_.eof_received(owner_);
  return events_.buffer_updated(owner_, static_cast<std::size_t>(got.bytes));
}

bool stream_reader::peer_hung_up() const { return loop_.saw_hangup(fd_); }

callback_status stream_reader::run_watch(void* payload) noexcept {
  stream_reader* r = from_watch(payload);
  const stream_reader_events& events = r->events_;
  void* owner = r->owner_;
  callback_status status = callback_status::done;
  // Removed after this dispatch was queued (pause_reading, close): nothing to read.
  if (r->installed_) {
    bool ok = events.enter(owner);
    if (ok) {
      ok = r->mode_ == mode::copy ? r->read_once() : r->read_into_buffer();
      ok = events.leave(owner) && ok;
    }
    if (!ok) status = events.callback_failed(owner);
  }
  events.release(owner);  // the dispatch's reference; r may be gone after this
  return status;
}

void stream_reader::drop_watch(void* payload) noexcept {
  stream_reader* r = from_watch(payload);
  r->installed_ = false;
  r->events_.release(r->owner_);
}

void stream_reader::retain_watch(void* payload) noexcept {
  stream_reader* r = from_watch(payload);
  r->events_.retain(r->owner_);
}

}  // namespace pyloop
