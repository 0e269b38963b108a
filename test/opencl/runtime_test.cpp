// The OpenCL runtime around the kernels: discovery and capabilities, device selection by the
// environment, the automatic fallback to the CPU without any OpenCL platform (in a child process,
// because the ICD loader reads OCL_ICD_VENDORS once per process), kernel build failures with
// their log, caller-owned contexts and buffers, and the typed errors.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "common/child_process.hpp"
#include "common/test_support.hpp"
#include "kvarn_cl/device.hpp"
#include "kvarn_cl/error.hpp"
#include "opencl/attention_program.hpp"
#include "opencl/cl_error.hpp"
#include "opencl/device_discovery.hpp"
#include "opencl/kernel_sources.hpp"
#include "opencl/program_table.hpp"
#include "opencl_fixture.hpp"

namespace kvarn_cl::test {
namespace {

// Sets an environment variable for the scope of one test.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_)
      setenv(name_, old_.c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

std::string temp_dir(const char* tag) {
  std::string dir = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") +
                    "/kvarn_cl_" + tag + "_XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return dir;
}

const CodecParams kParams{Preset::k4v2_g128, 128, kDefaultSinkhornIters};

// --- no OpenCL platform: the automatic choice falls back to the CPU and says why -------------

// Runs only as the child of NoPlatform.AutomaticFallsBackToCpu (OCL_ICD_VENDORS = empty folder).
TEST(NoPlatformChild, AutomaticFallsBackToCpu) {
  if (std::getenv("KVARN_CL_TEST_NO_PLATFORM_CHILD") == nullptr)
    GTEST_SKIP() << "runs in the child process started by NoPlatform.AutomaticFallsBackToCpu";
  // Debian's ocl-icd (CI) honours OCL_ICD_VENDORS; some loaders still find platforms through other
  // paths. Without a platform-free process there is nothing to test here.
  if (!list_opencl_devices().empty())
    GTEST_SKIP() << "this machine's ICD loader still finds OpenCL platforms with OCL_ICD_VENDORS "
                    "pointing at an empty folder";
  try {
    make_opencl_backend();
    ADD_FAILURE() << "make_opencl_backend() succeeded without any OpenCL platform";
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("no OpenCL platform"), std::string::npos) << e.what();
  }
  std::string why;
  std::unique_ptr<Backend> b = make_backend(BackendKind::automatic, &why);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->kind(), BackendKind::cpu);
  EXPECT_NE(why.find("using the CPU"), std::string::npos) << why;
  EXPECT_NE(why.find("no OpenCL platform"), std::string::npos) << why;
  EXPECT_THROW(make_backend(BackendKind::opencl), Unsupported);
}

TEST(NoPlatform, AutomaticFallsBackToCpu) {
  const std::string empty = temp_dir("no_icd");
  const std::string log = empty + ".log";
  const std::string cmd = child_env() + "-u OCL_ICD_FILENAMES OCL_ICD_VENDORS='" + empty +
                          "' KVARN_CL_TEST_NO_PLATFORM_CHILD=1 '" + self_exe() +
                          "' --gtest_filter=NoPlatformChild.AutomaticFallsBackToCpu > '" + log +
                          "' 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string out = slurp(log);
  std::remove(log.c_str());
  rmdir(empty.c_str());
  EXPECT_EQ(rc, 0) << out;
  if (out.find("[  SKIPPED ] 1 test") != std::string::npos)
    GTEST_SKIP() << "the child could not get a process without OpenCL platforms:\n" << out;
  EXPECT_NE(out.find("[  PASSED  ] 1 test"), std::string::npos) << out;
}

// --- discovery and selection ------------------------------------------------------------------

TEST(Devices, ListReportsCapabilities) {
  const std::vector<DeviceEntry> devices = list_opencl_devices();
  ASSERT_FALSE(devices.empty()) << "this suite needs an OpenCL device (PoCL on CI)";
  for (const DeviceEntry& d : devices) {
    EXPECT_FALSE(d.caps.device_name.empty());
    EXPECT_FALSE(d.caps.driver_version.empty());
    EXPECT_GE(d.caps.opencl_c_major, 1);
    EXPECT_GT(d.caps.local_mem_bytes, 0u);
    EXPECT_GT(d.caps.max_work_group_size, 0u);
    EXPECT_GT(d.caps.compute_units, 0u);
    EXPECT_GT(d.caps.global_mem_bytes, 0u);
    EXPECT_NE(d.caps.type, "");
  }
  const DeviceEntry chosen = default_opencl_device();
  EXPECT_EQ(cl_backend().caps().device_name, chosen.caps.device_name);
  EXPECT_NE(cl_backend().name().find(chosen.caps.device_name), std::string::npos);
}

TEST(Devices, SelectionByEnvironment) {
  const DeviceEntry chosen = default_opencl_device();
  {
    ScopedEnv env("KVARN_CL_DEVICE", "no-such-device-xyz");
    try {
      make_opencl_backend();
      ADD_FAILURE() << "a device matching 'no-such-device-xyz' was found";
    } catch (const Unsupported& e) {
      EXPECT_NE(std::string(e.what()).find("no-such-device-xyz"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(chosen.caps.device_name), std::string::npos) << e.what();
    }
    std::string why;
    auto b = make_backend(BackendKind::automatic, &why);
    EXPECT_EQ(b->kind(), BackendKind::cpu);
    EXPECT_NE(why.find("no-such-device-xyz"), std::string::npos) << why;
  }
  {
    // Index, and a case-insensitive part of the name.
    ScopedEnv platform("KVARN_CL_PLATFORM", std::to_string(chosen.platform_index));
    ScopedEnv device("KVARN_CL_DEVICE", std::to_string(chosen.device_index));
    EXPECT_EQ(make_opencl_backend()->kind(), BackendKind::opencl);
  }
  {
    std::string part = chosen.caps.device_name.substr(0, 4);
    for (char& c : part) c = char(std::toupper(static_cast<unsigned char>(c)));
    ScopedEnv device("KVARN_CL_DEVICE", part);
    std::string why;
    EXPECT_EQ(make_backend(BackendKind::automatic, &why)->kind(), BackendKind::opencl) << why;
  }
  EXPECT_EQ(parse_backend_kind("OpenCL"), BackendKind::opencl);
  EXPECT_EQ(parse_backend_kind("auto"), BackendKind::automatic);
  EXPECT_THROW(parse_backend_kind("cuda", "--backend"), InvalidArgument);
}

// --- device-limit profiles (KVARN_CL_DEVICE_LIMITS) --------------------------------------------

TEST(DeviceLimits, ProfileLowersWhatTheDeviceReportsNeverRaisesIt) {
  DeviceCapabilities c;
  c.max_work_group_size = 1024;
  c.local_mem_bytes = 48 * 1024;
  c.fp16 = c.fp64 = c.subgroups = true;
  opencl::apply_device_limits(c, "work_group=256, local_mem=32K,fp16=0,subgroups=0,fp64=0");
  EXPECT_EQ(c.max_work_group_size, 256u);
  EXPECT_EQ(c.local_mem_bytes, 32u * 1024);
  EXPECT_FALSE(c.fp16);
  EXPECT_FALSE(c.fp64);
  EXPECT_FALSE(c.subgroups);
  // Larger numbers and =1 leave the device's own values (a profile cannot add what it lacks).
  opencl::apply_device_limits(c, "work_group=4096,local_mem=65536,fp16=1,fp64=1");
  EXPECT_EQ(c.max_work_group_size, 256u);
  EXPECT_EQ(c.local_mem_bytes, 32u * 1024);
  EXPECT_FALSE(c.fp16);
  EXPECT_FALSE(c.fp64);
  opencl::apply_device_limits(c, "");
  EXPECT_EQ(c.max_work_group_size, 256u);
}

TEST(DeviceLimits, BadProfileNamesTheVariableAndTheEntry) {
  for (const std::string bad : {"work_group", "work_group=", "work_group=0", "local_mem=32M",
                                "fp16=2", "subgroups=no", "warp=32", "work_group=-1"}) {
    DeviceCapabilities c;
    try {
      opencl::apply_device_limits(c, "fp64=0," + bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("KVARN_CL_DEVICE_LIMITS"), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("'" + bad + "'"), std::string::npos) << e.what();
    }
  }
}

// The profile reaches the runtime: the backend plans with the lowered limits. With work-groups of
// 256 the codec program at D 256 · G 128 takes 16 tokens per work-item (a group of 256, where the
// device allows 512); with 128, 32 (a group of 128), and the launch descriptors of the row copies,
// the rotation and the merge narrow to 128 items (program_table.hpp). A device runtime reads the
// capabilities once, when it is first made for a device (the registry of device_runtime.cpp keeps
// it), so this part runs in a child process whose profile is set from its start, as a user's would
// be; KVARN_CL_TEST_LIMITS_CHILD carries the work-group limit.
TEST(DeviceLimitsChild, RuntimePlansWithTheProfile) {
  const char* child = std::getenv("KVARN_CL_TEST_LIMITS_CHILD");
  if (child == nullptr)
    GTEST_SKIP() << "runs in the child process started by DeviceLimits.RuntimePlansWithTheProfile";
  const std::size_t work_group = std::size_t(std::atoi(child));
  const CodecParams d256{Preset::k4v2_g128, 256, kDefaultSinkhornIters};
  opencl::OpenCLBackend& cl = cl_backend();
  EXPECT_LE(cl.caps().max_work_group_size, work_group);
  EXPECT_LE(cl.caps().local_mem_bytes, 32u * 1024);
  EXPECT_FALSE(cl.caps().fp16 || cl.caps().fp64 || cl.caps().subgroups);
  EXPECT_EQ(cl.quantize_tokens_per_item(d256), work_group == 128 ? 32 : 16);
  for (opencl::Program p : {opencl::Program::copy_rows, opencl::Program::rotate}) {
    opencl::ProgramArgs args;
    args.params.head_dim = 256;
    EXPECT_EQ(opencl::kernel_work_group(p, 0, args, cl.caps()),
              std::min<std::size_t>(256, work_group));
  }
  EXPECT_EQ(opencl::merge_work_group({}, cl.caps()), std::min<std::size_t>(256, work_group));
}

TEST(DeviceLimits, RuntimePlansWithTheProfile) {
  for (int work_group : {256, 128}) {
    const std::string log = temp_dir("limits_child") + ".log";
    const std::string cmd =
        child_env() + "KVARN_CL_TEST_LIMITS_CHILD=" + std::to_string(work_group) +
        " KVARN_CL_DEVICE_LIMITS=work_group=" + std::to_string(work_group) +
        ",local_mem=32K,fp16=0,subgroups=0,fp64=0 '" + self_exe() +
        "' --gtest_filter=DeviceLimitsChild.RuntimePlansWithTheProfile > '" + log + "' 2>&1";
    const int rc = std::system(cmd.c_str());
    const std::string out = slurp(log);
    std::remove(log.c_str());
    EXPECT_EQ(rc, 0) << out;
    EXPECT_NE(out.find("[  PASSED  ] 1 test"), std::string::npos) << out;
  }
}

// A profile below the floor of the portable kernels (work-groups of 128 items: attention_short.cl;
// the local memory the smallest plans need, 16 KiB: opencl::local_memory_floor) is refused with
// its reason, not left to fail in a launch. Device selection reads the capabilities anew on every
// call.
TEST(DeviceLimits, ProfileBelowTheFloorIsRefusedWithItsReason) {
  const DeviceEntry chosen = default_opencl_device();
  for (const std::string floor : {"work_group=64", "local_mem=12K"}) {
    ScopedEnv limits("KVARN_CL_DEVICE_LIMITS", floor);
    try {
      make_opencl_backend();
      ADD_FAILURE() << "a device limited by " << floor << " was accepted";
    } catch (const Unsupported& e) {
      EXPECT_NE(std::string(e.what()).find("needed"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(chosen.caps.device_name), std::string::npos) << e.what();
    }
  }
}

// --- kernel build failures ---------------------------------------------------------------------

// The build check of `kvarn-cl info` (try_build_kernels) succeeds on the shipped kernels. Its
// switch over Program has a default case (the attention programs come from attend_descriptors()),
// so a program without a case is found here, not by the compiler.
TEST(KernelBuild, BuildCheckBuildsEveryProgramOfTheShippedKernels) {
  const DeviceEntry chosen = default_opencl_device();
  const KernelBuildReport report = try_build_kernels(chosen.platform_index, chosen.device_index);
  EXPECT_TRUE(report.ok) << report.message << "\n" << report.build_log;
  EXPECT_NE(report.message.find("programs"), std::string::npos) << report.message;
  EXPECT_FALSE(report.kernel_variants.empty());
}

TEST(KernelBuild, FailureCarriesTheBuildLog) {
  const std::string dir = temp_dir("broken_kernels");
  for (const std::string& f : opencl::codec_files()) {
    std::ofstream out(dir + "/" + f);
    out << opencl::kernel_source(f);
    if (f == "quantize.cl") out << "\n__kernel void broken(void) { this_is_not_declared = 1; }\n";
  }
  {
    ScopedEnv env("KVARN_CL_KERNEL_DIR", dir);
    auto backend = make_opencl_backend();  // shares the device runtime and its program cache
    const RotatedTiles tiles = make_rotated_tiles(kParams, 1, 3);
    auto k = backend->allocate(tiles.k.size() * 2);
    auto v = backend->allocate(tiles.v.size() * 2);
    auto records = backend->allocate(RecordLayout::make(kParams).bytes);
    try {
      backend->quantize(kParams, *k, *v, {{0, 0}}, *records);
      ADD_FAILURE() << "a broken kernel file built";
    } catch (const KernelBuildError& e) {
      EXPECT_NE(e.build_log().find("this_is_not_declared"), std::string::npos) << e.build_log();
      EXPECT_NE(std::string(e.what()).find("--- build log ---"), std::string::npos);
      EXPECT_NE(std::string(e.what()).find(dir), std::string::npos) << e.what();
    }
    const DeviceEntry chosen = default_opencl_device();
    const KernelBuildReport report = try_build_kernels(chosen.platform_index, chosen.device_index);
    EXPECT_FALSE(report.ok);
    EXPECT_NE(report.build_log.find("this_is_not_declared"), std::string::npos) << report.message;
  }
  {
    ScopedEnv env("KVARN_CL_KERNEL_DIR", dir + "/missing");
    EXPECT_THROW(opencl::kernel_source("common.cl"), IoError);
  }
  for (const std::string& f : opencl::codec_files()) std::remove((dir + "/" + f).c_str());
  rmdir(dir.c_str());
}

// --- a caller's own context, queue and buffers -------------------------------------------------

TEST(CallerContext, BackendOnCallerObjectsAndWrappedBuffers) {
  const cl::Device device = cl_backend().runtime().device();
  cl::Context context(device);
  cl::CommandQueue queue(context, device);
  auto backend = make_opencl_backend(context(), device(), queue());
  ASSERT_EQ(backend->kind(), BackendKind::opencl);

  const std::size_t rows = 8;
  const std::vector<float> x = gaussian_rows(rows, kParams.head_dim, 11);
  cl::Buffer in_mem(context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, x.size() * 4,
                    const_cast<float*>(x.data()));
  cl::Buffer out_mem(context, CL_MEM_READ_WRITE, x.size() * 2);
  auto in = wrap_opencl_buffer(in_mem());
  auto out = wrap_opencl_buffer(out_mem());
  EXPECT_EQ(in->size(), x.size() * 4);
  EXPECT_EQ(opencl_mem(*out), out_mem());
  backend->rotate(kParams, *in, ElementType::f32, rows, *out, 0);
  std::vector<half_bits> got(x.size()), want(x.size());
  queue.enqueueReadBuffer(out_mem, CL_TRUE, 0, got.size() * 2, got.data());
  rotate_rows(x.data(), want.data(), rows, kParams.head_dim);
  EXPECT_EQ(got, want);
  EXPECT_THROW(make_opencl_backend(nullptr, device(), queue()), InvalidArgument);
}

// --- typed errors --------------------------------------------------------------------------------

TEST(Errors, BadArgumentsNameTheArgument) {
  auto& b = cl_backend();
  const RecordLayout l = RecordLayout::make(kParams);
  auto rows = b.allocate(std::size_t(l.group) * l.head_dim * 2);
  auto records = b.allocate(l.bytes);
  try {
    b.quantize(kParams, *rows, *rows, {{1, 0}}, *records);
    ADD_FAILURE();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("jobs[0].src_row = 1"), std::string::npos) << e.what();
  }
  try {
    b.quantize(kParams, *rows, *rows, {{0, 1}}, *records);
    ADD_FAILURE();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("dst_record = 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(b.dequantize(kParams, *records, {3}, Frame::rotated, *rows, *rows), InvalidArgument);
  EXPECT_THROW(
      b.rotate(CodecParams{Preset::k4v2_g128, 96, 8}, *rows, ElementType::f16, 1, *rows, 0),
      InvalidArgument);
  EXPECT_THROW(b.read(*rows, rows->size(), nullptr, 1), InvalidArgument);
  auto cpu = make_cpu_backend();
  auto host = cpu->allocate(rows->size());
  try {
    b.rotate(kParams, *host, ElementType::f16, 1, *rows, 0);
    ADD_FAILURE();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("rotate: in"), std::string::npos) << e.what();
  }
  EXPECT_THROW(b.allocate(std::numeric_limits<std::size_t>::max() / 2), OutOfMemory);
}

TEST(Errors, NonFiniteTilesAndCorruptRecords) {
  auto& b = cl_backend();
  const RecordLayout l = RecordLayout::make(kParams);
  RotatedTiles tiles = make_rotated_tiles(kParams, 2, 21);
  tiles.v[std::size_t(l.group) * l.head_dim + 77] = 0x7C00;  // +Inf in the V tile of job 1
  auto k = to_device(tiles.k);
  auto v = to_device(tiles.v);
  auto records = b.allocate(2 * l.bytes);
  try {
    b.quantize(kParams, *k, *v, {{0, 0}, {std::uint32_t(l.group), 1}}, *records);
    ADD_FAILURE() << "Inf was quantized";
  } catch (const NonFiniteInput& e) {
    EXPECT_NE(std::string(e.what()).find("value tile of jobs[1]"), std::string::npos) << e.what();
  }
  // A record whose s_row_K holds NaN.
  std::vector<std::uint8_t> rec(l.bytes);
  quantize_tile(kParams, tiles.k.data(), tiles.k.data(), rec.data());
  rec[l.s_row_k + 2 * 5] = 0x00;
  rec[l.s_row_k + 2 * 5 + 1] = 0x7E;
  auto pool = to_device(rec);
  // K and V rows into buffers of their own (one for both: the K and V work-groups would race).
  auto out_k = b.allocate(std::size_t(l.group) * l.head_dim * 2);
  auto out_v = b.allocate(std::size_t(l.group) * l.head_dim * 2);
  try {
    b.dequantize(kParams, *pool, {0}, Frame::rotated, *out_k, *out_v);
    ADD_FAILURE() << "a NaN scale was decoded";
  } catch (const CorruptRecord& e) {
    EXPECT_NE(std::string(e.what()).find("key scale"), std::string::npos) << e.what();
  }
}

TEST(Errors, OpenCLErrorsNameCallAndCode) {
  EXPECT_STREQ(opencl::cl_error_name(CL_OUT_OF_RESOURCES), "CL_OUT_OF_RESOURCES");
  EXPECT_STREQ(opencl::cl_error_name(-1001), "CL_PLATFORM_NOT_FOUND_KHR");
  try {
    opencl::throw_cl_error("launching x", "clEnqueueNDRangeKernel", CL_INVALID_KERNEL_ARGS);
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("clEnqueueNDRangeKernel"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("CL_INVALID_KERNEL_ARGS (-52)"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(opencl::throw_cl_error("allocate", "clCreateBuffer", CL_OUT_OF_RESOURCES,
                                      opencl::ClContext::allocation),
               OutOfMemory);
  EXPECT_THROW(opencl::throw_cl_error("run", "clEnqueueNDRangeKernel", CL_OUT_OF_RESOURCES),
               DeviceError);
  EXPECT_THROW(
      opencl::throw_cl_error("run", "clEnqueueNDRangeKernel", CL_MEM_OBJECT_ALLOCATION_FAILURE),
      OutOfMemory);
}

}  // namespace
}  // namespace kvarn_cl::test
