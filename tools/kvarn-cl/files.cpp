// File input and output of kvarn-cl. Inputs are read whole and validated before any work starts;
// outputs replace their destination atomically only when complete (or are written through to a
// device or FIFO), so a failed or killed run never leaves a partial or stale-looking output behind.
#include <cerrno>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.hpp"
#include "io/bounded_file.hpp"
#include "kvarn_cl/error.hpp"
#include "util/parse_int.hpp"

namespace kvarn_cl::cli {
namespace {

std::string quoted(const std::string& option, const std::string& path) {
  return "--" + option + " '" + path + "'";
}

std::string parent_dir(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_name(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::vector<std::uint8_t> read_file(const std::string& path, const std::string& option) {
  // The library's bounded reader: regular files only (a FIFO or a device is refused, never waited
  // on), procfs files read although they report size 0, at most kMaxInputBytes.
  return io::read_file(path, {kMaxInputBytes, false, true}, quoted(option, path));
}

void check_finite(const half_bits* data, std::size_t rows, int cols, const std::string& what) {
  for (std::size_t i = 0; i < rows * std::size_t(cols); ++i) {
    if ((data[i] & 0x7C00u) != 0x7C00u) continue;  // exponent all ones: Inf or NaN
    std::ostringstream msg;
    msg << what << ": non-finite value " << half_to_float(data[i]) << " at token " << i / cols
        << ", channel " << i % cols;
    throw NonFiniteInput(msg.str());
  }
}

std::vector<half_bits> read_f16_rows(const std::string& path, const std::string& option, int cols,
                                     const std::string& cols_what, std::size_t row_multiple,
                                     const std::string& multiple_what, std::size_t* rows_out) {
  return parse_f16_rows(read_file(path, option), quoted(option, path), cols, cols_what,
                        row_multiple, multiple_what, rows_out);
}

std::vector<half_bits> parse_f16_rows(const std::vector<std::uint8_t>& bytes,
                                      const std::string& what, int cols,
                                      const std::string& cols_what, std::size_t row_multiple,
                                      const std::string& multiple_what, std::size_t* rows_out) {
  if (cols < 1)
    throw InvalidArgument(what + ": row width " + std::to_string(cols) + " must be >= 1");
  if (bytes.empty()) throw InvalidArgument(what + ": empty file");
  if (bytes.size() % 2 != 0)
    throw InvalidArgument(what + ": size " + std::to_string(bytes.size()) +
                          " bytes is not a whole number of fp16 values");
  const std::size_t values = bytes.size() / 2;
  if (values % std::size_t(cols) != 0)
    throw InvalidArgument(what + ": " + std::to_string(values) +
                          " fp16 values is not a multiple of " + cols_what);
  const std::size_t rows = values / std::size_t(cols);
  if (row_multiple > 1 && rows % row_multiple != 0)
    throw InvalidArgument(what + ": " + std::to_string(rows) + " tokens is not a multiple of " +
                          multiple_what + " " + std::to_string(row_multiple));
  std::vector<half_bits> out(values);
  for (std::size_t i = 0; i < values; ++i)  // little-endian on every host
    out[i] = half_bits(bytes[2 * i] | (unsigned(bytes[2 * i + 1]) << 8));
  check_finite(out.data(), rows, cols, what);
  *rows_out = rows;
  return out;
}

// --- output files -------------------------------------------------------------------------------
//
// Policy (docs/API.md, "Output files of kvarn-cl"):
// - an existing character device, FIFO or socket (also through a link: /dev/null, /dev/stdout on a
//   pipe or terminal) is written through in order; nothing is created, renamed or truncated;
// - /dev/stdout, /dev/stderr, /dev/fd/N and /proc/self/fd/N are the descriptors themselves (dup),
//   so output lands at the descriptor's position even when it is a regular file;
// - any other symbolic link is refused: replacing it would either break the link or write through
//   it to a file the user did not name (a classic trap for programs run as root);
// - a regular file, or a path that does not exist, is replaced atomically: the data goes to an
//   unnamed file in the destination directory (O_TMPFILE, so a killed run leaves nothing) that gets
//   its name only when complete; a replaced file keeps its permission bits (and, as root, its
//   owner). Where O_TMPFILE is unavailable a hidden temporary file is used instead, removed on
//   failure and on SIGINT/SIGTERM/SIGHUP;
// - outputs must not name one of the command's inputs or another output (check_distinct_files).

namespace {

// Hidden temporary names of the fallback path, removed by the signal handler (async-signal-safe:
// fixed buffers, unlink only).
constexpr int kMaxTemps = 4;
char g_temps[kMaxTemps][4096];
volatile std::sig_atomic_t g_temp_used[kMaxTemps];

extern "C" void remove_temps_and_reraise(int sig) {
  for (int i = 0; i < kMaxTemps; ++i)
    if (g_temp_used[i]) ::unlink(g_temps[i]);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

int register_temp(const std::string& name) {
  static const bool installed = [] {
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction sa {};
      sa.sa_handler = remove_temps_and_reraise;
      sigemptyset(&sa.sa_mask);
      ::sigaction(sig, &sa, nullptr);
    }
    return true;
  }();
  (void)installed;
  for (int i = 0; i < kMaxTemps; ++i)
    if (!g_temp_used[i] && name.size() < sizeof g_temps[i]) {
      std::memcpy(g_temps[i], name.c_str(), name.size() + 1);
      g_temp_used[i] = 1;
      return i;
    }
  return -1;
}

void unregister_temp(int slot) {
  if (slot >= 0) g_temp_used[slot] = 0;
}

// The descriptor a path names itself (/dev/stdout, /dev/fd/1, /proc/self/fd/1), or -1.
int descriptor_path(const std::string& path) {
  if (path == "-" || path == "/dev/stdout") return 1;
  if (path == "/dev/stderr") return 2;
  for (const char* prefix : {"/dev/fd/", "/proc/self/fd/"}) {
    const std::size_t n = std::strlen(prefix);
    if (path.compare(0, n, prefix) != 0) continue;
    const util::ParsedInt fd = util::try_parse_int(path.substr(n), 0, 999999);
    if (fd.error == util::IntError::none) return int(fd.value);
  }
  return -1;
}

bool write_through_type(mode_t mode) { return S_ISCHR(mode) || S_ISFIFO(mode) || S_ISSOCK(mode); }

std::string errno_text() { return std::strerror(errno); }

}  // namespace

AtomicOutput::AtomicOutput(std::string path, std::string option)
    : path_(std::move(path)), option_(std::move(option)) {
  const std::string what = quoted(option_, path_);
  if (path_.empty()) throw IoError(what + ": empty path");
  if (const int fd = descriptor_path(path_); fd >= 0) {
    fd_ = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (fd_ < 0)
      throw IoError(what + ": descriptor " + std::to_string(fd) + " is not open: " + errno_text());
    direct_ = true;
    to_stdout_ = fd == 1;
    return;
  }
  struct stat target {};
  const bool exists = ::stat(path_.c_str(), &target) == 0;
  if (exists && S_ISDIR(target.st_mode)) throw IoError(what + ": is a directory");
  if (exists && write_through_type(target.st_mode)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (fd_ < 0) throw IoError(what + ": cannot open: " + errno_text());
    direct_ = true;
    struct stat out {};
    to_stdout_ =
        ::fstat(1, &out) == 0 && out.st_dev == target.st_dev && out.st_ino == target.st_ino;
    return;
  }
  struct stat link {};
  if (::lstat(path_.c_str(), &link) == 0 && S_ISLNK(link.st_mode))
    throw IoError(what +
                  ": is a symbolic link; kvarn-cl does not replace links nor write through " +
                  "them to regular files: name the file itself");
  if (exists && !S_ISREG(target.st_mode))
    throw IoError(what + ": is not a regular file, character device or FIFO");
  replace_existing_ = exists;
  if (exists) existing_ = target;

  const std::string dir = parent_dir(path_);
#ifdef O_TMPFILE
  fd_ = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
  if (fd_ >= 0) {
    unnamed_ = true;
  } else if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL && errno != ENOENT) {
    // ENOENT from O_TMPFILE also means "not supported" on some kernels; a missing directory is
    // reported by mkstemp below with the usual message.
    throw IoError(what + ": cannot create a file in '" + dir + "': " + errno_text());
  }
#endif
  if (fd_ < 0) {
    temp_ = dir + "/." + base_name(path_) + ".tmp.XXXXXX";
    fd_ = ::mkstemp(temp_.data());
    if (fd_ < 0) throw IoError(what + ": cannot create a file in '" + dir + "': " + errno_text());
    temp_slot_ = register_temp(temp_);
  }
}

AtomicOutput::~AtomicOutput() {
  if (fd_ >= 0) ::close(fd_);
  if (!temp_.empty() && !committed_) ::unlink(temp_.c_str());
  unregister_temp(temp_slot_);
}

void AtomicOutput::write(const void* data, std::size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    ssize_t n = ::write(fd_, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw IoError(quoted(option_, path_) + ": write failed: " + std::strerror(errno));
    p += n;
    bytes -= std::size_t(n);
  }
}

void AtomicOutput::commit() {
  const std::string what = quoted(option_, path_);
  if (direct_) {
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0 && errno != EINTR) throw IoError(what + ": write failed: " + errno_text());
    committed_ = true;
    return;
  }
  if (replace_existing_) {
    // The new file takes the place of the old one with its permission bits (and owner as root).
    ::fchmod(fd_, existing_.st_mode & 07777);
    if (::geteuid() == 0 && ::fchown(fd_, existing_.st_uid, existing_.st_gid) != 0) {
      // Keeping root's ownership is the safe outcome; nothing to undo.
    }
  } else if (!unnamed_) {
    // mkstemp creates 0600; give the file the permissions a plain create would (0666 & ~umask).
    const mode_t mask = ::umask(0);
    ::umask(mask);
    ::fchmod(fd_, 0666 & ~mask);
  }
  if (::fsync(fd_) != 0 && errno != EINVAL && errno != EROFS)
    throw IoError(what + ": write failed: " + errno_text());
  if (unnamed_) {
    // Name the unnamed file: directly when the destination does not exist (atomic, no temporary
    // name at all), else under a hidden name that is renamed over the destination at once.
    const std::string proc = "/proc/self/fd/" + std::to_string(fd_);
    auto link_as = [&](const std::string& name) {
      return ::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) == 0;
    };
    if (!replace_existing_ && link_as(path_)) {
      ::close(fd_);
      fd_ = -1;
      committed_ = true;
      return;
    }
    if (!replace_existing_ && errno != EEXIST)
      throw IoError(what + ": cannot create the file: " + errno_text());
    for (int attempt = 0; attempt < 100 && temp_.empty(); ++attempt) {
      const std::string name = parent_dir(path_) + "/." + base_name(path_) + ".tmp." +
                               std::to_string(::getpid()) + "." + std::to_string(attempt);
      const int slot = register_temp(name);
      if (link_as(name)) {
        temp_ = name;
        temp_slot_ = slot;
      } else {
        unregister_temp(slot);
        if (errno != EEXIST) throw IoError(what + ": cannot create the file: " + errno_text());
      }
    }
    if (temp_.empty()) throw IoError(what + ": cannot create a temporary name in its directory");
  }
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) throw IoError(what + ": write failed: " + errno_text());
  if (::rename(temp_.c_str(), path_.c_str()) != 0)
    throw IoError(what + ": cannot rename the finished file into place: " + errno_text());
  committed_ = true;
}

void AtomicOutput::remove_committed() noexcept {
  if (committed_ && !direct_) ::unlink(path_.c_str());
}

void check_distinct_files(const std::vector<std::pair<std::string, std::string>>& inputs,
                          const std::vector<std::pair<std::string, std::string>>& outputs) {
  // Identity of a path: (device, inode) when it exists, else the resolved directory plus the name.
  struct Id {
    bool exists = false, regular = false;
    dev_t dev = 0;
    ino_t ino = 0;
    std::string where;
  };
  auto identify = [](const std::string& path) {
    Id id;
    struct stat st {};
    if (descriptor_path(path) < 0 && ::stat(path.c_str(), &st) == 0) {
      id.exists = true;
      id.regular = S_ISREG(st.st_mode);
      id.dev = st.st_dev;
      id.ino = st.st_ino;
      return id;
    }
    if (descriptor_path(path) >= 0) return id;  // a descriptor: written through, never replaced
    char* dir = ::realpath(parent_dir(path).c_str(), nullptr);
    if (dir != nullptr) {
      id.where = std::string(dir) + "/" + base_name(path);
      std::free(dir);
    }
    return id;
  };
  auto same = [](const Id& a, const Id& b) {
    if (a.exists && b.exists) return a.dev == b.dev && a.ino == b.ino;
    return !a.exists && !b.exists && !a.where.empty() && a.where == b.where;
  };
  std::vector<Id> out_ids;
  for (const auto& [option, path] : outputs) {
    const Id id = identify(path);
    for (const auto& [in_option, in_path] : inputs)
      if (same(id, identify(in_path)))
        throw UsageError(quoted(option, path) + " is the same file as the input " +
                         quoted(in_option, in_path) + ": the output would overwrite its input");
    for (std::size_t j = 0; j < out_ids.size(); ++j)
      // Two outputs may share a device or FIFO (written in order), never a file to be replaced.
      if (same(id, out_ids[j]) && (!id.exists || id.regular))
        throw UsageError(quoted(option, path) + " and " +
                         quoted(outputs[j].first, outputs[j].second) +
                         " name the same file: one output would replace the other");
    out_ids.push_back(id);
  }
}

std::string output_policy_help() {
  return "\nOutput files: a regular file is replaced atomically when the output is complete (it\n"
         "keeps its permissions); a character device, FIFO or socket (/dev/null, a pipe) is "
         "written\n"
         "through; /dev/stdout, /dev/stderr and /dev/fd/N (or -) write to that descriptor; other\n"
         "symbolic links are refused; an output may not name an input or another output.\n";
}

std::FILE* summary_stream(std::initializer_list<const AtomicOutput*> outputs) {
  for (const AtomicOutput* o : outputs)
    if (o->to_stdout()) return stderr;
  return stdout;
}

std::string format_bytes(double bytes) {
  char buf[64];
  if (bytes >= 1024.0 * 1024.0 * 1024.0)
    std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  else if (bytes >= 1024.0 * 1024.0)
    std::snprintf(buf, sizeof buf, "%.2f MiB", bytes / (1024.0 * 1024.0));
  else if (bytes >= 1024.0)
    std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%.0f B", bytes);
  return buf;
}

}  // namespace kvarn_cl::cli
