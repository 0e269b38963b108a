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
// Entries are keyed by everything that changes the binary: platform, device, driver and device
// versions, library version, a hash and the size of the source, the build options. The file
// holds the full key and a checksum of the binary; a corrupt, truncated, stale or colliding
// entry is a miss (then rebuilt and rewritten), never an error. Writes go to a temporary file
// renamed into place, so concurrent processes never read half an entry.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kvarn_cl/device.hpp"

namespace kvarn_cl::opencl {

class ProgramBinaryCache {
 public:
  // The cache for a device under the policy above; nullopt when it is off. `why` (optional)
  // receives the reason either way.
  static std::optional<ProgramBinaryCache> for_device(const DeviceCapabilities& caps,
                                                      std::string* why = nullptr);
  explicit ProgramBinaryCache(std::string dir) : dir_(std::move(dir)) {}

  const std::string& dir() const noexcept { return dir_; }
  // The binary stored under `key`, or nullopt (absent, unreadable, corrupt, other key).
  std::optional<std::vector<unsigned char>> load(const std::string& key) const;
  // Stores it; false when the folder cannot be written (the cache then just misses).
  bool store(const std::string& key, const std::vector<unsigned char>& binary) const;
  // The file that holds `key`.
  std::string path_for(const std::string& key) const;

 private:
  std::string dir_;
};

}  // namespace kvarn_cl::opencl
