// The program binary cache cannot be turned against its user (issue 19, cases 1-4 and the orphaned
// temporaries of 14; trust model in src/opencl/program_binary_cache.hpp): a link planted at a
// temporary name is never written through, a folder of another user or writable by others is
// refused with one warning, an entry of another build is rebuilt even when its frame and checksum
// are right, lengths near 2^64 cannot wrap a check, and an entry that is a directory, a FIFO or a
// link to /dev/zero is a miss that neither throws nor hangs nor reads without end.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/scoped_env.hpp"
#include "opencl/device_runtime.hpp"
#include "opencl/kernel_sources.hpp"
#include "opencl/program_binary_cache.hpp"
#include "opencl/program_table.hpp"
#include "opencl_fixture.hpp"

namespace kvarn_cl::test {
namespace {

using opencl::ProgramBinaryCache;

// A fresh folder (0700, ours) for one test, removed with everything in it.
class Folder {
 public:
  explicit Folder(const char* tag) {
    std::string t = std::string(::testing::TempDir()) + "kvarn_trust_" + tag + "_XXXXXX";
    if (::mkdtemp(t.data()) != nullptr) path_ = t;
  }
  ~Folder() {
    if (!path_.empty())
      std::system(("chmod -R u+rwx '" + path_ + "' 2>/dev/null; rm -rf '" + path_ + "'").c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_bytes(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

void put_u64(std::vector<unsigned char>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<unsigned char>(v >> (8 * i)));
}

const std::vector<unsigned char> kBinary{1, 2, 3, 4, 5, 250, 0, 7};

// Case 1: the temporary file used to be "<entry>.tmp.<pid>", opened with a truncating ofstream
// that followed a link planted there: a user who could write the folder made a root-run command
// overwrite any file. Temporaries are fresh names created O_EXCL|O_NOFOLLOW now.
TEST(ProgramCacheTrust, LinkAtTheOldTemporaryNameIsNotWrittenThrough) {
  Folder f("link");
  const std::string victim = f.path() + "/victim";
  std::ofstream(victim) << "precious";
  const ProgramBinaryCache cache(f.path() + "/cache");
  ASSERT_TRUE(cache.store("warm-up", kBinary));  // creates the folder
  const std::string planted = cache.path_for("key") + ".tmp." + std::to_string(::getpid());
  ASSERT_EQ(::symlink(victim.c_str(), planted.c_str()), 0);
  EXPECT_TRUE(cache.store("key", kBinary));
  EXPECT_EQ(read_text(victim), "precious");
  ASSERT_TRUE(cache.load("key").has_value());
  EXPECT_EQ(*cache.load("key"), kBinary);
  // A link planted at the entry's own name is replaced by the rename, never followed.
  ::unlink(cache.path_for("key").c_str());
  ASSERT_EQ(::symlink(victim.c_str(), cache.path_for("key").c_str()), 0);
  EXPECT_FALSE(cache.load("key").has_value());  // O_NOFOLLOW: a link is no entry
  EXPECT_TRUE(cache.store("key", kBinary));
  EXPECT_EQ(read_text(victim), "precious");
  struct stat st {};
  ASSERT_EQ(::lstat(cache.path_for("key").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
}

// Case 1: an existing folder was used whatever its owner and mode. The folder is created 0700,
// and one that is writable by group or others, owned by another user or a link is refused:
// the cache is off and one warning (not one per runtime) goes to stderr.
TEST(ProgramCacheTrust, UnsafeFoldersAreRefusedWithOneWarning) {
  Folder f("folder");
  const DeviceCapabilities caps;  // no platform: the cache is on only when asked for
  ScopedEnv on("KVARN_CL_CACHE", "1");
  {
    const std::string fresh = f.path() + "/new/cache";
    ScopedEnv dir("KVARN_CL_CACHE_DIR", fresh);
    std::string why;
    ASSERT_TRUE(ProgramBinaryCache::for_device(caps, &why).has_value()) << why;
    ASSERT_TRUE(ProgramBinaryCache(fresh).store("k", kBinary));
    struct stat st {};
    ASSERT_EQ(::stat(fresh.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0700u);
  }
  const std::string open_dir = f.path() + "/open";
  ASSERT_EQ(::mkdir(open_dir.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(open_dir.c_str(), 0777), 0);
  {
    ScopedEnv dir("KVARN_CL_CACHE_DIR", open_dir);
    ::testing::internal::CaptureStderr();
    std::string why;
    EXPECT_FALSE(ProgramBinaryCache::for_device(caps, &why).has_value());
    EXPECT_FALSE(ProgramBinaryCache::for_device(caps).has_value());
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(why.find("writable by others"), std::string::npos) << why;
    EXPECT_NE(err.find("kvarn_cl: warning: the program cache folder '" + open_dir + "'"),
              std::string::npos)
        << err;
    EXPECT_EQ(err.find("warning", err.find("warning") + 1), std::string::npos)
        << "warned twice: " << err;
    // Even a cache object made directly neither reads nor writes there.
    EXPECT_FALSE(ProgramBinaryCache(open_dir).store("k", kBinary));
  }
  const std::string link = f.path() + "/link";
  ASSERT_EQ(::symlink((f.path() + "/new/cache").c_str(), link.c_str()), 0);
  {
    ScopedEnv dir("KVARN_CL_CACHE_DIR", link);
    std::string why;
    ::testing::internal::CaptureStderr();
    EXPECT_FALSE(ProgramBinaryCache::for_device(caps, &why).has_value());
    (void)::testing::internal::GetCapturedStderr();
    EXPECT_NE(why.find("symbolic link"), std::string::npos) << why;
  }
  // Another user's folder (needs root to make one; the rule itself is checked without).
  std::string why;
  EXPECT_FALSE(ProgramBinaryCache::folder_is_safe(1234, S_IFDIR | 0700, 1000, &why));
  EXPECT_NE(why.find("owned by uid 1234"), std::string::npos) << why;
  EXPECT_FALSE(ProgramBinaryCache::folder_is_safe(1000, S_IFDIR | 0770, 1000, &why));
  EXPECT_NE(why.find("group"), std::string::npos) << why;
  EXPECT_TRUE(ProgramBinaryCache::folder_is_safe(1000, S_IFDIR | 0755, 1000, &why));
  if (::geteuid() == 0) {
    const std::string theirs = f.path() + "/theirs";
    ASSERT_EQ(::mkdir(theirs.c_str(), 0700), 0);
    ASSERT_EQ(::chown(theirs.c_str(), 65534, 65534), 0);
    ScopedEnv dir("KVARN_CL_CACHE_DIR", theirs);
    ::testing::internal::CaptureStderr();
    EXPECT_FALSE(ProgramBinaryCache::for_device(caps, &why).has_value());
    (void)::testing::internal::GetCapturedStderr();
    EXPECT_NE(why.find("owned by uid 65534"), std::string::npos) << why;
  }
}

// Case 3: a 29-byte entry with bin_len = 2^64 - 8 wrapped the size check and threw
// "cannot create std::vector" out of the load on every run. Every length is checked against
// what remains now.
TEST(ProgramCacheTrust, LengthsNear2To64AreAMiss) {
  const std::string key = "key";
  const std::vector<unsigned char> good = ProgramBinaryCache::encode_entry(key, kBinary);
  ASSERT_TRUE(ProgramBinaryCache::decode_entry(good.data(), good.size(), key).has_value());
  const std::size_t header = 8 + 8 + 8 + key.size();  // magic, stamp, key length, key
  for (std::uint64_t bin_len : {~std::uint64_t(0) - 7, ~std::uint64_t(0), std::uint64_t(1) << 63}) {
    std::vector<unsigned char> bad(good.begin(), good.begin() + std::ptrdiff_t(header));
    put_u64(bad, bin_len);
    bad.insert(bad.end(), {1, 2, 3, 4, 5});
    EXPECT_FALSE(ProgramBinaryCache::decode_entry(bad.data(), bad.size(), key).has_value());
  }
  for (std::uint64_t key_len : {~std::uint64_t(0), ~std::uint64_t(0) - 20}) {
    std::vector<unsigned char> bad(good.begin(), good.begin() + 16);
    put_u64(bad, key_len);
    bad.insert(bad.end(), {'k', 'e', 'y'});
    EXPECT_FALSE(ProgramBinaryCache::decode_entry(bad.data(), bad.size(), key).has_value());
  }
  // Through a file, as a process finds it.
  Folder f("wrap");
  const ProgramBinaryCache cache(f.path());
  std::vector<unsigned char> bad(good.begin(), good.begin() + std::ptrdiff_t(header));
  put_u64(bad, ~std::uint64_t(0) - 7);
  write_bytes(cache.path_for(key), bad);
  EXPECT_NO_THROW(EXPECT_FALSE(cache.load(key).has_value()));
}

// Case 4: a directory at an entry's path threw "basic_filebuf::underflow ... Is a directory",
// a FIFO hung forever, a link to /dev/zero was read until memory ran out. Each is a miss now,
// and a store over the directory fails quietly.
TEST(ProgramCacheTrust, EntriesThatAreNoRegularFilesAreAMiss) {
  Folder f("special");
  const ProgramBinaryCache cache(f.path());
  ASSERT_EQ(::mkdir(cache.path_for("dir").c_str(), 0700), 0);
  EXPECT_NO_THROW(EXPECT_FALSE(cache.load("dir").has_value()));
  EXPECT_NO_THROW(EXPECT_FALSE(cache.store("dir", kBinary)));
  ASSERT_EQ(::symlink("/dev/zero", cache.path_for("zero").c_str()), 0);
  EXPECT_FALSE(cache.load("zero").has_value());
  const std::string fifo = cache.path_for("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // A reader that blocked on the FIFO (as load used to) is released by this writer; one that
  // never blocks does not need it.
  std::atomic<bool> done{false};
  std::thread unblocker([&] {
    while (!done) {
      const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) ::close(fd);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  EXPECT_FALSE(cache.load("fifo").has_value());
  done = true;
  unblocker.join();
  // A store replaces the FIFO with a regular entry.
  EXPECT_TRUE(cache.store("fifo", kBinary));
  EXPECT_EQ(*cache.load("fifo"), kBinary);
}

// Case 14: temporaries of killed processes were never removed. A store removes those older than
// an hour (only names of this cache's temporaries) and leaves fresh ones to their writers.
TEST(ProgramCacheTrust, OrphanedTemporariesAreRemoved) {
  Folder f("orphans");
  const ProgramBinaryCache cache(f.path());
  const std::string old_temp = f.path() + "/0123456789abcdef.clbin.tmp.999.deadbeef";
  const std::string fresh_temp = f.path() + "/0123456789abcdef.clbin.tmp.998.feedf00d";
  const std::string other = f.path() + "/notes.txt";
  for (const std::string& p : {old_temp, fresh_temp, other}) std::ofstream(p) << "x";
  const struct timespec two_hours_ago[2] = {{std::time(nullptr) - 7200, 0},
                                            {std::time(nullptr) - 7200, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, old_temp.c_str(), two_hours_ago, 0), 0);
  ASSERT_EQ(::utimensat(AT_FDCWD, other.c_str(), two_hours_ago, 0), 0);
  ASSERT_TRUE(cache.store("key", kBinary));
  struct stat st {};
  EXPECT_NE(::stat(old_temp.c_str(), &st), 0);
  EXPECT_EQ(::stat(fresh_temp.c_str(), &st), 0);
  EXPECT_EQ(::stat(other.c_str(), &st), 0);
}

// Case 2: an entry was trusted on its frame and checksum alone: an entry framed with one build's
// key around another build's binary ran the other program (wrong output or heap corruption,
// every run). The loaded program must carry its own build's stamp kernel now; an entry that
// does not is rebuilt from source and rewritten, and the rewritten entry is then used.
TEST(ProgramCacheTrust, EntryOfAnotherBuildIsRebuilt) {
  opencl::OpenCLBackend& be = cl_backend();
  Folder f("swap");
  ScopedEnv on("KVARN_CL_CACHE", "1");
  ScopedEnv dir("KVARN_CL_CACHE_DIR", f.path());
  const opencl::ProgramSpec wanted =
      opencl::program_spec(opencl::Program::copy_rows, {}, be.runtime());
  const opencl::ProgramSpec other =
      opencl::program_spec(opencl::Program::check_rows, {}, be.runtime());
  auto fresh_runtime = [&] {
    const cl::Device& device = be.runtime().device();
    return opencl::DeviceRuntime::for_context(cl::Context(device), device);
  };
  auto key_of = [&](const opencl::ProgramSpec& spec) {
    return opencl::build_key(be.caps(), opencl::program_source(spec.files),
                             "-cl-std=CL1.2 " + spec.options);
  };
  {
    auto rt = fresh_runtime();
    rt->program(wanted);
    const cl::Program p = rt->program(other);
    // Programs built for the cache carry their stamp.
    EXPECT_NE(p.getInfo<CL_PROGRAM_KERNEL_NAMES>().find(
                  opencl::stamp_kernel_name(opencl::build_stamp(key_of(other)))),
              std::string::npos);
    EXPECT_EQ(rt->program_cache_stats().disk_stores, 2);
  }
  const ProgramBinaryCache cache(f.path());
  const auto other_binary = cache.load(key_of(other));
  ASSERT_TRUE(other_binary.has_value());
  // The frame, key and checksum of `wanted` around the binary of `other`.
  write_bytes(cache.path_for(key_of(wanted)),
              ProgramBinaryCache::encode_entry(key_of(wanted), *other_binary));
  {
    auto rt = fresh_runtime();
    const cl::Program p = rt->program(wanted);
    EXPECT_NO_THROW(cl::Kernel(p, "kvarn_copy_rows"));
    const auto st = rt->program_cache_stats();
    EXPECT_EQ(st.disk_hits, 0);
    EXPECT_EQ(st.disk_rejected, 1);
    EXPECT_EQ(st.source_builds, 1);
    EXPECT_EQ(st.disk_stores, 1);
  }
  {
    auto rt = fresh_runtime();
    const cl::Program p = rt->program(wanted);
    EXPECT_NO_THROW(cl::Kernel(p, "kvarn_copy_rows"));
    EXPECT_EQ(rt->program_cache_stats().disk_hits, 1);
    EXPECT_EQ(rt->program_cache_stats().source_builds, 0);
  }
}

}  // namespace
}  // namespace kvarn_cl::test
