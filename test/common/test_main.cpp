// Shared main of every test executable. It gives the process its own PoCL kernel cache
// (DEVELOPERS.md: one POCL_CACHE_DIR per test process) before any OpenCL call can happen.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include <unistd.h>

int main(int argc, char** argv) {
  if (std::getenv("KVARN_CL_SHARED_POCL_CACHE") == nullptr) {
    std::string dir = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") +
                      "/kvarn_cl_pocl_cache_XXXXXX";
    if (mkdtemp(dir.data()) != nullptr) setenv("POCL_CACHE_DIR", dir.c_str(), 1);
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
