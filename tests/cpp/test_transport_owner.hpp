// tests/cpp/test_transport_owner.hpp — a stand-in transport that records what a stream writer
// or reader told it, and the descriptors and loop set-up those tests share.
#pragma once

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "pyloop/loop_driver.hpp"
#include "pyloop/stream_reader.hpp"
#include "pyloop/stream_writer.hpp"

namespace pyloop::testing {

// A connected pair of non-blocking Unix stream sockets, closed at the end of the test.
struct socket_pair {
  int fds[2] = {-1, -1};
  socket_pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0); }
  ~socket_pair() {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  }
  void close_peer() {
    ::close(fds[1]);
    fds[1] = -1;
  }
  // Everything the peer can read now.
  std::string drain_peer() {
    std::string got;
    char buffer[65536];
    ssize_t n;
    while ((n = ::read(fds[1], buffer, sizeof buffer)) > 0) got.append(buffer, n);
    return got;
  }
  // The smallest buffers the kernel allows, so that a few KiB fill the connection.
  void shrink_buffers() {
    const int small = 4096;
    for (int fd : fds) {
      EXPECT_EQ(::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
      EXPECT_EQ(::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    }
  }
  // Sends from fds[0] until the kernel takes no more; returns the bytes it took.
  std::size_t fill() {
    std::size_t total = 0;
    const std::string block(4096, '#');
    ssize_t n;
    while ((n = ::send(fds[0], block.data(), block.size(), MSG_NOSIGNAL)) > 0) total += n;
    EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK);
    return total;
  }
};

// A non-blocking pipe: fds[0] reads, fds[1] writes.
struct pipe_pair {
  int fds[2] = {-1, -1};
  pipe_pair() { EXPECT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0); }
  ~pipe_pair() {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  }
};

// Installs an end-of-turn hook that flushes the loop's writers, as the bindings' hook does.
inline void flush_writers_at_end_of_turn(loop_driver& loop) {
  loop_hooks hooks;
  hooks.data = &loop;
  hooks.end_of_turn = [](void* d) noexcept {
    return static_cast<loop_driver*>(d)->flush_writers(
        [](stream_writer&, write_outcome) { return true; });
  };
  loop.set_hooks(hooks);
}

// A callback that runs a function in the loop's callback phase (phase 6), as a transport's
// protocol callback would.
struct function_callback {
  static callback make(std::function<void()> fn) {
    return callback{&ops, new std::function<void()>(std::move(fn))};
  }
  static callback_status invoke(void* p) noexcept {
    auto* fn = static_cast<std::function<void()>*>(p);
    (*fn)();
    delete fn;
    return callback_status::done;
  }
  static void discard(void* p) noexcept { delete static_cast<std::function<void()>*>(p); }
  static constexpr callback_ops ops{invoke, discard, nullptr, nullptr, nullptr};
};

// Runs one loop iteration whose callback phase runs fn.
inline run_status run_turn(loop_driver& loop, std::function<void()> fn) {
  loop.call_soon(function_callback::make(std::move(fn)));
  return loop.run_once();
}

// Runs one iteration that never blocks: a no-op callback makes the wait a poll.
inline run_status run_turn(loop_driver& loop) {
  return run_turn(loop, [] {});
}

// Runs non-blocking turns until done() holds or `limit` passes, sleeping 1 ms between turns:
// for events the kernel delivers later (a pty's line discipline forwards data asynchronously).
inline bool run_until(loop_driver& loop, const std::function<bool()>& done,
                      std::chrono::milliseconds limit = std::chrono::milliseconds(2000)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    run_turn(loop);
    if (!done()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Records every event. `refs` counts owner references taken and not yet released, `kept`
// chunk references likewise: both must be back to zero once a writer or reader is done.
struct fake_owner {
  int refs = 0;                     // owner references held by the writer, reader or loop
  int kept = 0;                     // chunk references held (the `keep` of write())
  std::vector<std::string> events;  // in order: "high", "low", "drained", "failed:<strerror>"
  std::string received;             // data_received / buffer_updated bytes
  const char* last_data = nullptr;  // where data_received's latest bytes were
  int eofs = 0;                     // eof_received() calls
  int failed_error = 0;             // errno of the latest write_failed/read_failed
  bool fail_next = false;           // the next event returns false (an unhandled error)
  int callback_failures = 0;        // callback_failed() calls
  callback_status failure_status = callback_status::done;  // what callback_failed() asks
  std::function<void()> on_drained;  // extra action when drained
  std::function<void(const std::string&)> on_event;  // extra action after any event
  char lent[8] = {};                // the BufferedProtocol's buffer (small on purpose)
  bool lend_nothing = false;        // get_buffer leaves the span empty (a handled failure)
  int lent_buffers = 0;             // get_buffer calls that lent `lent`
  int released_buffers = 0;         // release_buffer() calls

  static fake_owner& of(void* o) { return *static_cast<fake_owner*>(o); }
  bool answer() {
    if (!fail_next) return true;
    fail_next = false;
    return false;
  }
  // Records an event and answers for it.
  bool note(std::string name) {
    events.push_back(name);
    if (on_event) on_event(name);
    return answer();
  }

  static void retain(void* o) noexcept { ++of(o).refs; }
  static void release(void* o) noexcept { --of(o).refs; }
  static callback_status callback_failed(void* o) noexcept {
    ++of(o).callback_failures;
    return of(o).failure_status;
  }

  // stream_writer_events
  static void retain_chunk(void* k) noexcept { ++*static_cast<int*>(k); }
  static void release_chunk(void* k) noexcept { --*static_cast<int*>(k); }
  static bool write_failed(void* o, int error) noexcept {
    of(o).failed_error = error;
    return of(o).note("failed:" + std::string(std::strerror(error)));
  }
  static bool above_high_water(void* o) noexcept { return of(o).note("high"); }
  static bool at_low_water(void* o) noexcept { return of(o).note("low"); }
  static bool drained(void* o) noexcept {
    if (of(o).on_drained) of(o).on_drained();
    return of(o).note("drained");
  }

  // stream_reader_events
  static bool data_received(void* o, const char* data, std::size_t size) noexcept {
    of(o).received.append(data, size);
    of(o).last_data = data;
    return of(o).note("data");
  }
  // A get_buffer that fails (returns false) lends nothing, as a BufferedProtocol whose
  // get_buffer raised has no buffer to offer.
  static bool get_buffer(void* o, lent_buffer& out) noexcept {
    if (!of(o).answer()) return false;
    if (!of(o).lend_nothing) {
      out = lent_buffer{of(o).lent, sizeof of(o).lent};
      ++of(o).lent_buffers;
    }
    return true;
  }
  static void release_buffer(void* o) noexcept { ++of(o).released_buffers; }
  static bool buffer_updated(void* o, std::size_t size) noexcept {
    of(o).received.append(of(o).lent, size);
    return of(o).note("updated");
  }
  static bool eof_received(void* o) noexcept {
    ++of(o).eofs;
    return of(o).note("eof");
  }
  static bool read_failed(void* o, int error) noexcept {
    of(o).failed_error = error;
    return of(o).note("failed:" + std::string(std::strerror(error)));
  }
  static bool enter(void*) noexcept { return true; }
  static bool leave(void*) noexcept { return true; }
};

inline constexpr stream_writer_events fake_writer_events{
    fake_owner::release_chunk, fake_owner::retain_chunk, fake_owner::write_failed,
    fake_owner::above_high_water, fake_owner::at_low_water, fake_owner::drained,
    fake_owner::callback_failed, fake_owner::retain, fake_owner::release};

inline constexpr stream_reader_events fake_reader_events{
    fake_owner::data_received, fake_owner::get_buffer, fake_owner::release_buffer,
    fake_owner::buffer_updated, fake_owner::eof_received, fake_owner::read_failed,
    fake_owner::enter, fake_owner::leave, fake_owner::callback_failed, fake_owner::retain,
    fake_owner::release};

}  // namespace pyloop::testing
