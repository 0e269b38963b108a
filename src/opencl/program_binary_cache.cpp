// The on-disk program binary cache (program_binary_cache.hpp).
#include "opencl/program_binary_cache.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

namespace kvarn_cl::opencl {
namespace {

constexpr char kMagic[8] = {'K', 'V', 'C', 'L', 'B', 'I', 'N', '1'};

std::uint64_t fnv1a(const unsigned char* p, std::size_t n, std::uint64_t h = 1469598103934665603ull) {
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}
std::uint64_t fnv1a(const std::string& s) {
  return fnv1a(reinterpret_cast<const unsigned char*>(s.data()), s.size());
}

bool env_is(const char* value, const char* a, const char* b) {
  return value != nullptr && (std::strcmp(value, a) == 0 || std::strcmp(value, b) == 0);
}

// mkdir -p (0700 for the folders it creates: binaries are code the process will run).
bool make_dirs(const std::string& dir) {
  std::string part;
  for (std::size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || dir[i] == '/') {
      if (!part.empty() && ::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) return false;
    }
    if (i < dir.size()) part += dir[i];
  }
  struct stat st {};
  return ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out += char((v >> (8 * i)) & 0xFF);
}
bool get_u64(const std::vector<unsigned char>& in, std::size_t& at, std::uint64_t& v) {
  if (in.size() < at + 8) return false;
  v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t(in[at + std::size_t(i)]) << (8 * i);
  at += 8;
  return true;
}

}  // namespace

std::optional<ProgramBinaryCache> ProgramBinaryCache::for_device(const DeviceCapabilities& caps,
                                                                std::string* why) {
  auto say = [&](const std::string& s) {
    if (why) *why = s;
  };
  const char* mode = std::getenv("KVARN_CL_CACHE");
  const char* dir_env = std::getenv("KVARN_CL_CACHE_DIR");
  if (env_is(mode, "0", "off")) {
    say("off (KVARN_CL_CACHE=" + std::string(mode) + ")");
    return std::nullopt;
  }
  const bool forced = env_is(mode, "1", "on") || (dir_env != nullptr && *dir_env != '\0');
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
  say("on, in " + dir);
  return ProgramBinaryCache(dir);
}

std::string ProgramBinaryCache::path_for(const std::string& key) const {
  char name[32];
  std::snprintf(name, sizeof name, "%016llx.clbin", static_cast<unsigned long long>(fnv1a(key)));
  return dir_ + "/" + name;
}

std::optional<std::vector<unsigned char>> ProgramBinaryCache::load(const std::string& key) const {
  std::ifstream in(path_for(key), std::ios::binary);
  if (!in) return std::nullopt;
  const std::vector<unsigned char> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (file.size() < sizeof kMagic || std::memcmp(file.data(), kMagic, sizeof kMagic) != 0) return std::nullopt;
  std::size_t at = sizeof kMagic;
  std::uint64_t key_len = 0, bin_len = 0, sum = 0;
  if (!get_u64(file, at, key_len) || key_len != key.size() || file.size() - at < key_len) return std::nullopt;
  if (std::memcmp(file.data() + at, key.data(), key.size()) != 0) return std::nullopt;
  at += key.size();
  if (!get_u64(file, at, bin_len) || bin_len == 0 || file.size() - at != bin_len + 8) return std::nullopt;
  std::vector<unsigned char> binary(file.begin() + std::ptrdiff_t(at), file.begin() + std::ptrdiff_t(at + bin_len));
  at += bin_len;
  if (!get_u64(file, at, sum) || sum != fnv1a(binary.data(), binary.size())) return std::nullopt;
  return binary;
}

bool ProgramBinaryCache::store(const std::string& key, const std::vector<unsigned char>& binary) const {
  if (binary.empty() || !make_dirs(dir_)) return false;
  std::string head(kMagic, sizeof kMagic);
  put_u64(head, key.size());
  head += key;
  put_u64(head, binary.size());
  std::string tail;
  put_u64(tail, fnv1a(binary.data(), binary.size()));
  const std::string path = path_for(key);
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return false;
    out.write(head.data(), std::streamsize(head.size()));
    out.write(reinterpret_cast<const char*>(binary.data()), std::streamsize(binary.size()));
    out.write(tail.data(), std::streamsize(tail.size()));
    if (!out) {
      std::remove(tmp.c_str());
      return false;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return false;
  }
  return true;
}

}  // namespace kvarn_cl::opencl
