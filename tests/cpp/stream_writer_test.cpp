// tests/cpp/stream_writer_test.cpp — coalescing, write pattern, partial sends, water marks, errors.
#include "pyloop/stream_writer.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>
#if !defined(__SANITIZE_ADDRESS__)
#include <malloc.h>
#endif

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pyloop/loop_driver.hpp"
#include "test_transport_owner.hpp"

#if defined(__SANITIZE_ADDRESS__)
// AddressSanitizer's allocator (sanitizer/allocator_interface.h, which GCC does not ship).
extern "C" std::size_t __sanitizer_get_current_allocated_bytes();
#endif

namespace pyloop {
namespace {

using testing::fake_owner;
using testing::fake_writer_events;
using testing::flush_writers_at_end_of_turn;
using testing::pipe_pair;
using testing::run_turn;
using testing::socket_pair;

// Bytes that differ from their neighbours, so that a lost, repeated or reordered piece shows.
std::string pattern(std::size_t size, char salt = 0) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) {
    s[i] = static_cast<char>('a' + (i * 7 + i / 251 + static_cast<std::size_t>(salt)) % 26);
  }
  return s;
}

bool is_failure(const std::string& event) { return event.rfind("failed:", 0) == 0; }

// Bytes the allocator has handed out and not taken back.
std::size_t heap_in_use() {
#if defined(__SANITIZE_ADDRESS__)
  return __sanitizer_get_current_allocated_bytes();
#else
  const struct mallinfo2 info = ::mallinfo2();
  return info.uordblks + info.hblkhd;  // from the heap, and mapped on their own (large)
#endif
}

// A writer on one end of a socket pair, in a loop whose end of turn flushes writers (as the
// bindings' hook does). Every test ends with the owner holding no reference and no chunk.
class StreamWriter : public ::testing::Test {
 protected:
  void SetUp() override { flush_writers_at_end_of_turn(loop); }
  void TearDown() override {
    writer.reset();
    if (check_references_at_end) {
      EXPECT_EQ(owner.refs, 0) << "owner references left";
      EXPECT_EQ(owner.kept, 0) << "kept chunks left";
    }
  }

  // With `keep`, the bytes must stay valid until the chunk is released: string literals or
  // named buffers, never a temporary.
  write_outcome write(std::string_view data, void* keep = nullptr) {
    return writer->write(data.data(), data.size(), keep);
  }
  // Non-blocking turns, reading what the peer can between them, until done() (10,000 at most).
  template <class Done>
  std::string pump(Done done) {
    std::string got;
    for (int i = 0; i < 10000 && !done(); ++i) {
      got += sp.drain_peer();
      run_turn(loop);
    }
    return got + sp.drain_peer();
  }
  bool drained() const {
    return !owner.events.empty() && owner.events.back() == "drained";
  }

  loop_driver loop;  // the loop under test, flushing writers at the end of each turn
  socket_pair sp;    // fds[0] is the transport's descriptor, fds[1] its peer
  fake_owner owner;  // the transport: records events and counts references
  bool check_references_at_end = true;  // TearDown's reference check applies
  // The writer under test (reset by tests that destroy it early).
  std::unique_ptr<stream_writer> writer = std::make_unique<stream_writer>(
      loop, sp.fds[0], descriptor_kind::socket, fake_writer_events, &owner);
};

// -- coalescing -----------------------------------------------------------------------------

TEST_F(StreamWriter, TwoWritesInOneTurnCostOneSendAtTheEndOfTheTurn) {
  std::uint64_t sends_inside = 99;
  std::string peer_inside = "?";
  run_turn(loop, [&] {
    EXPECT_EQ(write("head:"), write_outcome::ok);
    EXPECT_EQ(write("body"), write_outcome::ok);
    sends_inside = loop.sends();
    peer_inside = sp.drain_peer();
    EXPECT_EQ(writer->size(), 9u);
    EXPECT_EQ(owner.refs, 1);  // the flush list's reference, taken once
  });
  EXPECT_EQ(sends_inside, 0u);
  EXPECT_EQ(peer_inside, "");
  EXPECT_EQ(loop.sends(), 1u);
  EXPECT_EQ(sp.drain_peer(), "head:body");
  EXPECT_EQ(writer->size(), 0u);
  EXPECT_EQ(owner.refs, 0);
  EXPECT_TRUE(owner.events.empty());
}

TEST_F(StreamWriter, QueuedWritesWaitForFlushWriters) {
  loop.set_hooks(loop_hooks{});  // no end-of-turn hook: nothing sends the queue
  run_turn(loop, [&] {
    write("a");
    write("b");
  });
  EXPECT_EQ(loop.sends(), 0u);
  EXPECT_EQ(sp.drain_peer(), "");
  EXPECT_EQ(owner.refs, 1);  // still listed
  int failures = 0;
  EXPECT_TRUE(loop.flush_writers([&](stream_writer&, write_outcome) {
    ++failures;
    return true;
  }));
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(loop.sends(), 1u);
  EXPECT_EQ(sp.drain_peer(), "ab");
  EXPECT_EQ(owner.refs, 0);
  EXPECT_TRUE(loop.flush_writers([](stream_writer&, write_outcome) { return false; }));
  EXPECT_EQ(loop.sends(), 1u);  // the list was emptied
}

TEST_F(StreamWriter, WriteOutsideARunningLoopIsSentAtOnce) {
  ASSERT_FALSE(loop.running());
  EXPECT_EQ(write("now"), write_outcome::ok);
  EXPECT_EQ(loop.sends(), 1u);
  EXPECT_EQ(sp.drain_peer(), "now");
  EXPECT_EQ(writer->size(), 0u);
  EXPECT_EQ(owner.refs, 0);  // never listed
}

TEST_F(StreamWriter, EmptyWriteQueuesAndSendsNothing) {
  run_turn(loop, [&] {
    EXPECT_EQ(writer->write("", 0, nullptr), write_outcome::ok);
    EXPECT_EQ(owner.refs, 0);
  });
  EXPECT_EQ(loop.sends(), 0u);
  EXPECT_EQ(writer->size(), 0u);
}

TEST_F(StreamWriter, SeventyChunksInOneTurnTakeTwoSends) {
  std::string expected;
  run_turn(loop, [&] {
    for (int i = 0; i < 70; ++i) {
      const std::string piece = std::to_string(i) + ",";
      expected += piece;
      write(piece);
    }
  });
  EXPECT_EQ(loop.sends(), 2u);  // max_write_buffers (64) per sendmsg
  EXPECT_EQ(sp.drain_peer(), expected);
}

TEST_F(StreamWriter, WritelinesQueuesThePiecesAndSendsThemTogether) {
  run_turn(loop, [&] {
    const bool at_once = writer->begin_writes();
    EXPECT_FALSE(at_once);  // a fresh writer coalesces
    const std::size_t before = writer->size();
    writer->queue("one,", 4, nullptr);
    writer->queue("two,", 4, &owner.kept);
    writer->queue("", 0, &owner.kept);  // nothing queued, nothing retained
    writer->queue("three", 5, nullptr);
    EXPECT_EQ(owner.kept, 1);
    EXPECT_EQ(writer->finish_writes(before, at_once), write_outcome::ok);
    EXPECT_EQ(loop.sends(), 0u);
  });
  EXPECT_EQ(loop.sends(), 1u);
  EXPECT_EQ(sp.drain_peer(), "one,two,three");
  EXPECT_EQ(owner.kept, 0);
}

// -- the write pattern --------------------------------------------------------------------

// One write per turn, n turns in a row: returns the sends made inside write() each turn.
std::vector<std::uint64_t> single_write_turns(loop_driver& loop, stream_writer& w, int turns) {
  std::vector<std::uint64_t> sent_inside;
  for (int i = 0; i < turns; ++i) {
    run_turn(loop, [&] {
      const std::uint64_t before = loop.sends();
      EXPECT_EQ(w.write("x", 1, nullptr), write_outcome::ok);
      sent_inside.push_back(loop.sends() - before);
    });
  }
  return sent_inside;
}

TEST_F(StreamWriter, AfterTwoTurnsWithOneWriteTheFirstWriteOfATurnIsSentInsideWrite) {
  EXPECT_EQ(single_write_turns(loop, *writer, 2), (std::vector<std::uint64_t>{0, 0}));
  EXPECT_EQ(loop.sends(), 2u);  // each sent at its turn's end
  EXPECT_EQ(sp.drain_peer(), "xx");
  std::string peer_inside;
  run_turn(loop, [&] {
    write("now");
    EXPECT_EQ(loop.sends(), 3u);
    EXPECT_EQ(writer->size(), 0u);
    peer_inside = sp.drain_peer();
    EXPECT_EQ(owner.refs, 0);  // not listed
  });
  EXPECT_EQ(peer_inside, "now");
  EXPECT_EQ(loop.sends(), 3u);
}

TEST_F(StreamWriter, SecondWriteInATurnIsQueuedAndResetsThePattern) {
  single_write_turns(loop, *writer, 2);
  run_turn(loop, [&] {
    write("1");
    EXPECT_EQ(loop.sends(), 3u);  // the first goes out at once
    write("2");
    write("3");
    EXPECT_EQ(loop.sends(), 3u);  // the rest of the burst waits
    EXPECT_EQ(writer->size(), 2u);
  });
  EXPECT_EQ(loop.sends(), 4u);  // one send for "23"
  EXPECT_EQ(sp.drain_peer(), "xx123");
  // Back to coalescing until two more turns with one write each.
  EXPECT_EQ(single_write_turns(loop, *writer, 3), (std::vector<std::uint64_t>{0, 0, 1}));
}

TEST_F(StreamWriter, TurnsWithoutWritesDoNotBreakTheRunOfSingleWrites) {
  single_write_turns(loop, *writer, 1);
  run_turn(loop);
  run_turn(loop);
  EXPECT_EQ(single_write_turns(loop, *writer, 2), (std::vector<std::uint64_t>{0, 1}));
}

// -- large and kept buffers ---------------------------------------------------------------

TEST_F(StreamWriter, LargeBorrowedBufferToAnIdleWriterIsSentInsideWrite) {
  const std::string big = pattern(stream_writer::send_now_threshold);
  run_turn(loop, [&] {
    EXPECT_EQ(write(big), write_outcome::ok);
    EXPECT_EQ(loop.sends(), 1u);
    EXPECT_EQ(writer->size(), 0u);  // nothing queued: nothing copied
    EXPECT_EQ(owner.refs, 0);
  });
  EXPECT_EQ(loop.sends(), 1u);
  EXPECT_EQ(sp.drain_peer(), big);
}

TEST_F(StreamWriter, BorrowedBufferBelowTheThresholdIsCopiedAndCoalesced) {
  std::string buffer(stream_writer::send_now_threshold - 1, 'a');
  run_turn(loop, [&] {
    write(buffer);
    buffer.assign(buffer.size(), 'z');  // the caller reuses its buffer after write()
    EXPECT_EQ(loop.sends(), 0u);
  });
  EXPECT_EQ(loop.sends(), 1u);
  EXPECT_EQ(sp.drain_peer(), std::string(stream_writer::send_now_threshold - 1, 'a'));
}

TEST_F(StreamWriter, LargeBorrowedBufferToABusyWriterIsCopiedAndCoalesced) {
  std::string big(stream_writer::send_now_threshold, 'b');
  run_turn(loop, [&] {
    write("header;");
    write(big);
    big.assign(big.size(), 'z');
    EXPECT_EQ(loop.sends(), 0u);
  });
  EXPECT_EQ(loop.sends(), 1u);
  EXPECT_EQ(sp.drain_peer(), "header;" + std::string(stream_writer::send_now_threshold, 'b'));
}

TEST_F(StreamWriter, KeptChunkIsQueuedByReferenceAndReleasedOnceSent) {
  std::string big(stream_writer::send_now_threshold, 'k');
  run_turn(loop, [&] {
    write(big, &owner.kept);
    EXPECT_EQ(owner.kept, 1);
    EXPECT_EQ(loop.sends(), 0u);  // a kept buffer is not sent at once for its size
    // Changing it shows that the queue refers to it rather than to a copy.
    big.assign(big.size(), 'K');
  });
  EXPECT_EQ(owner.kept, 0);
  EXPECT_EQ(sp.drain_peer(), std::string(stream_writer::send_now_threshold, 'K'));
}

// -- partial sends, writability, water marks ----------------------------------------------

TEST_F(StreamWriter, PartialSendLeavesTheRestQueuedAndWatchedForWritability) {
  sp.shrink_buffers();
  const std::string big = pattern(200 * 1024);
  run_turn(loop, [&] {
    EXPECT_EQ(write(big), write_outcome::ok);
    EXPECT_EQ(loop.sends(), 1u);
    EXPECT_GT(writer->size(), 0u);
    EXPECT_LT(writer->size(), big.size());
  });
  EXPECT_TRUE(writer->waiting());
  EXPECT_TRUE(loop.watching(sp.fds[0], io_watch::direction::write));
  EXPECT_EQ(owner.refs, 1);  // the watch's reference
  const std::string got = pump([&] { return drained(); });
  EXPECT_EQ(got.size(), big.size());
  EXPECT_TRUE(got == big) << "the peer received other bytes than were written";
  EXPECT_EQ(writer->size(), 0u);
  EXPECT_FALSE(writer->waiting());
  EXPECT_FALSE(loop.watching(sp.fds[0], io_watch::direction::write));
  EXPECT_EQ(owner.refs, 0);
}

TEST_F(StreamWriter, PartiallySentChunksResumeWhereTheKernelStopped) {
  sp.shrink_buffers();
  sp.fill();
  std::string expected;
  std::vector<std::string> pieces;  // the kept ones must outlive the queue
  for (int i = 0; i < 100; ++i) {
    pieces.push_back(pattern(1000 + 37 * i, static_cast<char>(i)));
    expected += pieces.back();
  }
  run_turn(loop, [&] {
    for (int i = 0; i < 100; ++i) write(pieces[i], i % 2 ? &owner.kept : nullptr);
  });
  EXPECT_TRUE(writer->waiting());
  EXPECT_EQ(owner.kept, 50);
  const std::string got = pump([&] { return drained(); });
  ASSERT_GE(got.size(), expected.size());
  EXPECT_TRUE(got.compare(got.size() - expected.size(), expected.size(), expected) == 0);
  EXPECT_EQ(owner.kept, 0);
}

TEST_F(StreamWriter, QueueAboveHighWaterIsSentInsideWrite) {
  writer->set_limits(8, 2);
  run_turn(loop, [&] {
    write("0123");
    EXPECT_EQ(loop.sends(), 0u);
    write("456789");  // 10 bytes queued > 8
    EXPECT_EQ(loop.sends(), 1u);
    EXPECT_EQ(writer->size(), 0u);
  });
  EXPECT_TRUE(owner.events.empty());  // the kernel took it all: no pause
  EXPECT_EQ(sp.drain_peer(), "0123456789");
}

TEST_F(StreamWriter, QueueLeftAboveHighWaterReportsAboveHighWaterInsideWrite) {
  sp.shrink_buffers();
  const std::size_t filled = sp.fill();
  writer->set_limits(100, 10);
  run_turn(loop, [&] {
    write(pattern(50));
    EXPECT_TRUE(owner.events.empty());
    write(pattern(200));  // above 100, and the kernel takes nothing
    EXPECT_EQ(owner.events, (std::vector<std::string>{"high"}));
    EXPECT_TRUE(writer->waiting());
    EXPECT_EQ(writer->size(), 250u);
    write(pattern(5));  // still above, while waiting for writability
    EXPECT_EQ(owner.events, (std::vector<std::string>{"high", "high"}));
  });
  const std::string got = pump([&] { return drained(); });
  EXPECT_EQ(got.size(), filled + 255);
  EXPECT_EQ(owner.events.back(), "drained");
  EXPECT_EQ(owner.refs, 0);
}

TEST_F(StreamWriter, AtLowWaterIsReportedOnlyOnceTheQueueIsAtOrBelowTheLowWaterMark) {
  sp.shrink_buffers();
  sp.fill();
  writer->set_limits(64 * 1024, 16 * 1024);
  std::vector<std::size_t> sizes_at_low;
  owner.on_event = [&](const std::string& name) {
    if (name == "low") sizes_at_low.push_back(writer->size());
  };
  const std::string data = pattern(100 * 1024);
  run_turn(loop, [&] { write(data, &owner.kept); });
  ASSERT_EQ(owner.events, (std::vector<std::string>{"high"}));
  pump([&] { return drained(); });
  ASSERT_FALSE(sizes_at_low.empty());
  for (std::size_t size : sizes_at_low) EXPECT_LE(size, 16u * 1024);
  // high, then low (each writable turn at or below the mark), then drained.
  EXPECT_EQ(owner.events.front(), "high");
  EXPECT_EQ(owner.events.back(), "drained");
  for (std::size_t i = 1; i + 1 < owner.events.size(); ++i) EXPECT_EQ(owner.events[i], "low");
}

TEST_F(StreamWriter, AnEventFailingInTheWritabilityCallbackGoesToCallbackFailed) {
  sp.shrink_buffers();
  sp.fill();
  run_turn(loop, [&] { write("tail"); });
  ASSERT_TRUE(writer->waiting());
  owner.on_event = [&](const std::string& name) {
    if (name == "low") owner.fail_next = true;  // at_low_water fails, left pending
  };
  owner.failure_status = callback_status::abort;
  run_status last = run_status::stopped;
  for (int i = 0; i < 10000 && owner.callback_failures == 0; ++i) {
    sp.drain_peer();
    last = run_turn(loop);
  }
  EXPECT_EQ(owner.callback_failures, 1);
  EXPECT_EQ(last, run_status::aborted);  // callback_failed asked to abort
  // at_low_water failed: the callback stopped before it could end the watch.
  EXPECT_EQ(owner.events, (std::vector<std::string>{"low"}));
  EXPECT_EQ(owner.refs, writer->waiting() ? 1 : 0);
}

TEST_F(StreamWriter, AboveHighWaterFailingMakesWriteReturnOwnerFailed) {
  sp.shrink_buffers();
  sp.fill();
  writer->set_limits(4, 1);
  owner.fail_next = true;
  run_turn(loop, [&] { EXPECT_EQ(write("0123456789"), write_outcome::owner_failed); });
  EXPECT_EQ(owner.events, (std::vector<std::string>{"high"}));
  writer->discard(false);
}

// -- failures -----------------------------------------------------------------------------

TEST_F(StreamWriter, EndOfTurnSendToAClosedPeerReportsWriteFailedAndDropsTheQueue) {
  run_turn(loop, [&] {
    write("kept", &owner.kept);
    write("copied");
    sp.close_peer();
  });
  EXPECT_EQ(owner.failed_error, EPIPE);
  EXPECT_EQ(owner.events, (std::vector<std::string>{"failed:" + std::string(strerror(EPIPE))}));
  EXPECT_EQ(writer->size(), 0u);
  EXPECT_EQ(owner.kept, 0);
  EXPECT_EQ(owner.refs, 0);
}

TEST_F(StreamWriter, WriteToAClosedPeerOutsideTheLoopReportsWriteFailed) {
  sp.close_peer();
  EXPECT_EQ(write("x"), write_outcome::ok);  // the failure went to write_failed
  EXPECT_EQ(owner.failed_error, EPIPE);
  owner.fail_next = true;  // write_failed leaves an error pending
  EXPECT_EQ(write("y", &owner.kept), write_outcome::owner_failed);
  EXPECT_EQ(owner.events.size(), 2u);
  EXPECT_EQ(writer->size(), 0u);
}

TEST_F(StreamWriter, PeerClosingWhileWaitingForWritabilityReportsWriteFailed) {
  sp.shrink_buffers();
  sp.fill();
  const std::string data = pattern(10000);
  run_turn(loop, [&] { write(data, &owner.kept); });
  ASSERT_TRUE(writer->waiting());
  ASSERT_EQ(owner.refs, 1);
  sp.close_peer();  // with unread data: ECONNRESET or EPIPE
  for (int i = 0; i < 100 && owner.failed_error == 0; ++i) run_turn(loop);
  EXPECT_TRUE(owner.failed_error == EPIPE || owner.failed_error == ECONNRESET)
      << strerror(owner.failed_error);
  ASSERT_EQ(owner.events.size(), 1u);
  EXPECT_TRUE(is_failure(owner.events[0]));
  EXPECT_FALSE(writer->waiting());
  EXPECT_FALSE(loop.watching(sp.fds[0], io_watch::direction::write));
  EXPECT_EQ(writer->size(), 0u);
  EXPECT_EQ(owner.kept, 0);
  EXPECT_EQ(owner.refs, 0);
}

// -- discard ------------------------------------------------------------------------------

TEST_F(StreamWriter, DiscardWithSendFirstHandsTheQueueToTheKernel) {
  run_turn(loop, [&] {
    write("abc", &owner.kept);
    write("def");
    writer->discard(true);
    EXPECT_EQ(loop.sends(), 1u);
    EXPECT_EQ(writer->size(), 0u);
    EXPECT_EQ(owner.kept, 0);
  });
  EXPECT_EQ(sp.drain_peer(), "abcdef");
  EXPECT_EQ(loop.sends(), 1u);  // the end-of-turn flush found nothing to send
}

TEST_F(StreamWriter, DiscardWithoutSendingDropsTheQueue) {
  run_turn(loop, [&] {
    write("abc", &owner.kept);
    write("def");
    writer->discard(false);
    EXPECT_EQ(writer->size(), 0u);
    EXPECT_EQ(owner.kept, 0);
  });
  EXPECT_EQ(sp.drain_peer(), "");
  EXPECT_EQ(loop.sends(), 0u);
}

TEST_F(StreamWriter, DiscardWhileWaitingDropsTheQueueAndTheWatch) {
  sp.shrink_buffers();
  const std::size_t filled = sp.fill();
  run_turn(loop, [&] { write("abc", &owner.kept); });
  ASSERT_TRUE(writer->waiting());
  writer->discard(true);  // the kernel would not take it: nothing is tried
  EXPECT_FALSE(writer->waiting());
  EXPECT_FALSE(loop.watching(sp.fds[0], io_watch::direction::write));
  EXPECT_EQ(writer->size(), 0u);
  EXPECT_EQ(owner.kept, 0);
  EXPECT_EQ(owner.refs, 0);
  EXPECT_EQ(sp.drain_peer().size(), filled);
  run_turn(loop);
  EXPECT_TRUE(owner.events.empty());
}

// A transport under steady back-pressure (a download to a slow client) keeps a queue that
// rises and falls without ever emptying. What the kernel took must not stay on the books.
TEST_F(StreamWriter, QueueThatNeverEmptiesKeepsItsBookkeepingBounded) {
  sp.shrink_buffers();
  writer->set_limits(std::size_t{1} << 30, 0);  // no water-mark events
  const std::string piece(100, 'p');
  std::size_t delivered = 0;
  auto iterations = [&](int count) {
    for (int i = 0; i < count; ++i) {
      while (writer->size() < 30000) write(piece);  // outside the loop: sent or queued
      delivered += sp.drain_peer().size();
      run_turn(loop);  // the watch sends what the kernel takes, never the whole queue
      ASSERT_GT(writer->size(), 0u);
    }
  };
  iterations(200);
  const std::size_t heap_before = heap_in_use();
  const std::size_t delivered_before = delivered;
  iterations(3000);
  const std::size_t growth = heap_in_use() - std::min(heap_in_use(), heap_before);
  const std::size_t chunks_sent = (delivered - delivered_before) / piece.size();
  ASSERT_GT(chunks_sent, 30000u) << "too little went through to tell";
  EXPECT_LT(growth, std::size_t{1} << 20);
  writer->discard(false);
}

// -- lifetime -----------------------------------------------------------------------------

TEST_F(StreamWriter, DestroyingAWriterWhileWaitingReleasesTheWatch) {
  sp.shrink_buffers();
  sp.fill();
  run_turn(loop, [&] { write("abc", &owner.kept); });
  ASSERT_TRUE(writer->waiting());
  writer.reset();
  EXPECT_FALSE(loop.watching(sp.fds[0], io_watch::direction::write));
  EXPECT_EQ(owner.refs, 0);
  EXPECT_EQ(owner.kept, 0);
  sp.drain_peer();
  run_turn(loop);  // the descriptor is writable now: nothing may run for it
  EXPECT_TRUE(owner.events.empty());
}

TEST_F(StreamWriter, DestroyingAListedWriterReleasesTheFlushListReference) {
  run_turn(loop, [&] {
    write("abc", &owner.kept);
    ASSERT_EQ(owner.refs, 1);
    writer.reset();
  });
  EXPECT_EQ(owner.kept, 0);
  EXPECT_EQ(sp.drain_peer(), "");
  EXPECT_EQ(owner.refs, 0);
}

TEST_F(StreamWriter, WriterDestroyedDuringTheFlushByAnEarlierWritersEventIsNotUsedAgain) {
  check_references_at_end = false;
  socket_pair other;
  fake_owner other_owner;
  auto second = std::make_unique<stream_writer>(loop, other.fds[0], descriptor_kind::socket,
                                                fake_writer_events, &other_owner);
  owner.on_event = [&](const std::string& name) {
    if (is_failure(name)) second.reset();  // e.g. a proxy tearing down both sides
  };
  run_turn(loop, [&] {
    write("first");
    second->write("second", 6, &other_owner.kept);
    sp.close_peer();  // the first writer's flush fails
  });
  EXPECT_EQ(second, nullptr);
  EXPECT_EQ(other.drain_peer(), "");
  EXPECT_EQ(other_owner.kept, 0);
  EXPECT_EQ(other_owner.refs, 0);
  EXPECT_EQ(owner.refs, 0);
}

TEST_F(StreamWriter, ClosingTheLoopReleasesTheWatchAndTheFlushList) {
  socket_pair other;
  fake_owner other_owner;
  stream_writer listed(loop, other.fds[0], descriptor_kind::socket, fake_writer_events,
                       &other_owner);
  sp.shrink_buffers();
  sp.fill();
  loop.set_hooks(loop_hooks{});  // keep the listed writer listed past the turn
  run_turn(loop, [&] {
    write(pattern(stream_writer::send_now_threshold));  // sent at once, blocked: watched
    EXPECT_TRUE(writer->waiting());
    listed.write("listed", 6, &other_owner.kept);
  });
  ASSERT_EQ(other_owner.refs, 1);
  loop.close();
  EXPECT_FALSE(writer->waiting());
  EXPECT_EQ(owner.refs, 0);
  EXPECT_EQ(other_owner.refs, 0);
  EXPECT_EQ(other.drain_peer(), "");  // never flushed
  listed.discard(false);
  EXPECT_EQ(other_owner.kept, 0);
}

TEST_F(StreamWriter, WriteThatMustWaitOnAClosedLoopReturnsLoopClosed) {
  sp.shrink_buffers();
  sp.fill();
  loop.close();
  EXPECT_EQ(write("abc", &owner.kept), write_outcome::loop_closed);
  EXPECT_FALSE(writer->waiting());
  EXPECT_EQ(writer->size(), 3u);  // kept until discarded or destroyed
  EXPECT_EQ(owner.refs, 0);
  EXPECT_EQ(owner.kept, 1);
}

TEST_F(StreamWriter, WriteOnAClosedLoopThatTheKernelTakesIsSent) {
  loop.close();
  EXPECT_EQ(write("still"), write_outcome::ok);
  EXPECT_EQ(sp.drain_peer(), "still");
}

// -- pipes --------------------------------------------------------------------------------

class PipeStreamWriter : public ::testing::Test {
 protected:
  void SetUp() override { flush_writers_at_end_of_turn(loop); }
  loop_driver loop;  // the loop under test
  pipe_pair pp;      // fds[1] is the transport's descriptor, fds[0] its reader
  fake_owner owner;  // the transport: records events and counts references
};

std::string read_pipe(int fd) {
  std::string got;
  char buffer[65536];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof buffer)) > 0) got.append(buffer, static_cast<size_t>(n));
  return got;
}

TEST_F(PipeStreamWriter, PipeWritesAreCoalescedAndSentWithWrite) {
  stream_writer w(loop, pp.fds[1], descriptor_kind::stream, fake_writer_events, &owner);
  run_turn(loop, [&] {
    w.write("pi", 2, nullptr);
    w.write("pe", 2, &owner.kept);
  });
  EXPECT_EQ(loop.sends(), 1u);
  EXPECT_EQ(read_pipe(pp.fds[0]), "pipe");
  EXPECT_EQ(owner.refs, 0);
  EXPECT_EQ(owner.kept, 0);
}

TEST_F(PipeStreamWriter, FullPipeWaitsForWritabilityAndDeliversEverything) {
  ASSERT_GE(::fcntl(pp.fds[1], F_SETPIPE_SZ, 4096), 0);
  stream_writer w(loop, pp.fds[1], descriptor_kind::stream, fake_writer_events, &owner);
  const std::string data = pattern(100 * 1024);
  run_turn(loop, [&] { EXPECT_EQ(w.write(data.data(), data.size(), nullptr), write_outcome::ok); });
  EXPECT_TRUE(w.waiting());
  EXPECT_EQ(owner.refs, 1);
  std::string got;
  for (int i = 0; i < 10000 && (owner.events.empty() || owner.events.back() != "drained"); ++i) {
    got += read_pipe(pp.fds[0]);
    run_turn(loop);
  }
  got += read_pipe(pp.fds[0]);
  EXPECT_TRUE(got == data);
  EXPECT_EQ(owner.events.front(), "high");
  EXPECT_EQ(owner.events.back(), "drained");
  EXPECT_FALSE(w.waiting());
  EXPECT_EQ(owner.refs, 0);
}

}  // namespace
}  // namespace pyloop
