// The on-disk program binary cache (src/opencl/program_binary_cache.hpp): entries round-trip,
// every kind of damage is a miss, and a second device runtime (as a second process would have)
// loads its programs from the cache instead of compiling them. Runs on PoCL with the cache
// forced on (KVARN_CL_CACHE=1), since PoCL normally caches on its own.
#include <gtest/gtest.h>

#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "opencl/device_runtime.hpp"
#include "opencl/program_binary_cache.hpp"
#include "opencl/program_table.hpp"
#include "opencl_fixture.hpp"

namespace kvarn_cl::test {
namespace {

std::string temp_dir(const char* tag) {
  std::string t =
      std::string(::testing::TempDir()) + "kvarn_cache_" + tag + "_" + std::to_string(::getpid());
  return t;
}

std::vector<unsigned char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_all(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

TEST(ProgramBinaryCache, RoundTripAndDamageIsAMiss) {
  const opencl::ProgramBinaryCache cache(temp_dir("unit") + "/nested/dir");
  const std::vector<unsigned char> bin{1, 2, 3, 4, 5, 250, 0, 7};
  EXPECT_FALSE(cache.load("key-a").has_value());
  ASSERT_TRUE(cache.store("key-a", bin));
  ASSERT_TRUE(cache.load("key-a").has_value());
  EXPECT_EQ(*cache.load("key-a"), bin);
  const std::string path = cache.path_for("key-a");
  const std::vector<unsigned char> good = read_all(path);
  // A flipped byte of the binary (checksum), a truncated file, another key, garbage, empty.
  std::vector<unsigned char> bad = good;
  bad[bad.size() - 10] ^= 0x40;
  write_all(path, bad);
  EXPECT_FALSE(cache.load("key-a").has_value());
  write_all(path, {good.begin(), good.begin() + std::ptrdiff_t(good.size() / 2)});
  EXPECT_FALSE(cache.load("key-a").has_value());
  bad = good;
  bad[8 + 8 + 8] ^= 1;  // first byte of the stored key (after magic, stamp and key length)
  write_all(path, bad);
  EXPECT_FALSE(cache.load("key-a").has_value());
  write_all(path, {'n', 'o', 't', ' ', 'a', 'n', ' ', 'e', 'n', 't', 'r', 'y'});
  EXPECT_FALSE(cache.load("key-a").has_value());
  write_all(path, {});
  EXPECT_FALSE(cache.load("key-a").has_value());
  ASSERT_TRUE(cache.store("key-a", bin));  // rewritten in place
  EXPECT_EQ(*cache.load("key-a"), bin);
  // An unwritable folder: store reports false, nothing throws.
  const opencl::ProgramBinaryCache nowhere("/proc/kvarn_cl_cannot_be_here");
  EXPECT_FALSE(nowhere.store("k", bin));
  EXPECT_FALSE(nowhere.load("k").has_value());
}

TEST(ProgramBinaryCache, SecondRuntimeLoadsInsteadOfCompiling) {
  opencl::OpenCLBackend& be = cl_backend();
  const std::string dir = temp_dir("runtime");
  ::setenv("KVARN_CL_CACHE", "1", 1);
  ::setenv("KVARN_CL_CACHE_DIR", dir.c_str(), 1);
  const opencl::ProgramSpec spec =
      opencl::program_spec(opencl::Program::copy_rows, {}, be.runtime());
  auto fresh_runtime = [&] {
    // A new context on the same device: a runtime of its own, with an empty in-process cache.
    const cl::Device& device = be.runtime().device();
    return opencl::DeviceRuntime::for_context(cl::Context(device), device);
  };
  {
    auto rt = fresh_runtime();
    EXPECT_NE(rt->disk_cache_state().find(dir), std::string::npos) << rt->disk_cache_state();
    rt->program(spec);
    const auto st = rt->program_cache_stats();
    EXPECT_EQ(st.source_builds, 1);
    EXPECT_EQ(st.disk_stores, 1);
  }
  {
    auto rt = fresh_runtime();
    cl::Program p = rt->program(spec);
    EXPECT_NO_THROW(cl::Kernel(p, "kvarn_copy_rows"));
    const auto st = rt->program_cache_stats();
    EXPECT_EQ(st.disk_hits, 1);
    EXPECT_EQ(st.source_builds, 0);
  }
  {
    // Damage every entry: the next runtime compiles again and rewrites them.
    const std::string cmd = "for f in '" + dir + "'/*.clbin; do printf garbage > \"$f\"; done";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    auto rt = fresh_runtime();
    EXPECT_NO_THROW(rt->program(spec));
    const auto st = rt->program_cache_stats();
    EXPECT_EQ(st.disk_hits, 0);
    EXPECT_EQ(st.source_builds, 1);
    EXPECT_EQ(st.disk_stores, 1);
  }
  ::setenv("KVARN_CL_CACHE", "0", 1);
  {
    auto rt = fresh_runtime();
    EXPECT_NE(rt->disk_cache_state().find("off"), std::string::npos);
  }
  ::unsetenv("KVARN_CL_CACHE");
  ::unsetenv("KVARN_CL_CACHE_DIR");
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace
}  // namespace kvarn_cl::test
