// What BackendKind::automatic picks (src/factory/make_backend.cpp): the C++ backend when the only
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
#include "opencl/kernel_sources.hpp"
#include "opencl/program_table.hpp"
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
    EXPECT_EQ(backend->kind(), BackendKind::cpu) << backend->name();
    EXPECT_NE(why.find("unusable on " + device.caps.device_name), std::string::npos) << why;
    EXPECT_NE(why.find("using the CPU"), std::string::npos) << why;
    // The explicit choice still reports the build failure as an error.
    auto cl = make_opencl_backend();
    EXPECT_EQ(cl->kind(), BackendKind::opencl);
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
    EXPECT_EQ(backend->kind(), BackendKind::cpu);
    EXPECT_NE(why.find("the only OpenCL device is a CPU"), std::string::npos) << why;
    EXPECT_NE(why.find(device.caps.device_name), std::string::npos) << why;
  } else {
    EXPECT_EQ(backend->kind(), BackendKind::opencl) << why;
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
  EXPECT_EQ(backend->kind(), BackendKind::opencl) << why;
  EXPECT_NE(why.find("KVARN_CL_DEVICE"), std::string::npos) << why;
}

// BackendOptions::device is the same choice as the environment's (Python's Backend(device=...)).
TEST(AutoBackend, ADeviceNamedInTheOptionsIsUsed) {
  DeviceEntry device;
  if (!have_device(&device)) GTEST_SKIP() << "no OpenCL device";
  BackendOptions options;
  options.device = {std::to_string(device.platform_index), std::to_string(device.device_index)};
  std::string why;
  bool fell_back = true;
  auto backend = make_backend(options, &why, &fell_back);
  EXPECT_EQ(backend->kind(), BackendKind::opencl) << why;
  EXPECT_FALSE(fell_back);
  EXPECT_EQ(why, "the selected OpenCL device");
}
#endif

// The fallback to the CPU keeps the thread count asked for (C and Python used to differ here).
TEST(AutoBackend, AFallbackCpuBackendHasTheThreadsAskedFor) {
  BackendOptions options;
  options.device.device = "no-such-device-xyz";
  options.cpu_threads = CpuThreads{3};
  std::string why;
  bool fell_back = false;
  auto backend = make_backend(options, &why, &fell_back);
  EXPECT_EQ(backend->kind(), BackendKind::cpu);
  EXPECT_TRUE(fell_back);
  EXPECT_NE(why.find("using the CPU"), std::string::npos) << why;
  EXPECT_NE(backend->name().find("3 threads"), std::string::npos) << backend->name();
}

TEST(AutoBackend, OptionsThatContradictTheKindAreRefused) {
  BackendOptions cpu_on_device;
  cpu_on_device.kind = BackendKind::cpu;
  cpu_on_device.device.device = "0";
  try {
    make_backend(cpu_on_device);
    ADD_FAILURE() << "kind cpu with a device was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("kind 'cpu' takes neither"), std::string::npos)
        << e.what();
  }
  BackendOptions opencl_threads;
  opencl_threads.kind = BackendKind::opencl;
  opencl_threads.cpu_threads = CpuThreads{4};
  try {
    make_backend(opencl_threads);
    ADD_FAILURE() << "kind opencl with cpu_threads was accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("cpu_threads 4"), std::string::npos) << e.what();
  }
}

TEST(AutoBackend, KindNamesEveryValue) {
  EXPECT_STREQ(to_string(BackendKind::cpu), "cpu");
  EXPECT_STREQ(to_string(BackendKind::opencl), "opencl");
  EXPECT_STREQ(to_string(BackendKind::automatic), "auto");
  for (BackendKind k : {BackendKind::cpu, BackendKind::opencl, BackendKind::automatic})
    EXPECT_EQ(parse_backend_kind(to_string(k)), k);
}

TEST(AutoBackend, CpuKindIsAlwaysTheCppBackend) {
  std::string why = "stale";
  auto backend = make_backend(BackendKind::cpu, &why);
  EXPECT_EQ(backend->kind(), BackendKind::cpu);
  EXPECT_TRUE(why.empty());
  EXPECT_EQ(backend->name().rfind("cpu (", 0), 0u) << backend->name();
}

}  // namespace
}  // namespace kvarn_cl
