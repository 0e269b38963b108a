// Issue 19, case 13: on a CPU OpenCL device (PoCL) a cache within the device's reported memory but
// beyond what the process may map (prlimit --as) was created, and its first append aborted
// inside PoCL. Where the device is the host CPU the process's own limits apply, and such a cache
// is refused at construction with OutOfMemory; the CPU backend follows the same limits.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>

#include "kvarn_cl/cache.hpp"
#include "kvarn_cl/error.hpp"
#include "opencl_fixture.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KVARN_CL_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KVARN_CL_TEST_SANITIZED 1
#endif
#endif

namespace kvarn_cl::test {
namespace {

[[maybe_unused]] std::size_t address_space_in_use() {
  std::ifstream in("/proc/self/statm");
  unsigned long long pages = 0;
  in >> pages;
  return std::size_t(pages) * std::size_t(::sysconf(_SC_PAGESIZE));
}

// Lowers RLIMIT_AS for a scope (the soft limit only, so that it can be raised back).
class AddressSpaceLimit {
 public:
  explicit AddressSpaceLimit(std::size_t bytes) {
    ok_ = ::getrlimit(RLIMIT_AS, &saved_) == 0;
    struct rlimit low = saved_;
    low.rlim_cur = bytes;
    ok_ = ok_ && (saved_.rlim_max == RLIM_INFINITY || bytes <= saved_.rlim_max) &&
          ::setrlimit(RLIMIT_AS, &low) == 0;
  }
  ~AddressSpaceLimit() {
    if (ok_) ::setrlimit(RLIMIT_AS, &saved_);
  }
  bool ok() const { return ok_; }

 private:
  struct rlimit saved_ {};
  bool ok_ = false;
};

TEST(HostLimits, CacheBeyondTheProcessAddressSpaceLimitIsRefused) {
#ifdef KVARN_CL_TEST_SANITIZED
  GTEST_SKIP() << "sanitizer runtimes reserve terabytes of address space: no RLIMIT_AS test";
#else
  opencl::OpenCLBackend& cl = cl_backend();
  if (cl.caps().type != "cpu")
    GTEST_SKIP() << "the device is not the host CPU: " << cl.caps().device_name;
  // About 1 GiB of pools: 8 layers x 8 KV heads x 4 sequences x 256 tiles of 13,824 B, plus fp16.
  auto config = [](std::shared_ptr<Backend> be) {
    CacheConfig cfg;
    cfg.num_layers = 8;
    cfg.num_kv_heads = 8;
    cfg.max_sequences = 4;
    cfg.max_tokens_per_sequence = 32768;
    cfg.backend = std::move(be);
    return cfg;
  };
  std::shared_ptr<Backend> shared_cl(&cl, [](Backend*) {});  // the fixture owns it
  std::shared_ptr<Backend> cpu(make_cpu_backend(CpuThreads{1}));
  const std::size_t room = std::size_t(256) << 20;
  std::size_t cl_capacity = 0, cpu_capacity = 0;
  bool cl_refused = false, cpu_refused = false;
  std::string cl_message;
  {
    const AddressSpaceLimit limit(address_space_in_use() + room);
    if (!limit.ok()) GTEST_SKIP() << "cannot lower RLIMIT_AS here";
    cl_capacity = cl.memory_capacity();
    cpu_capacity = cpu->memory_capacity();
    try {
      KVCache cache(config(shared_cl));
    } catch (const OutOfMemory& e) {
      cl_refused = true;
      cl_message = e.what();
    }
    try {
      KVCache cache(config(cpu));
    } catch (const OutOfMemory&) {
      cpu_refused = true;
    }
  }
  EXPECT_LE(cl_capacity, room);
  EXPECT_LE(cpu_capacity, room);
  EXPECT_TRUE(cl_refused);
  EXPECT_TRUE(cpu_refused);
  // Refused by the construction check, before anything was allocated.
  EXPECT_NE(cl_message.find("can hold"), std::string::npos) << cl_message;
  // Without the limit the same cache fits the device.
  EXPECT_GT(cl.memory_capacity(), room);
#endif
}

}  // namespace
}  // namespace kvarn_cl::test
