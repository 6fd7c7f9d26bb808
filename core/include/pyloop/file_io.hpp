// core/include/pyloop/file_io.hpp — file system calls (open, read, write, stat, close) on the
// blocking pool, completing into a loop through its mailbox.
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "pyloop/callback.hpp"
#include "pyloop/loop_mailbox.hpp"

namespace pyloop {

// What a file_job does when it runs.
enum class file_op : unsigned char {
  open,        // open(path, flags, mode), then fstat; a directory fails with EISDIR
  read,        // read into data[0, capacity); with to_end, on past it into overflow until EOF
  write,       // write source[0, length) entirely (short writes and EINTR retried)
  write_path,  // open(path, flags, mode), write source entirely, close: one hand-over
  stat,        // fstat(fd), or without a descriptor stat/lstat(path)
  truncate,    // ftruncate(fd, offset)
  close,       // close(fd)
};

// One file operation: its arguments, and once run its result or errno. The memory it reads
// into (data) and writes from (source) belongs to the requester, which keeps it alive and
// unmoved until the job comes back (or is discarded): the worker writes there directly, so
// no copy is made on the way.
// Thread safety: one thread owns it at a time (requester, worker, then the loop).
struct file_job {
  file_op op = file_op::stat;      // the operation
  std::string path;                // the file, for open, write_path and stat
  int flags = 0;                   // open(2) flags; O_CLOEXEC is always added
  unsigned mode = 0666;            // permission bits for a file that open creates
  bool follow_symlinks = true;     // stat: false for lstat
  int fd = -1;                     // the descriptor acted on (for open: the one opened)
  bool owns_fd = false;            // the job closes fd when destroyed (an open not yet taken)
  bool close_after = false;        // read: close fd on the worker once done (a whole-file read)
  std::int64_t offset = -1;        // pread/pwrite position, or -1 for the descriptor's own
  char* data = nullptr;            // read: where bytes go (the requester's memory)
  std::size_t capacity = 0;        // read: bytes data can take
  bool to_end = false;             // read: go on past capacity (into overflow) until EOF
  std::size_t limit = SIZE_MAX;    // read with to_end: stop once this many bytes are read
  const char* source = nullptr;    // write: the bytes to write (the requester's memory)
  std::size_t length = 0;          // write: how many
  std::size_t transferred = 0;     // bytes read into data or written from source
  std::string overflow;            // read: bytes found past capacity (the file grew, or its
                                   // size was unknown, as /proc files report 0)
  int error = 0;                   // errno of the failed call; 0 on success
  struct stat info {};             // open and stat: the file's status
  std::int64_t position = -1;      // the descriptor's offset after a read or write (-1 if
                                   // it has none, as for pipes)
  bool orphaned = false;           // set before ops->discard runs on the worker (the loop's
                                   // mailbox was closed): the discard has no loop thread

  file_job() = default;
  file_job(const file_job&) = delete;
  file_job& operator=(const file_job&) = delete;
  ~file_job();  // closes fd if owns_fd: an open whose requester went away leaks nothing

  // Closes fd now if the job owns it (a job whose requester is gone, kept a while longer).
  void close_owned() noexcept;
};

// Does job's system calls on the calling thread (blocking); the result lands in job.
void run_file_job(file_job& job) noexcept;

// Runs job on the blocking pool (blocking_pool.hpp), then delivers callback{ops, job} to the mailbox: the
// callback owns the job. If the mailbox is closed by then, ops->discard(job) runs on the
// worker, with job->orphaned set: the requester's discard must handle that case.
// If submitting throws (std::bad_alloc), job was not taken: the caller still owns it.
void submit_file_job(std::shared_ptr<loop_mailbox> mailbox, file_job* job, const callback_ops* ops);

}  // namespace pyloop
