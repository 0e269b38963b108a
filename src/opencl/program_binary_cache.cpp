// The on-disk program binary cache (program_binary_cache.hpp).
#include "opencl/program_binary_cache.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>

#include "io/bounded_file.hpp"
#include "util/env_switch.hpp"

#ifndef KVARN_CL_VERSION
#define KVARN_CL_VERSION "unknown"
#endif

namespace kvarn_cl::opencl {
namespace {

// Version 2 of the entry format: magic, stamp, key, binary, checksum (program_binary_cache.hpp).
constexpr char kMagic[8] = {'K', 'V', 'C', 'L', 'B', 'I', 'N', '2'};
// Temporary files older than this are orphans of killed processes (a store takes milliseconds).
constexpr std::chrono::hours kOrphanAge{1};
constexpr char kTempInfix[] = ".clbin.tmp.";

std::uint64_t fnv1a(const unsigned char* p, std::size_t n,
                    std::uint64_t h = 1469598103934665603ull) {
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}
std::uint64_t fnv1a(const std::string& s) {
  return fnv1a(reinterpret_cast<const unsigned char*>(s.data()), s.size());
}

std::string hex16(std::uint64_t v) {
  char s[17];
  std::snprintf(s, sizeof s, "%016llx", static_cast<unsigned long long>(v));
  return s;
}

// mkdir -p, 0700 for the folders it creates: binaries are code the process will run.
bool make_dirs(const std::string& dir) {
  std::string part;
  for (std::size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') {
      if (!part.empty() && ::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) return false;
    }
    if (i < dir.size()) part += dir[i];
  }
  return true;
}

// The folder without trailing slashes (with one, O_NOFOLLOW would not apply to its last part).
std::string strip_slashes(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

// Owns a descriptor.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

enum class Folder { usable, absent, refused };

// Opens the cache folder itself (never through a link at its last component) and checks its
// owner and mode on the open descriptor, so that what is checked is what is used.
Folder open_folder(const std::string& dir, Fd* out, std::string* why) {
  out->fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (out->fd < 0) {
    if (errno == ENOENT) return Folder::absent;
    struct stat link {};
    if ((errno == ELOOP || errno == ENOTDIR) && ::lstat(dir.c_str(), &link) == 0) {
      // O_DIRECTORY|O_NOFOLLOW on a link gives ELOOP or ENOTDIR, depending on the kernel.
      *why = S_ISLNK(link.st_mode) ? "is a symbolic link" : "is not a directory";
    } else {
      *why = std::string("cannot be opened: ") + std::strerror(errno);
    }
    return Folder::refused;
  }
  struct stat st {};
  if (::fstat(out->fd, &st) != 0) {
    *why = std::string("cannot be examined: ") + std::strerror(errno);
    return Folder::refused;
  }
  return ProgramBinaryCache::folder_is_safe(st.st_uid, st.st_mode, ::geteuid(), why)
             ? Folder::usable
             : Folder::refused;
}

// One warning per folder and process: the cache is an optimization, the warning says why a
// user's setting is not honoured without repeating itself for every device runtime.
void warn_once(const std::string& dir, const std::string& why) {
  static std::mutex mutex;
  static std::set<std::string>* warned = new std::set<std::string>();  // leaked: used at exit too
  std::lock_guard<std::mutex> lock(mutex);
  if (!warned->insert(dir).second) return;
  std::fprintf(stderr,
               "kvarn_cl: warning: the program cache folder '%s' %s; the on-disk program cache is "
               "off (docs/API.md, \"The program cache\")\n",
               dir.c_str(), why.c_str());
}

void put_u64(std::vector<unsigned char>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<unsigned char>((v >> (8 * i)) & 0xFF));
}

// Reads a little-endian u64 at `at` when 8 bytes remain.
bool get_u64(const unsigned char* data, std::size_t size, std::size_t& at, std::uint64_t& v) {
  if (size - at < 8) return false;  // at <= size holds throughout decode_entry
  v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t(data[at + std::size_t(i)]) << (8 * i);
  at += 8;
  return true;
}

// Removes temporary files that killed processes left behind (only our names, only old ones, never
// following links).
void remove_orphans(int dirfd) {
  const int copy = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return;
  DIR* d = ::fdopendir(copy);
  if (d == nullptr) {
    ::close(copy);
    return;
  }
  const auto now = std::chrono::system_clock::now();
  while (const dirent* e = ::readdir(d)) {
    if (std::strstr(e->d_name, kTempInfix) == nullptr) continue;
    struct stat st {};
    if (::fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode)) continue;
    const auto modified = std::chrono::system_clock::from_time_t(st.st_mtime);
    if (now - modified > kOrphanAge) ::unlinkat(dirfd, e->d_name, 0);
  }
  ::closedir(d);
}

// A name no other process picks at the same time (O_EXCL decides anyway).
std::string temp_name(const std::string& entry) {
  static std::atomic<unsigned> counter{0};
  const std::string seed =
      std::to_string(::getpid()) + "/" +
      std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + "/" +
      std::to_string(counter.fetch_add(1));
  return entry + ".tmp." + std::to_string(::getpid()) + "." + hex16(fnv1a(seed)).substr(0, 8);
}

bool write_all(int fd, const std::vector<unsigned char>& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += std::size_t(n);
  }
  return true;
}

}  // namespace

std::string build_key(const DeviceCapabilities& caps, const std::string& source,
                      const std::string& options) {
  return caps.platform_name + '|' + caps.platform_version + '|' + caps.device_name + '|' +
         caps.device_version + '|' + caps.driver_version + '|' + KVARN_CL_VERSION + '|' +
         hex16(fnv1a(source)) + '|' + std::to_string(source.size()) + '|' + options;
}

std::uint64_t build_stamp(const std::string& key) { return fnv1a(key); }

std::string stamp_kernel_name(std::uint64_t stamp) { return "kvarn_cl_build_" + hex16(stamp); }

bool ProgramBinaryCache::folder_is_safe(uid_t owner, mode_t mode, uid_t euid, std::string* why) {
  if (!S_ISDIR(mode)) {
    if (why) *why = "is not a directory";
    return false;
  }
  if (owner != euid) {
    if (why)
      *why = "is owned by uid " + std::to_string(owner) + ", not by this process's user (uid " +
             std::to_string(euid) + ")";
    return false;
  }
  if ((mode & (S_IWGRP | S_IWOTH)) != 0) {
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", unsigned(mode & 07777));
    if (why)
      *why = std::string("is writable by ") + ((mode & S_IWOTH) ? "others" : "its group") +
             " (mode " + octal + "; chmod 700 it)";
    return false;
  }
  return true;
}

std::optional<ProgramBinaryCache> ProgramBinaryCache::for_device(const DeviceCapabilities& caps,
                                                                 std::string* why) {
  auto say = [&](const std::string& s) {
    if (why) *why = s;
  };
  const char* mode = std::getenv("KVARN_CL_CACHE");
  const char* dir_env = std::getenv("KVARN_CL_CACHE_DIR");
  const util::Switch mode_switch = util::read_switch(mode);
  if (mode_switch == util::Switch::off) {
    say("off (KVARN_CL_CACHE=" + std::string(mode) + ")");
    return std::nullopt;
  }
  const bool forced = mode_switch == util::Switch::on || (dir_env != nullptr && *dir_env != '\0');
  const std::string platform = caps.platform_name;
  const bool driver_caches = platform.find("NVIDIA") != std::string::npos ||
                             platform.find("Portable Computing Language") != std::string::npos;
  if (!forced && driver_caches) {
    say("off (the " + platform + " driver caches compiled kernels itself)");
    return std::nullopt;
  }
  std::string dir;
  if (dir_env != nullptr && *dir_env != '\0') {
    dir = dir_env;
  } else if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    dir = std::string(xdg) + "/kvarn_cl";
  } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    dir = std::string(home) + "/.cache/kvarn_cl";
  } else {
    say("off (no KVARN_CL_CACHE_DIR, XDG_CACHE_HOME or HOME)");
    return std::nullopt;
  }
  dir = strip_slashes(dir);
  Fd folder;
  std::string refused;
  if (open_folder(dir, &folder, &refused) == Folder::refused) {
    warn_once(dir, refused);
    say("off (the folder " + dir + " " + refused + ")");
    return std::nullopt;
  }
  say("on, in " + dir);
  return ProgramBinaryCache(dir);
}

std::string ProgramBinaryCache::path_for(const std::string& key) const {
  return strip_slashes(dir_) + "/" + hex16(build_stamp(key)) + ".clbin";
}

std::vector<unsigned char> ProgramBinaryCache::encode_entry(
    const std::string& key, const std::vector<unsigned char>& binary) {
  std::vector<unsigned char> out(kMagic, kMagic + sizeof kMagic);
  put_u64(out, build_stamp(key));
  put_u64(out, key.size());
  out.insert(out.end(), key.begin(), key.end());
  put_u64(out, binary.size());
  out.insert(out.end(), binary.begin(), binary.end());
  put_u64(out, fnv1a(binary.data(), binary.size()));
  return out;
}

std::optional<std::vector<unsigned char>> ProgramBinaryCache::decode_entry(
    const unsigned char* data, std::size_t size, const std::string& key) {
  // Every length below comes from the file: each is compared with what remains before it is used,
  // never added to an offset first (a length near 2^64 would wrap the sum).
  if (size < sizeof kMagic || std::memcmp(data, kMagic, sizeof kMagic) != 0) return std::nullopt;
  std::size_t at = sizeof kMagic;
  std::uint64_t stamp = 0, key_len = 0, bin_len = 0, sum = 0;
  if (!get_u64(data, size, at, stamp) || stamp != build_stamp(key)) return std::nullopt;
  if (!get_u64(data, size, at, key_len) || key_len != key.size() || key_len > size - at)
    return std::nullopt;
  if (std::memcmp(data + at, key.data(), key.size()) != 0) return std::nullopt;
  at += key.size();
  if (!get_u64(data, size, at, bin_len) || bin_len == 0) return std::nullopt;
  const std::size_t remaining = size - at;
  if (remaining < 8 || bin_len != remaining - 8) return std::nullopt;  // the checksum follows
  std::vector<unsigned char> binary(data + at, data + at + std::size_t(bin_len));
  at += std::size_t(bin_len);
  if (!get_u64(data, size, at, sum) || sum != fnv1a(binary.data(), binary.size()))
    return std::nullopt;
  return binary;
}

std::optional<std::vector<unsigned char>> ProgramBinaryCache::load(const std::string& key) const {
  try {
    Fd folder;
    std::string why;
    if (open_folder(strip_slashes(dir_), &folder, &why) != Folder::usable) return std::nullopt;
    const std::string name = hex16(build_stamp(key)) + ".clbin";
    // Non-blocking: a FIFO planted at the name cannot hang the open; no links; regular files
    // of bounded size only (read_descriptor).
    Fd entry(::openat(folder.fd, name.c_str(),
                      O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    if (entry.fd < 0) return std::nullopt;
    const std::vector<unsigned char> file = io::read_descriptor(
        entry.fd, {io::kMaxProgramCacheEntryBytes, false, false}, "program cache entry");
    return decode_entry(file.data(), file.size(), key);
  } catch (const std::exception&) {
    return std::nullopt;  // not a regular file, too large, unreadable, out of memory: a miss
  }
}

bool ProgramBinaryCache::store(const std::string& key,
                               const std::vector<unsigned char>& binary) const {
  if (binary.empty()) return false;
  try {
    const std::string dir = strip_slashes(dir_);
    if (!make_dirs(dir)) return false;
    Fd folder;
    std::string why;
    if (open_folder(dir, &folder, &why) != Folder::usable) return false;
    const std::vector<unsigned char> bytes = encode_entry(key, binary);
    const std::string name = hex16(build_stamp(key)) + ".clbin";
    // A fresh name, created exclusively and never through a link planted there.
    std::string temp;
    Fd out;
    for (int attempt = 0; attempt < 8 && out.fd < 0; ++attempt) {
      temp = temp_name(name);
      out.fd = ::openat(folder.fd, temp.c_str(),
                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (out.fd < 0 && errno != EEXIST) return false;
    }
    if (out.fd < 0) return false;
    const bool written = write_all(out.fd, bytes);
    const int closed = ::close(out.fd);
    out.fd = -1;
    if (!written || closed != 0 ||
        ::renameat(folder.fd, temp.c_str(), folder.fd, name.c_str()) != 0) {
      ::unlinkat(folder.fd, temp.c_str(), 0);
      return false;
    }
    remove_orphans(folder.fd);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace kvarn_cl::opencl
