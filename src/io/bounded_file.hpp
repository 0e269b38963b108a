// The one reader of every file the library and its programs read: layer-preset files, kernel
// files of KVARN_CL_KERNEL_DIR, program-cache entries, /proc files, kvarn-cl's inputs, kvarn-eval's
// model and text files. Whatever the path names, a read ends, in bounded memory, with the bytes or
// with an error that names the file:
// - a path with an embedded NUL is refused (the C calls would silently read a shorter path);
// - the file is opened non-blocking, so that opening a FIFO without a writer cannot hang, and
//   never becomes the controlling terminal;
// - only regular files are read, unless the caller allows streams (FIFOs, character devices,
//   sockets: read until their end); a directory is always refused;
// - at most `max_bytes`: a regular file that says it is larger is refused before reading, and a
//   read that goes past the cap (a file that grows, a procfs file, which reports size 0 but has
//   content, an allowed stream like /dev/zero) stops there and is refused.
// Nothing here holds a lock or the Python GIL; callers from Python release the GIL around it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvarn_cl::io {

struct ReadLimits {
  std::uint64_t max_bytes = 0;  // the cap (required: 0 reads nothing but an empty file)
  bool allow_streams = false;   // FIFOs, character devices and sockets too
  bool follow_links = true;     // false: a symbolic link at the path is refused (O_NOFOLLOW)
};

// Caps of the library's own readers, in one place.
constexpr std::uint64_t kMaxTextFileBytes = std::uint64_t(16) << 20;  // layer presets, kernels
constexpr std::uint64_t kMaxProgramCacheEntryBytes = std::uint64_t(256) << 20;
constexpr std::uint64_t kMaxProcFileBytes = std::uint64_t(1) << 20;

// The whole content of `path`. Throws InvalidArgument for a path with an embedded NUL (or an
// empty path) and IoError for everything else (cannot open, not a regular file, too large, read
// error); each message starts with `what` (e.g. "layer-preset file 'x'" or "--k 'x'").
std::vector<unsigned char> read_file(const std::string& path, const ReadLimits& limits,
                                     const std::string& what);
// The same for a descriptor the caller opened (non-blocking, e.g. with openat relative to a
// checked directory); the descriptor is not closed.
std::vector<unsigned char> read_descriptor(int fd, const ReadLimits& limits,
                                           const std::string& what);
// read_file as text.
std::string read_text_file(const std::string& path, const ReadLimits& limits,
                           const std::string& what);

}  // namespace kvarn_cl::io
