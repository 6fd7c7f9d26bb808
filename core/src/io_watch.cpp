// core/src/io_watch.cpp — readiness waits, dispatch through the ready queue, and teardown.
#include "pyloop/io_watch.hpp"

#include <sys/stat.h>

#include <cerrno>

namespace pyloop {

const callback_ops io_watch::read_dispatch_ops{dispatch_read, drop_read, never_cancelled, nullptr,
                                               nullptr};
const callback_ops io_watch::write_dispatch_ops{dispatch_write, drop_write, never_cancelled,
                                                nullptr, nullptr};

io_watch::io_watch(asio::io_context& io, ready_queue& ready, int fd)
    : descriptor_(io), ready_(ready), fd_(fd) {}

io_watch::~io_watch() = default;

std::error_code io_watch::open() {
  // epoll refuses regular files and directories (EPERM); Asio would accept them and never
  // report readiness, so refuse them here as a selector-based loop does.
  struct stat info;
  if (::fstat(fd_, &info) != 0) return {errno, std::generic_category()};
  if (S_ISREG(info.st_mode) || S_ISDIR(info.st_mode)) return {EPERM, std::generic_category()};
  asio::error_code ec;
  descriptor_.assign(fd_, ec);
  return ec;
}

callback io_watch::install(direction d, callback cb) {
  side& s = side_[index(d)];
  callback replaced = s.cb;
  s.cb = cb;
  arm(d);
  return replaced;
}

callback io_watch::remove(direction d) {
  side& s = side_[index(d)];
  callback removed = s.cb;
  s.cb = callback{nullptr, nullptr};
  // A pending wait stays armed; when it fires with no callback installed nothing runs.
  return removed;
}

void io_watch::arm(direction d) {
  side& s = side_[index(d)];
  if (s.waiting || s.queued || detached_ || s.cb.ops == nullptr) return;
  s.waiting = true;
  ++refs_;
  const auto wait_type = d == direction::read ? asio::posix::stream_descriptor::wait_read
                                              : asio::posix::stream_descriptor::wait_write;
  descriptor_.async_wait(wait_type, [this, d](const asio::error_code& ec) {
    side_[index(d)].waiting = false;
    if (!ec && !detached_) on_ready(d);
    release_ref();
  });
}

void io_watch::on_ready(direction d) {
  side& s = side_[index(d)];
  if (s.cb.ops == nullptr || s.queued) return;
  s.queued = true;
  ++refs_;
  ready_.push(callback{d == direction::read ? &read_dispatch_ops : &write_dispatch_ops, this});
}

callback_status io_watch::dispatch(direction d) noexcept {
  side& s = side_[index(d)];
  s.queued = false;
  callback_status status = callback_status::done;
  if (!detached_ && s.cb.ops != nullptr) {
    // The installed callback stays installed: run it on an extra reference.
    callback cb = s.cb;
    if (cb.ops->retain != nullptr) cb.ops->retain(cb.payload);
    status = cb.invoke();
    arm(d);  // the callback may have removed itself or detached the watch; arm() checks
  }
  release_ref();
  return status;
}

callback_status io_watch::dispatch_read(void* self) noexcept {
  return static_cast<io_watch*>(self)->dispatch(direction::read);
}
callback_status io_watch::dispatch_write(void* self) noexcept {
  return static_cast<io_watch*>(self)->dispatch(direction::write);
}
void io_watch::drop_read(void* self) noexcept {
  auto* w = static_cast<io_watch*>(self);
  w->side_[index(direction::read)].queued = false;
  w->release_ref();
}
void io_watch::drop_write(void* self) noexcept {
  auto* w = static_cast<io_watch*>(self);
  w->side_[index(direction::write)].queued = false;
  w->release_ref();
}

void io_watch::detach() noexcept {
  if (detached_) return;
  detached_ = true;
  for (side& s : side_) {
    callback cb = s.cb;
    s.cb = callback{nullptr, nullptr};
    if (cb.ops != nullptr) cb.discard();
  }
  // Deregisters from the reactor without closing the caller's descriptor; pending waits
  // complete later with operation_aborted and drop their references then.
  (void)descriptor_.release();
  release_ref();
}

void io_watch::release_ref() noexcept {
  if (--refs_ == 0) delete this;
}

}  // namespace pyloop
