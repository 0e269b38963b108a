// What BackendKind::automatic picks (src/backend/make_backend.cpp): the C++ backend when the only
// OpenCL device is a CPU, the named device when KVARN_CL_DEVICE names one, and the CPU with the
// reason when that device's kernels do not build (ISSUE 8 item 6), shown through a deliberately
// broken KVARN_CL_KERNEL_DIR.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include <unistd.h>

#include "common/scoped_env.hpp"
#include "kvarn_cl/backend.hpp"
#if KVARN_CL_WITH_OPENCL
#include "kvarn_cl/device.hpp"
#include "opencl/program_table.hpp"
#include "opencl/kernel_sources.hpp"
#endif

namespace kvarn_cl {
namespace {

#if KVARN_CL_WITH_OPENCL
using test::ScopedEnv;

bool have_device(DeviceEntry* out) {
  try {
    *out = default_opencl_device();
    return true;
  } catch (const Error&) {
    return false;
  }
}

// Runs first in this file (and this executable builds no other OpenCL program), so the broken
// sources cannot be masked by a program already built from the good ones.
TEST(AutoBackend, AKernelBuildFailureFallsBackToTheCpu) {
  DeviceEntry device;
  if (!have_device(&device)) GTEST_SKIP() << "no OpenCL device";
  char tmpl[] = "/tmp/kvarn_cl_broken_kernels_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  for (const std::string& f : opencl::codec_files()) {
    std::ofstream out(dir + "/" + f);
    out << opencl::kernel_source(f);
    if (f == "quantize.cl") out << "\n__kernel void broken(void) { not_declared_anywhere = 1; }\n";
  }
  {
    ScopedEnv kernels("KVARN_CL_KERNEL_DIR", dir);
    ScopedEnv platform("KVARN_CL_PLATFORM", std::to_string(device.platform_index));
    ScopedEnv dev("KVARN_CL_DEVICE", std::to_string(device.device_index));
    std::string why;
    auto backend = make_backend(BackendKind::automatic, &why);
    EXPECT_FALSE(backend->is_opencl()) << backend->name();
    EXPECT_NE(why.find("unusable on " + device.caps.device_name), std::string::npos) << why;
    EXPECT_NE(why.find("using the CPU"), std::string::npos) << why;
    // The explicit choice still reports the build failure as an error.
    auto cl = make_opencl_backend();
    EXPECT_TRUE(cl->is_opencl());
  }
  for (const std::string& f : opencl::codec_files()) std::remove((dir + "/" + f).c_str());
  rmdir(dir.c_str());
}

TEST(AutoBackend, CpuOnlyOpenClPicksTheCppBackendAndSaysWhy) {
  DeviceEntry device;
  if (!have_device(&device)) GTEST_SKIP() << "no OpenCL device";
  if (std::getenv("KVARN_CL_DEVICE") || std::getenv("KVARN_CL_PLATFORM"))
    GTEST_SKIP() << "a device is chosen by the environment";
  std::string why;
  auto backend = make_backend(BackendKind::automatic, &why);
  if (device.caps.type == "cpu") {
    EXPECT_FALSE(backend->is_opencl());
    EXPECT_NE(why.find("the only OpenCL device is a CPU"), std::string::npos) << why;
    EXPECT_NE(why.find(device.caps.device_name), std::string::npos) << why;
  } else {
    EXPECT_TRUE(backend->is_opencl()) << why;
    EXPECT_NE(why.find(device.caps.device_name), std::string::npos) << why;
  }
}

TEST(AutoBackend, ANamedCpuDeviceIsUsed) {
  DeviceEntry device;
  if (!have_device(&device)) GTEST_SKIP() << "no OpenCL device";
  ScopedEnv platform("KVARN_CL_PLATFORM", std::to_string(device.platform_index));
  ScopedEnv dev("KVARN_CL_DEVICE", std::to_string(device.device_index));
  std::string why;
  auto backend = make_backend(BackendKind::automatic, &why);
  EXPECT_TRUE(backend->is_opencl()) << why;
  EXPECT_NE(why.find("KVARN_CL_DEVICE"), std::string::npos) << why;
}
#endif

TEST(AutoBackend, CpuKindIsAlwaysTheCppBackend) {
  std::string why = "stale";
  auto backend = make_backend(BackendKind::cpu, &why);
  EXPECT_FALSE(backend->is_opencl());
  EXPECT_TRUE(why.empty());
  EXPECT_EQ(backend->name().rfind("cpu (", 0), 0u) << backend->name();
}

}  // namespace
}  // namespace kvarn_cl
