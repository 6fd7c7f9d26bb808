// core/src/io_watch.cpp — interest registration, dispatch through the ready queue, teardown.
#include "pyloop/io_watch.hpp"

namespace pyloop {

const callback_ops io_watch::read_dispatch_ops{dispatch_read, drop_read, never_cancelled, nullptr,
                                               nullptr};
const callback_ops io_watch::write_dispatch_ops{dispatch_write, drop_write, never_cancelled,
                                                nullptr, nullptr};

unsigned io_watch::interest() const noexcept {
  return (has(direction::read) ? readable : 0u) | (has(direction::write) ? writable : 0u);
}

std::error_code io_watch::install(direction d, callback cb, callback& replaced) noexcept {
  const unsigned wanted = registered_ | bit(d);
  if (std::error_code ec = set_.update(fd_, registered_, wanted)) {
    replaced = callback{nullptr, nullptr};
    return ec;
  }
  registered_ = wanted;
  side& s = side_[index(d)];
  replaced = s.cb;
  s.cb = cb;
  return {};
}

callback io_watch::remove(direction d) noexcept {
  side& s = side_[index(d)];
  callback removed = s.cb;
  s.cb = callback{nullptr, nullptr};
  // A watch left with no callback is detached by its owner, which removes the descriptor
  // from the set; otherwise narrow the interest to what is still installed. A failure means
  // the descriptor is gone; the owner learns that from its next system call.
  const unsigned wanted = interest();
  if (wanted != 0 && set_.update(fd_, registered_, wanted) == std::error_code{}) {
    registered_ = wanted;
  }
  return removed;
}

void io_watch::on_ready(unsigned bits) {
  if (detached_) return;
  if (bits & hangup) saw_hangup_ = true;
  if (bits & readable) queue(direction::read);
  if (bits & writable) queue(direction::write);
}

void io_watch::queue(direction d) {
  side& s = side_[index(d)];
  if (s.cb.ops == nullptr || s.queued) return;
  // Pushed first: if the queue cannot grow (std::bad_alloc), nothing was counted.
  ready_.push(callback{d == direction::read ? &read_dispatch_ops : &write_dispatch_ops, this});
  s.queued = true;
  ++refs_;
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
  // Removes the registration without closing the caller's descriptor.
  (void)set_.update(fd_, registered_, 0);
  registered_ = 0;
  release_ref();
}

void io_watch::release_ref() noexcept {
  if (--refs_ == 0) delete this;
}

}  // namespace pyloop
