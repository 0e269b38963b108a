// The `subgroups` kernel variant (src/opencl/subgroups.hpp) is chosen per device from its
// capability record and the probe: on a device whose OpenCL C 1.2 compiler has cl_intel_subgroups
// (Intel's runtime in CI) it runs, under KVARN_CL_DEVICE_LIMITS=subgroups=0 it does not, and a
// device without subgroups (PoCL 3.1) keeps the portable reductions. What it computes is held to
// the CPU reference by FusedAttend and Fp16Attend wherever it is chosen, and to the portable path
// on the same device by OpenCLSubgroups.AgreesWithThePortablePathOnTheSameDevice
// (attention_test.cpp).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <sstream>
#include <string>

#include "common/child_process.hpp"
#include "opencl/program_table.hpp"
#include "opencl/subgroups.hpp"
#include "opencl_fixture.hpp"

namespace kvarn_cl::test {
namespace {

bool has_extension(const std::string& extensions, const std::string& name) {
  std::istringstream in(extensions);
  std::string e;
  while (in >> e)
    if (e == name) return true;
  return false;
}

// Whether the builds of the programs holding subgroups.cl (the attention programs) get the
// variant, and that one without it (the row copies) never does.
bool builds_with_subgroups(opencl::OpenCLBackend& cl) {
  opencl::ProgramArgs args;
  args.params = CodecParams{Preset::k4v2_g128, 128, kDefaultSinkhornIters};
  args.heads_per_group = 4;
  const std::string define = "-DKV_SUBGROUPS=1";
  EXPECT_EQ(opencl::program_spec(opencl::Program::copy_rows, {}, cl.runtime()).options.find(define),
            std::string::npos);
  bool any = false, all = true;
  for (opencl::Program p : {opencl::Program::attend_short, opencl::Program::attend_tile_slots,
                            opencl::Program::attend_fp16}) {
    const bool has =
        opencl::program_spec(p, args, cl.runtime()).options.find(define) != std::string::npos;
    any = any || has;
    all = all && has;
  }
  EXPECT_EQ(any, all) << "the attention programs disagree on the variant";
  return all;
}

// In this process as started: a device whose compiler has cl_intel_subgroups (its built-ins are
// OpenCL C 1.2 ones) runs the variant; a device with cl_khr_subgroups only may not (an OpenCL C 2.0
// extension: its compiler need not declare the built-ins under -cl-std=CL1.2), and says why; a
// device with neither never does. The child, under KVARN_CL_DEVICE_LIMITS=subgroups=0, must not.
TEST(OpenCLSubgroups, ChosenWhereTheDeviceReportsSubgroups) {
  opencl::OpenCLBackend& cl = cl_backend();
  const opencl::CapabilityCheck& sg = cl.runtime().subgroups();
  RecordProperty("subgroups", sg.reason);
  EXPECT_FALSE(sg.reason.empty());
  EXPECT_EQ(builds_with_subgroups(cl), sg.available) << sg.reason;
  if (std::getenv("KVARN_CL_TEST_SUBGROUPS_OFF_CHILD") != nullptr) {
    EXPECT_FALSE(cl.caps().subgroups);
    EXPECT_FALSE(sg.available) << sg.reason;
    EXPECT_NE(sg.reason.find("KVARN_CL_DEVICE_LIMITS"), std::string::npos) << sg.reason;
    return;
  }
  const std::string ext = cl.runtime().device().getInfo<CL_DEVICE_EXTENSIONS>();
  const char* limits = std::getenv("KVARN_CL_DEVICE_LIMITS");
  const bool lowered =
      limits != nullptr && std::string(limits).find("subgroups") != std::string::npos;
  if (has_extension(ext, "cl_intel_subgroups") && !lowered) {
    EXPECT_TRUE(cl.caps().subgroups);
    EXPECT_TRUE(sg.available) << sg.reason;
  } else if (!cl.caps().subgroups) {
    EXPECT_FALSE(sg.available) << sg.reason;
  }
  if (!sg.available)
    GTEST_SKIP() << "subgroups not used on " << cl.caps().device_name << ": " << sg.reason;
}

TEST(OpenCLSubgroups, NotChosenUnderDeviceLimitsWithoutSubgroups) {
  if (std::getenv("KVARN_CL_TEST_SUBGROUPS_OFF_CHILD") != nullptr) GTEST_SKIP() << "the child";
  // The device runtime reads the capabilities once per process: the profile is set from the
  // child's start, as a user's would be.
  char tmpl[] = "/tmp/kvarn_cl_subgroups_child_XXXXXX";
  const int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  close(fd);
  const std::string log = tmpl;
  const std::string cmd =
      child_env() + "KVARN_CL_TEST_SUBGROUPS_OFF_CHILD=1 KVARN_CL_DEVICE_LIMITS=subgroups=0 '" +
      self_exe() + "' --gtest_filter=OpenCLSubgroups.ChosenWhereTheDeviceReportsSubgroups > '" +
      log + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string out = slurp(log);
  std::remove(log.c_str());
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("[  PASSED  ] 1 test"), std::string::npos) << out;
}

// The probe is the same on every device that reports subgroups; where it cannot build, it says so
// and does not throw.
TEST(OpenCLSubgroups, ProbeVerdict) {
  opencl::OpenCLBackend& cl = cl_backend();
  const opencl::CapabilityCheck probe = opencl::run_subgroups_probe(cl.runtime());
  RecordProperty("probe", probe.reason);
  EXPECT_FALSE(probe.reason.empty());
  if (cl.caps().subgroups) {
    EXPECT_EQ(probe.available, cl.runtime().subgroups().available);
  }
  if (!probe.available) {
    EXPECT_EQ(probe.reason.find("probe result"), std::string::npos)
        << "the probe built and computed a wrong result: " << probe.reason;
  }
}

}  // namespace
}  // namespace kvarn_cl::test
