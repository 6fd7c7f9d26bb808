// core/src/readiness_set.cpp — epoll (Linux) and kqueue (BSD, macOS) behind readiness_set.
#include "pyloop/readiness_set.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdint>

#if defined(__linux__)
#include <sys/epoll.h>
#include <sys/eventfd.h>
#else
#include <sys/event.h>
#include <sys/time.h>
#include <sys/types.h>
#endif

namespace pyloop {
namespace {

std::error_code last_error() noexcept { return {errno, std::generic_category()}; }

}  // namespace

#if defined(__linux__)

namespace {

unsigned epoll_interest(unsigned bits) {
  return ((bits & readable) ? EPOLLIN : 0u) | ((bits & writable) ? EPOLLOUT : 0u);
}

}  // namespace

std::error_code readiness_set::open() noexcept {
  if (is_open()) return {};
  queue_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (queue_fd_ < 0) return last_error();
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  std::error_code ec;
  if (wake_fd_ < 0) {
    ec = last_error();
  } else {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd_;
    if (::epoll_ctl(queue_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) ec = last_error();
  }
  if (ec) close();
  return ec;
}

void readiness_set::close() noexcept {
  if (wake_fd_ >= 0) ::close(wake_fd_);
  if (queue_fd_ >= 0) ::close(queue_fd_);
  wake_fd_ = queue_fd_ = -1;
}

std::error_code readiness_set::update(int fd, unsigned before, unsigned after) noexcept {
  if (before == after) return {};
  epoll_event ev{};
  ev.events = epoll_interest(after);
  ev.data.fd = fd;
  if (after == 0) {
    // EBADF/ENOENT: the descriptor was closed, and closing it left the set already.
    if (::epoll_ctl(queue_fd_, EPOLL_CTL_DEL, fd, &ev) != 0 && errno != EBADF &&
        errno != ENOENT) {
      return last_error();
    }
    return {};
  }
  int op = before == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  if (::epoll_ctl(queue_fd_, op, fd, &ev) == 0) return {};
  // ENOENT on MOD: the descriptor was closed (leaving the set) and its number reused.
  // EEXIST on ADD: the same open file is still registered under this number, as when an
  // earlier removal of a closed descriptor could not reach a duplicate of it.
  if ((op == EPOLL_CTL_MOD && errno == ENOENT) || (op == EPOLL_CTL_ADD && errno == EEXIST)) {
    op = op == EPOLL_CTL_MOD ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (::epoll_ctl(queue_fd_, op, fd, &ev) == 0) return {};
  }
  return last_error();
}

readiness_set::result readiness_set::wait(int timeout_ms) noexcept {
  epoll_event events[batch_size];
  int n = ::epoll_wait(queue_fd_, events, static_cast<int>(batch_size), timeout_ms);
  std::size_t count = 0;
  for (int i = 0; i < n; ++i) {
    const int fd = events[i].data.fd;
    if (fd == wake_fd_) {
      std::uint64_t drained;
      (void)!::read(wake_fd_, &drained, sizeof drained);
      continue;
    }
    const unsigned e = events[i].events;
    // As selectors.EpollSelector: anything but EPOLLIN counts as writable, anything but
    // EPOLLOUT as readable (errors and hang-ups wake both directions).
    unsigned bits = 0;
    if (e & ~static_cast<unsigned>(EPOLLIN)) bits |= writable;
    if (e & ~static_cast<unsigned>(EPOLLOUT)) bits |= readable;
    if (e & static_cast<unsigned>(EPOLLERR | EPOLLHUP)) bits |= hangup;
    ready_[count++] = ready_descriptor{fd, bits};
  }
  return result{ready_, count};
}

void readiness_set::wake() noexcept {
  const std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

#else  // kqueue

namespace {
constexpr std::uintptr_t wake_ident = 0;  // the EVFILT_USER event's identifier
}

std::error_code readiness_set::open() noexcept {
  if (is_open()) return {};
  queue_fd_ = ::kqueue();
  if (queue_fd_ < 0) return last_error();
  struct kevent change;
  EV_SET(&change, wake_ident, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, nullptr);
  if (::kevent(queue_fd_, &change, 1, nullptr, 0, nullptr) != 0) {
    std::error_code ec = last_error();
    close();
    return ec;
  }
  return {};
}

void readiness_set::close() noexcept {
  if (queue_fd_ >= 0) ::close(queue_fd_);
  queue_fd_ = -1;
}

std::error_code readiness_set::update(int fd, unsigned before, unsigned after) noexcept {
  struct kevent changes[2];
  int n = 0;
  const unsigned added = after & ~before;
  const unsigned removed = before & ~after;
  if (added & readable) EV_SET(&changes[n++], fd, EVFILT_READ, EV_ADD, 0, 0, nullptr);
  if (added & writable) EV_SET(&changes[n++], fd, EVFILT_WRITE, EV_ADD, 0, 0, nullptr);
  if (removed & readable) EV_SET(&changes[n++], fd, EVFILT_READ, EV_DELETE, 0, 0, nullptr);
  if (removed & writable) EV_SET(&changes[n++], fd, EVFILT_WRITE, EV_DELETE, 0, 0, nullptr);
  if (n == 0) return {};
  if (::kevent(queue_fd_, changes, n, nullptr, 0, nullptr) == 0) return {};
  // Removing from a closed descriptor: closing it removed its filters already.
  if (added == 0 && (errno == EBADF || errno == ENOENT)) return {};
  return last_error();
}

readiness_set::result readiness_set::wait(int timeout_ms) noexcept {
  struct kevent events[batch_size];
  timespec timeout{timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
  int n = ::kevent(queue_fd_, nullptr, 0, events, static_cast<int>(batch_size),
                   timeout_ms < 0 ? nullptr : &timeout);
  std::size_t count = 0;
  for (int i = 0; i < n; ++i) {
    if (events[i].filter == EVFILT_USER) continue;  // the wakeup (EV_CLEAR resets it)
    const int fd = static_cast<int>(events[i].ident);
    unsigned bits = events[i].filter == EVFILT_WRITE ? writable : readable;
    if (events[i].flags & EV_ERROR) bits = readable | writable | hangup;
    if ((events[i].flags & EV_EOF) && events[i].fflags != 0) bits |= hangup;  // with an error
    // kqueue reports each filter separately: merge the two of one descriptor.
    if (count > 0 && ready_[count - 1].fd == fd) {
      ready_[count - 1].bits |= bits;
    } else {
      ready_[count++] = ready_descriptor{fd, bits};
    }
  }
  return result{ready_, count};
}

void readiness_set::wake() noexcept {
  struct kevent change;
  EV_SET(&change, wake_ident, EVFILT_USER, 0, NOTE_TRIGGER, 0, nullptr);
  (void)::kevent(queue_fd_, &change, 1, nullptr, 0, nullptr);
}

#endif

}  // namespace pyloop
