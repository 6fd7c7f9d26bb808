// tests/cpp/file_io_test.cpp — file jobs: whole transfers, errors as errno, the descriptor's
// ownership, and delivery through the mailbox (or discard once it is closed).
#include "pyloop/file_io.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "pyloop/loop_driver.hpp"

namespace pyloop {
namespace {

// A file in a fresh temporary directory, removed with the fixture.
class FileJob : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pyloop-file-io-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/data";
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  void write_file(const std::string& content) {
    file_job job;
    job.op = file_op::write_path;
    job.path = path_;
    job.flags = O_WRONLY | O_CREAT | O_TRUNC;
    job.source = content.data();
    job.length = content.size();
    run_file_job(job);
    ASSERT_EQ(job.error, 0);
    ASSERT_EQ(job.transferred, content.size());
  }
  int open_fd() {
    file_job job;
    job.op = file_op::open;
    job.path = path_;
    job.flags = O_RDONLY;
    run_file_job(job);
    EXPECT_EQ(job.error, 0);
    job.owns_fd = false;  // taken
    return job.fd;
  }
  std::string dir_, path_;
};

int open_descriptors() {
  int n = 0;
  for (int fd = 0; fd < 1024; ++fd) n += ::fcntl(fd, F_GETFD) != -1;
  return n;
}

TEST_F(FileJob, ReadFillsTheCallersMemoryThenGoesPastItToTheEnd) {
  const std::string content(200000, 'x');
  write_file(content);
  const int fd = open_fd();
  std::string memory(1000, '\0');
  file_job job;
  job.op = file_op::read;
  job.fd = fd;
  job.offset = 0;
  job.data = memory.data();
  job.capacity = memory.size();
  job.to_end = true;
  job.close_after = true;
  run_file_job(job);
  EXPECT_EQ(job.error, 0);
  EXPECT_EQ(job.transferred, 1000u);
  EXPECT_EQ(job.overflow.size(), content.size() - 1000);
  EXPECT_EQ(job.position, static_cast<std::int64_t>(content.size()));
  EXPECT_EQ(job.fd, -1);
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1);  // closed on the worker
}

TEST_F(FileJob, ReadStopsAtTheLimitAndAtTheEnd) {
  write_file("hello world");
  const int fd = open_fd();
  char memory[4];
  file_job job;
  job.op = file_op::read;
  job.fd = fd;
  job.offset = 2;
  job.data = memory;
  job.capacity = sizeof memory;
  job.to_end = true;
  job.limit = 6;
  run_file_job(job);
  EXPECT_EQ(job.error, 0);
  EXPECT_EQ(std::string(memory, 4) + job.overflow, "llo wo");
  file_job rest;
  rest.op = file_op::read;
  rest.fd = fd;
  rest.offset = 8;
  rest.data = memory;
  rest.capacity = sizeof memory;
  run_file_job(rest);
  EXPECT_EQ(rest.transferred, 3u);  // short: the end of the file
  ::close(fd);
}

TEST_F(FileJob, ProcFilesReportNoSizeYetReadFully) {
  file_job job;
  job.op = file_op::open;
  job.path = "/proc/self/status";
  run_file_job(job);
  ASSERT_EQ(job.error, 0);
  EXPECT_EQ(job.info.st_size, 0);
  job.op = file_op::read;
  job.to_end = true;
  run_file_job(job);
  EXPECT_EQ(job.error, 0);
  EXPECT_NE(job.overflow.find("Pid:"), std::string::npos);
}

TEST_F(FileJob, ErrorsAreErrnoValues) {
  file_job missing;
  missing.op = file_op::open;
  missing.path = dir_ + "/missing";
  run_file_job(missing);
  EXPECT_EQ(missing.error, ENOENT);
  EXPECT_EQ(missing.fd, -1);

  file_job directory;
  directory.op = file_op::open;
  directory.path = dir_;
  const int before = open_descriptors();
  run_file_job(directory);
  EXPECT_EQ(directory.error, EISDIR);  // as built-in open() refuses a directory
  EXPECT_EQ(open_descriptors(), before);

  file_job stat;
  stat.op = file_op::stat;
  stat.path = dir_ + "/missing";
  run_file_job(stat);
  EXPECT_EQ(stat.error, ENOENT);
}

TEST_F(FileJob, AnOpenNobodyTookIsClosedWithTheJob) {
  write_file("x");
  const int before = open_descriptors();
  {
    file_job job;
    job.op = file_op::open;
    job.path = path_;
    run_file_job(job);
    ASSERT_EQ(job.error, 0);
    EXPECT_EQ(open_descriptors(), before + 1);
  }
  EXPECT_EQ(open_descriptors(), before);
}

TEST_F(FileJob, AppendWritesReportTheEndAsPosition) {
  write_file("abc");
  file_job open;
  open.op = file_op::open;
  open.path = path_;
  open.flags = O_WRONLY | O_APPEND;
  run_file_job(open);
  ASSERT_EQ(open.error, 0);
  file_job write;
  write.op = file_op::write;
  write.fd = open.fd;
  write.source = "defg";
  write.length = 4;
  run_file_job(write);
  EXPECT_EQ(write.error, 0);
  EXPECT_EQ(write.position, 7);
  file_job stat;
  stat.op = file_op::stat;
  stat.fd = open.fd;
  run_file_job(stat);
  EXPECT_EQ(stat.info.st_size, 7);
}

std::atomic<int> completed{0};
std::atomic<int> discarded{0};
callback_status on_done(void* payload) noexcept {
  delete static_cast<file_job*>(payload);
  ++completed;
  return callback_status::done;
}
std::atomic<int> orphaned{0};
void on_discard(void* payload) noexcept {
  auto* job = static_cast<file_job*>(payload);
  orphaned += job->orphaned;
  delete job;
  ++discarded;
}
const callback_ops ops{on_done, on_discard, nullptr, nullptr, nullptr};

TEST_F(FileJob, CompletesIntoTheLoop) {
  loop_driver loop;
  completed = 0;
  auto* job = new file_job;
  job->op = file_op::stat;
  job->path = dir_;
  submit_file_job(loop.mailbox(), job, &ops);
  while (completed == 0) loop.run_once();
  EXPECT_EQ(completed, 1);
}

TEST_F(FileJob, AClosedMailboxDiscardsTheJobOnTheWorker) {
  discarded = 0;
  write_file("x");
  const int before = open_descriptors();
  {
    loop_driver loop;
    auto* job = new file_job;
    job->op = file_op::open;
    job->path = path_;
    auto mailbox = loop.mailbox();
    mailbox->close();
    submit_file_job(mailbox, job, &ops);
    for (int i = 0; i < 500 && discarded == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(discarded, 1);
  EXPECT_EQ(orphaned, 1);  // told it has no loop thread
  EXPECT_EQ(open_descriptors(), before);  // the opened descriptor went with the job
}

}  // namespace
}  // namespace pyloop
