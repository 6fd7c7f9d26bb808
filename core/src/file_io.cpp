// core/src/file_io.cpp — the file system calls of file_job, run on a worker of the native
// runtime: whole transfers (short reads and writes continued, EINTR retried).
#include "pyloop/file_io.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "pyloop/blocking_pool.hpp"

namespace pyloop {
namespace {

// Bytes read at a time past the expected size (into a buffer on the worker's stack).
constexpr std::size_t overflow_chunk = 64 * 1024;

int open_retrying(const char* path, int flags, unsigned mode) noexcept {
  int fd;
  do {
    fd = ::open(path, flags | O_CLOEXEC, static_cast<mode_t>(mode));
  } while (fd < 0 && errno == EINTR);
  return fd;
}

// One read of up to n bytes at the job's position (its offset, or the descriptor's).
ssize_t read_some(const file_job& job, char* into, std::size_t n, std::size_t done) noexcept {
  ssize_t got;
  do {
    got = job.offset >= 0 ? ::pread(job.fd, into, n, job.offset + static_cast<off_t>(done))
                          : ::read(job.fd, into, n);
  } while (got < 0 && errno == EINTR);
  return got;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older kernels refuse it (EINVAL), harmlessly
#endif

// Large destinations are fresh pages from the allocator (mmap): faulting them in with one
// call costs less than a fault per page inside the kernel's copy.
constexpr std::size_t populate_threshold = 256 * 1024;

void populate(char* data, std::size_t n) noexcept {
  if (n < populate_threshold) return;
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<std::uintptr_t>(data) + page - 1) & ~(page - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(data) + n) & ~(page - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
}

// Fills data, then (to_end) overflow until read() reports the end: st_size is only a hint,
// since the file may grow meanwhile or report no size at all.
void read_file(file_job& job) noexcept {
  populate(job.data, job.capacity);
  bool at_end = false;
  while (job.transferred < job.capacity) {
    ssize_t got = read_some(job, job.data + job.transferred, job.capacity - job.transferred, job.transferred);
    if (got < 0) {
      job.error = errno;
      return;
    }
    if (got == 0) {
      at_end = true;
      break;
    }
    job.transferred += static_cast<std::size_t>(got);
  }
  if (!job.to_end || at_end) return;
  // Usually one read here finds the end (the file is as big as fstat said). It goes to the
  // stack, not to overflow: growing a string first would zero-fill memory for nothing.
  char chunk[overflow_chunk];
  try {
    for (;;) {
      const std::size_t done = job.transferred + job.overflow.size();
      if (done >= job.limit) return;
      const std::size_t want = std::min(sizeof chunk, job.limit - done);
      ssize_t got = read_some(job, chunk, want, done);
      if (got <= 0) {
        if (got < 0) job.error = errno;
        return;
      }
      job.overflow.append(chunk, static_cast<std::size_t>(got));
    }
  } catch (...) {  // std::bad_alloc while growing overflow
    job.error = ENOMEM;
  }
}

void write_all(file_job& job) noexcept {
  while (job.transferred < job.length) {
    const char* from = job.source + job.transferred;
    const std::size_t n = job.length - job.transferred;
    ssize_t put;
    do {
      put = job.offset >= 0 ? ::pwrite(job.fd, from, n, job.offset + static_cast<off_t>(job.transferred))
                            : ::write(job.fd, from, n);
    } while (put < 0 && errno == EINTR);
    if (put < 0) {
      job.error = errno;
      return;
    }
    job.transferred += static_cast<std::size_t>(put);
  }
}

// The descriptor's offset after a transfer: known from the job's own offset, else asked
// (an O_APPEND write ends wherever the file ended). -1 for descriptors without one.
void note_position(file_job& job) noexcept {
  if (job.offset >= 0) {
    job.position = job.offset + static_cast<std::int64_t>(job.transferred + job.overflow.size());
  } else {
    off_t at = ::lseek(job.fd, 0, SEEK_CUR);
    job.position = at < 0 ? -1 : at;
  }
}

// close() is not retried on EINTR: on Linux the descriptor is gone whatever it returns.
int close_descriptor(int fd) noexcept { return ::close(fd) < 0 && errno != EINTR ? errno : 0; }

void open_file(file_job& job) noexcept {
  job.fd = open_retrying(job.path.c_str(), job.flags, job.mode);
  if (job.fd < 0) {
    job.error = errno;
    return;
  }
  job.owns_fd = true;
  if (::fstat(job.fd, &job.info) < 0) {
    job.error = errno;
  } else if (S_ISDIR(job.info.st_mode)) {
    // open(2) lets a directory be opened for reading; built-in open() refuses it so.
    job.error = EISDIR;
  }
  if (job.error != 0) {
    ::close(job.fd);
    job.fd = -1;
    job.owns_fd = false;
  }
}

void write_path(file_job& job) noexcept {
  job.fd = open_retrying(job.path.c_str(), job.flags, job.mode);
  if (job.fd < 0) {
    job.error = errno;
    return;
  }
  write_all(job);
  const int closed = close_descriptor(job.fd);
  job.fd = -1;
  if (job.error == 0) job.error = closed;  // a deferred write error (NFS) shows at close
}

}  // namespace

file_job::~file_job() { close_owned(); }

void file_job::close_owned() noexcept {
  if (owns_fd && fd >= 0) ::close(fd);
  owns_fd = false;
  fd = -1;
}

void run_file_job(file_job& job) noexcept {
  switch (job.op) {
    case file_op::open:
      open_file(job);
      return;
    case file_op::read:
      read_file(job);
      if (job.error == 0) note_position(job);
      if (job.close_after) {
        const int closed = close_descriptor(job.fd);
        if (job.error == 0) job.error = closed;
        job.fd = -1;
        job.owns_fd = false;
      }
      return;
    case file_op::write:
      write_all(job);
      if (job.error == 0) note_position(job);
      return;
    case file_op::write_path:
      write_path(job);
      return;
    case file_op::stat: {
      int rc;
      if (job.fd >= 0) {
        rc = ::fstat(job.fd, &job.info);
      } else {
        rc = job.follow_symlinks ? ::stat(job.path.c_str(), &job.info) : ::lstat(job.path.c_str(), &job.info);
      }
      if (rc < 0) job.error = errno;
      return;
    }
    case file_op::truncate: {
      int rc;
      do {
        rc = ::ftruncate(job.fd, static_cast<off_t>(job.offset));
      } while (rc < 0 && errno == EINTR);
      if (rc < 0) job.error = errno;
      return;
    }
    case file_op::close:
      job.error = close_descriptor(job.fd);
      job.fd = -1;
      job.owns_fd = false;
      return;
  }
}

void submit_file_job(std::shared_ptr<loop_mailbox> mailbox, file_job* job, const callback_ops* ops) {
  run_blocking([mailbox = std::move(mailbox), job, ops] {
    run_file_job(*job);
    // The loop is gone: the requester's discard frees the job (and whatever it holds) here.
    if (!mailbox->deliver(callback{ops, job})) {
      job->orphaned = true;
      ops->discard(job);
    }
  });
}

}  // namespace pyloop
