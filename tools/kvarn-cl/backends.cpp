// Backend selection for the subcommands: --backend cpu|opencl|auto through make_backend(), with the
// reason on stderr when `auto` had to fall back to the CPU (not when it chose the C++ backend as
// the faster path on a CPU-only OpenCL machine) (so a user knows why OpenCL was not used).
#include <cstdio>

#include "cli.hpp"

namespace kvarn_cl::cli {

std::unique_ptr<Backend> open_backend(BackendKind kind, bool quiet) {
  std::string why;
  bool fell_back = false;
  auto backend = make_backend(kind, &why, &fell_back);
  if (!quiet && fell_back)
    std::fprintf(stderr, "kvarn-cl: note: backend auto uses the CPU: %s\n", why.c_str());
  return backend;
}

}  // namespace kvarn_cl::cli
