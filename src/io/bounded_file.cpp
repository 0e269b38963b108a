// The bounded file reader (bounded_file.hpp).
#include "io/bounded_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "kvarn_cl/error.hpp"

namespace kvarn_cl::io {
namespace {

std::string kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

// Closes the descriptor on every path out of read_file.
struct Descriptor {
  int fd;
  ~Descriptor() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::vector<unsigned char> read_descriptor(int fd, const ReadLimits& limits,
                                           const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw IoError(what + ": cannot read: " + std::strerror(errno));
  const bool regular = S_ISREG(st.st_mode);
  const bool stream = S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode) || S_ISSOCK(st.st_mode);
  if (!regular && !(stream && limits.allow_streams))
    throw IoError(what + ": not a regular file (" + kind_of(st.st_mode) + ")");
  if (regular && std::uint64_t(st.st_size) > limits.max_bytes)
    throw IoError(what + ": " + std::to_string(st.st_size) + " bytes, more than the limit of " +
                  std::to_string(limits.max_bytes) + " bytes for this file");
  if (stream) {
    // An allowed stream is read as it comes: blocking from here on.
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  }
  std::vector<unsigned char> data;
  // The size a regular file reports is a hint only: procfs and sysfs files report 0 and have
  // content; a file may grow or shrink while it is read. One byte past the cap tells "too large".
  const std::uint64_t want = limits.max_bytes + 1;
  std::uint64_t reserve = regular ? std::uint64_t(st.st_size) + 1 : 4096;
  if (reserve > want) reserve = want;
  data.resize(std::size_t(reserve));
  std::size_t used = 0;
  for (;;) {
    if (used == data.size()) {
      if (data.size() >= want) break;
      const std::uint64_t grown =
          std::min<std::uint64_t>(want, std::uint64_t(data.size()) * 2 + 4096);
      data.resize(std::size_t(grown));
    }
    const ssize_t n = ::read(fd, data.data() + used, data.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw IoError(what + ": read failed after " + std::to_string(used) +
                    " bytes: " + std::strerror(errno));
    if (n == 0) break;
    used += std::size_t(n);
  }
  if (used > limits.max_bytes)
    throw IoError(what + ": more than the limit of " + std::to_string(limits.max_bytes) +
                  " bytes for this file");
  data.resize(used);
  return data;
}

std::vector<unsigned char> read_file(const std::string& path, const ReadLimits& limits,
                                     const std::string& what) {
  if (path.empty()) throw InvalidArgument(what + ": the path is empty");
  if (path.find('\0') != std::string::npos)
    throw InvalidArgument(what + ": the path contains a NUL character");
  int flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
  if (!limits.follow_links) flags |= O_NOFOLLOW;
  Descriptor d{::open(path.c_str(), flags)};
  if (d.fd < 0) {
    if (errno == ELOOP && !limits.follow_links)
      throw IoError(what + ": is a symbolic link, which this file may not be");
    throw IoError(what + ": cannot open: " + std::strerror(errno));
  }
  {
    struct stat st {};
    if (::fstat(d.fd, &st) == 0 && S_ISFIFO(st.st_mode) && limits.allow_streams) {
      // Opened non-blocking, a FIFO without a writer reads as empty at once; an allowed FIFO
      // is opened again to wait for its writer, as a plain open would.
      const int again = ::open(path.c_str(), flags & ~O_NONBLOCK);
      if (again < 0) throw IoError(what + ": cannot open: " + std::strerror(errno));
      ::close(d.fd);
      d.fd = again;
    }
  }
  return read_descriptor(d.fd, limits, what);
}

std::string read_text_file(const std::string& path, const ReadLimits& limits,
                           const std::string& what) {
  const std::vector<unsigned char> bytes = read_file(path, limits, what);
  return std::string(bytes.begin(), bytes.end());
}

}  // namespace kvarn_cl::io
