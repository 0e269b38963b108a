// An on-disk cache of built OpenCL program binaries, for drivers that keep none themselves: a
// fresh process (or machine, or driver update) would otherwise compile every kernel from source
// again. NVIDIA's driver and PoCL cache compiled kernels on their own, so it is off for them
// unless asked for.
//
// Policy (read once per device runtime):
//   KVARN_CL_CACHE=0 or off       never
//   KVARN_CL_CACHE=1 or on        always (also on NVIDIA and PoCL; tests use it)
//   KVARN_CL_CACHE_DIR=path       the folder (default $XDG_CACHE_HOME/kvarn_cl, else
//                                 $HOME/.cache/kvarn_cl); setting it also turns the cache on
//
// Trust model (docs/API.md, "The program cache"). A cached binary is code the process will run,
// so whoever can write the folder decides what runs. The folder is therefore the protection, as
// in ccache, pip's cache or Mesa's shader cache:
// - it is created 0700; an existing folder that is a symbolic link, is owned by another user or
//   is writable by group or others is refused: the cache is off and one warning goes to stderr;
// - entries are created under a fresh name with O_CREAT|O_EXCL|O_NOFOLLOW (never through a link
//   planted at that name) and renamed into place, so readers never see half an entry; temporary
//   files orphaned by killed processes are removed after an hour;
// - entries are opened O_NOFOLLOW|O_NONBLOCK relative to the checked folder, must be regular
//   files and at most kMaxProgramCacheEntryBytes, and are parsed with every length checked.
// Beyond the folder, each entry is keyed and stamped by a hash of everything that went into the
// build (source text, build options, platform, device, driver and library versions: build_key),
// and the program loaded from it must carry the same stamp (DeviceRuntime adds a kernel named
// after the stamp to every program it caches, stamp_kernel_name); a corrupt, truncated, stale,
// foreign or mislabelled entry, or one the driver refuses, is a miss: the program is built from
// source and the entry rewritten. The hash (64-bit FNV-1a) detects accidents, not forgeries:
// forging needs write access to the folder, which the checks above reserve to the user.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kvarn_cl/device.hpp"

namespace kvarn_cl::opencl {

// The cache key of a build: every input of the compiler, in one string.
std::string build_key(const DeviceCapabilities& caps, const std::string& source,
                      const std::string& options);
// The stamp of a key (its 64-bit hash); entries are named and stamped with it.
std::uint64_t build_stamp(const std::string& key);
// The name of the empty kernel that carries a stamp inside a program ("kvarn_cl_build_<hex>").
std::string stamp_kernel_name(std::uint64_t stamp);

class ProgramBinaryCache {
 public:
  // The cache for a device under the policy above; nullopt when it is off (or its folder is
  // refused: then one warning on stderr per folder and process). `why` (optional) receives the
  // reason either way.
  static std::optional<ProgramBinaryCache> for_device(const DeviceCapabilities& caps,
                                                      std::string* why = nullptr);
  explicit ProgramBinaryCache(std::string dir) : dir_(std::move(dir)) {}

  const std::string& dir() const noexcept { return dir_; }
  // The binary stored under `key`, or nullopt (absent, unreadable, not a regular file, too large,
  // corrupt, another key or stamp, folder unsafe). Never throws.
  std::optional<std::vector<unsigned char>> load(const std::string& key) const;
  // Stores it; false when the folder cannot be written or is unsafe (the cache then just misses).
  bool store(const std::string& key, const std::vector<unsigned char>& binary) const;
  // The file that holds `key`.
  std::string path_for(const std::string& key) const;

  // An entry's bytes and their parse (the fuzz target fuzz/program_cache_entry_fuzz.cpp calls
  // decode_entry on arbitrary bytes): nullopt unless the bytes are a well-formed entry of `key`.
  static std::vector<unsigned char> encode_entry(const std::string& key,
                                                 const std::vector<unsigned char>& binary);
  static std::optional<std::vector<unsigned char>> decode_entry(const unsigned char* data,
                                                                std::size_t size,
                                                                const std::string& key);
  // Whether a folder with this owner and mode may hold the cache of the user `euid`; why not in
  // `why`.
  static bool folder_is_safe(uid_t owner, mode_t mode, uid_t euid, std::string* why);

 private:
  std::string dir_;
};

}  // namespace kvarn_cl::opencl
