// tests/cpp/stream_reader_test.cpp — one read per readiness callback: copy and into_buffer modes.
#include "pyloop/stream_reader.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "pyloop/loop_driver.hpp"
#include "test_transport_owner.hpp"

namespace pyloop {
namespace {

using testing::fake_owner;
using testing::fake_reader_events;
using testing::pipe_pair;
using testing::run_turn;
using testing::run_until;
using testing::socket_pair;
using mode = stream_reader::mode;

// A reader on one end of a socket pair. Every test ends with the owner holding no reference.
class StreamReader : public ::testing::Test {
 protected:
  void TearDown() override {
    reader.reset();
    EXPECT_EQ(owner.refs, 0) << "owner references left";
  }
  void peer_writes(const std::string& data) {
    ASSERT_EQ(::write(sp.fds[1], data.data(), data.size()), static_cast<ssize_t>(data.size()));
  }
  // Bytes waiting unread on the reader's descriptor.
  std::size_t unread() {
    char buffer[256];
    const ssize_t n = ::recv(sp.fds[0], buffer, sizeof buffer, MSG_PEEK);
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  }
  // Runs non-blocking turns until `count` events arrived (20 turns at most); returns the turns.
  int turns_until_events(std::size_t count) {
    int turns = 0;
    while (owner.events.size() < count && turns < 20) {
      run_turn(loop);
      ++turns;
    }
    return turns;
  }

  loop_driver loop;  // the loop under test
  socket_pair sp;    // fds[0] is the transport's descriptor, fds[1] its peer
  fake_owner owner;  // the transport: records events and counts references
  // The reader under test (reset by tests that destroy it early).
  std::unique_ptr<stream_reader> reader = std::make_unique<stream_reader>(
      loop, sp.fds[0], descriptor_kind::socket, fake_reader_events, &owner);
};

// -- copy mode ----------------------------------------------------------------------------

TEST_F(StreamReader, CopyModeDeliversDataThroughTheLoopsReceiveBuffer) {
  ASSERT_FALSE(reader->start(mode::copy));
  EXPECT_TRUE(reader->reading());
  EXPECT_EQ(owner.refs, 1);  // the registry's reference
  int refs_during_event = 0;
  owner.on_event = [&](const std::string&) { refs_during_event = owner.refs; };
  peer_writes("hello");
  EXPECT_EQ(turns_until_events(1), 1);
  EXPECT_EQ(owner.events, (std::vector<std::string>{"data"}));
  EXPECT_EQ(owner.received, "hello");
  EXPECT_EQ(owner.last_data, loop.receive_buffer());
  EXPECT_EQ(refs_during_event, 2);  // plus the running dispatch's
  EXPECT_EQ(owner.refs, 1);
  EXPECT_EQ(owner.lent_buffers, 0);
}

TEST_F(StreamReader, CopyModeReadsOncePerReadinessCallback) {
  ASSERT_FALSE(reader->start(mode::copy));
  peer_writes("one");
  run_turn(loop);
  peer_writes("two");
  run_turn(loop);
  run_turn(loop);  // nothing left: nothing delivered
  EXPECT_EQ(owner.events, (std::vector<std::string>{"data", "data"}));
  EXPECT_EQ(owner.received, "onetwo");
}

TEST_F(StreamReader, EndOfStreamCallsEofReceived) {
  ASSERT_FALSE(reader->start(mode::copy));
  peer_writes("last");
  sp.close_peer();
  EXPECT_EQ(turns_until_events(2), 2);
  EXPECT_EQ(owner.events, (std::vector<std::string>{"data", "eof"}));
  EXPECT_EQ(owner.eofs, 1);
  EXPECT_EQ(owner.received, "last");
  reader->stop();  // as a transport does after end of stream
  EXPECT_EQ(owner.refs, 0);
}

// A peer closing with data it never read resets the connection: the next recv fails.
TEST_F(StreamReader, ReadErrorCallsReadFailed) {
  ASSERT_EQ(::write(sp.fds[0], "unread", 6), 6);
  sp.close_peer();
  ASSERT_FALSE(reader->start(mode::copy));
  EXPECT_EQ(turns_until_events(1), 1);
  EXPECT_EQ(owner.failed_error, ECONNRESET);
  EXPECT_EQ(owner.events,
            (std::vector<std::string>{"failed:" + std::string(strerror(ECONNRESET))}));
  EXPECT_EQ(owner.eofs, 0);
}

// -- into_buffer mode ---------------------------------------------------------------------

TEST_F(StreamReader, IntoBufferModeReceivesIntoTheOwnersBufferOverSeveralIterations) {
  ASSERT_FALSE(reader->start(mode::into_buffer));
  const std::string data = "abcdefghijklmnopqrst";  // 20 bytes: 8 + 8 + 4
  peer_writes(data);
  EXPECT_EQ(turns_until_events(3), 3);
  EXPECT_EQ(owner.events, (std::vector<std::string>{"updated", "updated", "updated"}));
  EXPECT_EQ(owner.received, data);
  EXPECT_EQ(owner.last_data, nullptr);  // data_received never ran
  EXPECT_EQ(owner.lent_buffers, 3);
  EXPECT_EQ(owner.released_buffers, 3);
}

TEST_F(StreamReader, ReleaseBufferFollowsEveryGetBufferThatLentMemory) {
  ASSERT_FALSE(reader->start(mode::into_buffer));
  peer_writes("xyz");
  sp.close_peer();
  EXPECT_EQ(turns_until_events(2), 2);
  EXPECT_EQ(owner.events, (std::vector<std::string>{"updated", "eof"}));
  EXPECT_EQ(owner.lent_buffers, 2);
  EXPECT_EQ(owner.released_buffers, 2);  // also after the read that found end of stream
}

TEST_F(StreamReader, ReleaseBufferFollowsAFailedReadIntoTheOwnersBuffer) {
  ASSERT_EQ(::write(sp.fds[0], "unread", 6), 6);
  sp.close_peer();
  ASSERT_FALSE(reader->start(mode::into_buffer));
  EXPECT_EQ(turns_until_events(1), 1);
  EXPECT_EQ(owner.failed_error, ECONNRESET);
  EXPECT_EQ(owner.lent_buffers, 1);
  EXPECT_EQ(owner.released_buffers, 1);
}

TEST_F(StreamReader, GetBufferLendingNothingMeansNoRead) {
  owner.lend_nothing = true;
  ASSERT_FALSE(reader->start(mode::into_buffer));
  peer_writes("data");
  for (int i = 0; i < 3; ++i) run_turn(loop);
  EXPECT_TRUE(owner.events.empty());
  EXPECT_EQ(owner.released_buffers, 0);
  EXPECT_EQ(owner.callback_failures, 0);  // a handled failure is not reported again
  EXPECT_EQ(unread(), 4u);
  owner.lend_nothing = false;
  EXPECT_EQ(turns_until_events(1), 1);
  EXPECT_EQ(owner.received, "data");
  EXPECT_EQ(owner.released_buffers, 1);
}

TEST_F(StreamReader, FailingGetBufferReadsNothingAndGoesToCallbackFailed) {
  ASSERT_FALSE(reader->start(mode::into_buffer));
  peer_writes("data");
  owner.fail_next = true;  // get_buffer fails, its error pending
  run_turn(loop);
  EXPECT_EQ(owner.callback_failures, 1);
  EXPECT_TRUE(owner.events.empty());
  EXPECT_EQ(owner.released_buffers, 0);
  EXPECT_EQ(unread(), 4u);
}

// -- installing and removing --------------------------------------------------------------

TEST_F(StreamReader, StartWhileReadingSwitchesTheModeWithoutAnotherReference) {
  ASSERT_FALSE(reader->start(mode::copy));
  peer_writes("0123456789");
  turns_until_events(1);
  EXPECT_EQ(owner.received, "0123456789");
  ASSERT_FALSE(reader->start(mode::into_buffer));
  EXPECT_EQ(owner.refs, 1);
  peer_writes("ABCDEFGHIJ");
  turns_until_events(3);
  EXPECT_EQ(owner.events, (std::vector<std::string>{"data", "updated", "updated"}));
  ASSERT_FALSE(reader->start(mode::copy));
  EXPECT_EQ(owner.refs, 1);
  peer_writes("back");
  turns_until_events(4);
  EXPECT_EQ(owner.events.back(), "data");
  EXPECT_EQ(owner.received, "0123456789ABCDEFGHIJback");
}

TEST_F(StreamReader, StopBeforeAQueuedDispatchRunsReadsNothing) {
  ASSERT_FALSE(reader->start(mode::copy));
  peer_writes("x");
  std::size_t queued_behind = 0;
  // Queued before the wait, so it runs before the dispatch the wait queues.
  run_turn(loop, [&] {
    queued_behind = loop.ready_count();
    reader->stop();
  });
  EXPECT_EQ(queued_behind, 1u);  // the reader's dispatch was queued
  EXPECT_FALSE(reader->reading());
  EXPECT_TRUE(owner.events.empty());
  EXPECT_EQ(unread(), 1u);
  EXPECT_EQ(owner.refs, 0);
}

TEST_F(StreamReader, RestartBeforeAQueuedDispatchRunsReadsOnceInTheNextTurn) {
  ASSERT_FALSE(reader->start(mode::copy));
  peer_writes("x");
  run_turn(loop, [&] {
    reader->stop();
    EXPECT_FALSE(reader->start(mode::copy));
  });
  EXPECT_TRUE(owner.events.empty());
  run_turn(loop);
  EXPECT_EQ(owner.events, (std::vector<std::string>{"data"}));
  EXPECT_EQ(owner.refs, 1);
}

TEST_F(StreamReader, StartOnAClosedLoopFailsWithEbadf) {
  loop.close();
  std::error_code ec = reader->start(mode::copy);
  EXPECT_EQ(ec.value(), EBADF);
  EXPECT_FALSE(reader->reading());
  EXPECT_EQ(owner.refs, 0);
}

TEST_F(StreamReader, StartOnADescriptorTheKernelRefusesReturnsItsError) {
  std::FILE* file = std::tmpfile();
  ASSERT_NE(file, nullptr);
  stream_reader on_file(loop, ::fileno(file), descriptor_kind::stream, fake_reader_events,
                        &owner);
  EXPECT_EQ(on_file.start(mode::copy).value(), EPERM);  // epoll refuses regular files
  EXPECT_FALSE(on_file.reading());
  EXPECT_EQ(owner.refs, 0);
  std::fclose(file);
}

TEST_F(StreamReader, StopReleasesTheOwnerReference) {
  ASSERT_FALSE(reader->start(mode::copy));
  reader->stop();
  reader->stop();  // idempotent
  EXPECT_FALSE(reader->reading());
  EXPECT_FALSE(loop.watching(sp.fds[0], io_watch::direction::read));
  EXPECT_EQ(owner.refs, 0);
}

TEST_F(StreamReader, DestroyingAReadingReaderReleasesTheOwner) {
  ASSERT_FALSE(reader->start(mode::copy));
  peer_writes("x");
  run_turn(loop, [&] { reader.reset(); });  // its dispatch is queued behind
  EXPECT_EQ(owner.refs, 0);
  EXPECT_TRUE(owner.events.empty());
  EXPECT_FALSE(loop.watching(sp.fds[0], io_watch::direction::read));
}

TEST_F(StreamReader, ClosingTheLoopStopsTheReader) {
  ASSERT_FALSE(reader->start(mode::copy));
  loop.close();
  EXPECT_FALSE(reader->reading());
  EXPECT_EQ(owner.refs, 0);
}

TEST_F(StreamReader, StoppingTheReaderLeavesAWriteWatchOnTheSameDescriptor) {
  ASSERT_FALSE(reader->start(mode::copy));
  fake_owner writer_owner;
  stream_writer writer(loop, sp.fds[0], descriptor_kind::socket, testing::fake_writer_events,
                       &writer_owner);
  sp.shrink_buffers();
  sp.fill();
  EXPECT_EQ(writer.write("w", 1, nullptr), write_outcome::ok);  // blocked: watched
  ASSERT_TRUE(writer.waiting());
  reader->stop();
  EXPECT_TRUE(loop.watching(sp.fds[0], io_watch::direction::write));
  EXPECT_FALSE(loop.watching(sp.fds[0], io_watch::direction::read));
  peer_writes("r");
  run_turn(loop);
  EXPECT_TRUE(owner.events.empty());  // the read interest went with the reader
  writer.discard(false);
  EXPECT_EQ(writer_owner.refs, 0);
}

// -- events that fail ---------------------------------------------------------------------

TEST_F(StreamReader, AFailingEventGoesToCallbackFailed) {
  ASSERT_FALSE(reader->start(mode::copy));
  peer_writes("x");
  owner.fail_next = true;  // data_received leaves an error pending
  EXPECT_EQ(run_turn(loop), run_status::stopped);  // callback_failed asked to go on
  EXPECT_EQ(owner.events, (std::vector<std::string>{"data"}));
  EXPECT_EQ(owner.callback_failures, 1);
  EXPECT_EQ(owner.refs, 1);
}

TEST_F(StreamReader, CallbackFailedAskingToAbortEndsTheIteration) {
  ASSERT_FALSE(reader->start(mode::into_buffer));
  peer_writes("x");
  owner.on_event = [&](const std::string& name) {
    if (name == "updated") owner.fail_next = true;  // buffer_updated leaves an error pending
  };
  owner.failure_status = callback_status::abort;
  EXPECT_EQ(run_turn(loop), run_status::aborted);
  EXPECT_EQ(owner.callback_failures, 1);
  EXPECT_EQ(owner.released_buffers, 1);
}

// -- pipes --------------------------------------------------------------------------------

TEST(PipeStreamReader, PipeIsReadWithReadUntilEndOfStream) {
  loop_driver loop;
  pipe_pair pp;
  fake_owner owner;
  {
    stream_reader reader(loop, pp.fds[0], descriptor_kind::stream, fake_reader_events, &owner);
    ASSERT_FALSE(reader.start(mode::copy));
    ASSERT_EQ(::write(pp.fds[1], "piped", 5), 5);
    ::close(pp.fds[1]);
    pp.fds[1] = -1;
    for (int i = 0; i < 20 && owner.eofs == 0; ++i) run_turn(loop);
    EXPECT_EQ(owner.events, (std::vector<std::string>{"data", "eof"}));
    EXPECT_EQ(owner.received, "piped");
  }
  EXPECT_EQ(owner.refs, 0);
}

// A pty's master, read as a pipe transport reads it: the slave's bytes, then EIO (not an end of
// stream) once the slave is closed; asyncio's pipe transport ends on that EIO quietly.
TEST(PipeStreamReader, PtyMasterReadsEioOnceTheSlaveIsClosed) {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK);
  ASSERT_GE(master, 0);
  ASSERT_EQ(::grantpt(master), 0);
  ASSERT_EQ(::unlockpt(master), 0);
  const int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY);
  ASSERT_GE(slave, 0);
  loop_driver loop;
  fake_owner owner;
  {
    stream_reader reader(loop, master, descriptor_kind::stream, fake_reader_events, &owner);
    ASSERT_FALSE(reader.start(mode::copy));
    ASSERT_EQ(::write(slave, "tty", 3), 3);
    run_until(loop, [&] { return owner.received.size() >= 3; });
    EXPECT_EQ(owner.received, "tty");
    ::close(slave);
    run_until(loop, [&] { return owner.failed_error != 0; });
    EXPECT_EQ(owner.failed_error, EIO);
    EXPECT_EQ(owner.eofs, 0);
  }
  ::close(master);
  EXPECT_EQ(owner.refs, 0);
}

}  // namespace
}  // namespace pyloop
