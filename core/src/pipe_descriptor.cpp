// core/src/pipe_descriptor.cpp — the file-kind check and O_NONBLOCK of pipe transports.
#include "pyloop/pipe_descriptor.hpp"

#include <cerrno>

#include <fcntl.h>
#include <sys/stat.h>

namespace pyloop {
namespace {

pipe_file kind_of(mode_t mode) noexcept {
  if (S_ISFIFO(mode)) return pipe_file::fifo;
  if (S_ISSOCK(mode)) return pipe_file::socket;
  if (S_ISCHR(mode)) return pipe_file::character;
  return pipe_file::other;
}

std::error_code last_error() noexcept { return {errno, std::generic_category()}; }

}  // namespace

std::error_code prepare_pipe(int fd, pipe_file& kind) noexcept {
  struct stat info {};
  if (::fstat(fd, &info) < 0) return last_error();
  kind = kind_of(info.st_mode);
  if (kind == pipe_file::other) return {};
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return last_error();
  // Set only when missing: the flag belongs to the open file, which other processes may share.
  if ((flags & O_NONBLOCK) == 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return last_error();
  }
  return {};
}

}  // namespace pyloop
