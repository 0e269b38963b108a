// IcdLoaderEnvironmentGuard (src/opencl/icd_loader_environment.hpp): a loader that cuts
// OCL_ICD_FILENAMES in place during the library's platform listing does not take the other
// drivers away from the processes started afterwards.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "common/scoped_env.hpp"
#include "opencl/icd_loader_environment.hpp"

namespace kvarn_cl::test {
namespace {

// What the GPU host's loader does to the variable: the list cut at its first ':' in the string
// getenv() returned.
void cut_in_place(const char* name) {
  char* value = std::getenv(name);
  ASSERT_NE(value, nullptr);
  char* colon = std::strchr(value, ':');
  ASSERT_NE(colon, nullptr);
  *colon = '\0';
}

TEST(IcdLoaderEnvironment, ListCutInPlaceIsRestored) {
  for (const char* name : {"OCL_ICD_FILENAMES", "OPENCL_LAYERS"}) {
    SCOPED_TRACE(name);
    ScopedEnv env(name, "libpocl.so.2:libnvidia-opencl.so.1");
    {
      const opencl::IcdLoaderEnvironmentGuard guard;
      cut_in_place(name);
      EXPECT_STREQ(std::getenv(name), "libpocl.so.2");
    }
    EXPECT_STREQ(std::getenv(name), "libpocl.so.2:libnvidia-opencl.so.1");
    // A child process inherits the whole list again.
    const std::string cmd =
        std::string("test \"$") + name + "\" = libpocl.so.2:libnvidia-opencl.so.1";
    EXPECT_EQ(std::system(cmd.c_str()), 0);
  }
}

TEST(IcdLoaderEnvironment, UnsetOrUnchangedVariablesAreLeftAlone) {
  {
    ScopedEnv unset("OCL_ICD_FILENAMES", nullptr);
    { const opencl::IcdLoaderEnvironmentGuard guard; }
    EXPECT_EQ(std::getenv("OCL_ICD_FILENAMES"), nullptr);
  }
  ScopedEnv env("OCL_ICD_FILENAMES", "/opt/a/libx.so");
  const char* before = std::getenv("OCL_ICD_FILENAMES");
  { const opencl::IcdLoaderEnvironmentGuard guard; }
  EXPECT_EQ(std::getenv("OCL_ICD_FILENAMES"), before) << "an unchanged value was set again";
}

}  // namespace
}  // namespace kvarn_cl::test
