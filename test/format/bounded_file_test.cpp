// The bounded file reader (src/io/bounded_file.hpp) on every kind of path it may be given: a
// regular file within and beyond its cap, a procfs file (size 0, content), a FIFO and a device
// refused unless streams are allowed and then read to their end or to the cap, a directory, a
// link where links are not allowed, a path with a NUL.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "io/bounded_file.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl::test {
namespace {

using io::ReadLimits;

class BoundedFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = std::string(::testing::TempDir()) + "kvarn_bounded_XXXXXX";
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    dir = t;
  }
  void TearDown() override { std::system(("rm -rf '" + dir + "'").c_str()); }
  std::string path(const char* name) const { return dir + "/" + name; }
  std::string dir;
};

template <typename E, typename F>
void expect_error(F f, const std::string& mention) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning '" << mention << "'";
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(mention), std::string::npos) << e.what();
  }
}

TEST_F(BoundedFile, RegularFilesWithinAndBeyondTheCap) {
  std::ofstream(path("ten")) << "0123456789";
  EXPECT_EQ(io::read_text_file(path("ten"), {10, false, true}, "f"), "0123456789");
  expect_error<IoError>(
      [&] {
        io::read_file(path("ten"), {9, false, true}, "f 'ten'");
      },
      "f 'ten': 10 bytes, more than the limit of 9 bytes");
  std::ofstream(path("empty")).flush();
  EXPECT_TRUE(io::read_file(path("empty"), {10, false, true}, "f").empty());
  expect_error<IoError>(
      [&] {
        io::read_file(path("missing"), {10, false, true}, "f");
      },
      "cannot open");
}

TEST_F(BoundedFile, ProcfsFilesAreReadAlthoughTheyReportSizeZero) {
  struct stat st {};
  ASSERT_EQ(::stat("/proc/self/status", &st), 0);
  ASSERT_EQ(st.st_size, 0);
  const std::string status =
      io::read_text_file("/proc/self/status", {1 << 20, false, true}, "status");
  EXPECT_NE(status.find("Name:"), std::string::npos) << status;
  // The cap holds for them too.
  expect_error<IoError>(
      [&] {
        io::read_file("/proc/self/status", {16, false, true}, "status");
      },
      "more than the limit of 16 bytes");
}

TEST_F(BoundedFile, StreamsOnlyWhenAllowed) {
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
  expect_error<IoError>(
      [&] {
        io::read_file(path("fifo"), {100, false, true}, "fifo");
      },
      "not a regular file (a FIFO)");
  expect_error<IoError>(
      [&] {
        io::read_file("/dev/zero", {100, false, true}, "zero");
      },
      "not a regular file (a character device)");
  // Allowed: a FIFO is read to its end, /dev/zero to the cap and then refused.
  std::thread writer([&] {
    const int fd = ::open(path("fifo").c_str(), O_WRONLY);
    if (fd >= 0) {
      (void)!::write(fd, "through a pipe", 14);
      ::close(fd);
    }
  });
  const std::string got = io::read_text_file(path("fifo"), {100, true, true}, "fifo");
  writer.join();
  EXPECT_EQ(got, "through a pipe");
  expect_error<IoError>(
      [&] {
        io::read_file("/dev/zero", {1000, true, true}, "zero");
      },
      "more than the limit of 1000 bytes");
}

TEST_F(BoundedFile, DirectoriesLinksAndNulAreRefused) {
  expect_error<IoError>(
      [&] {
        io::read_file(dir, {100, true, true}, "d");
      },
      "not a regular file (a directory)");
  std::ofstream(path("target")) << "x";
  ASSERT_EQ(::symlink(path("target").c_str(), path("link").c_str()), 0);
  EXPECT_EQ(io::read_text_file(path("link"), {100, false, true}, "link"), "x");
  expect_error<IoError>(
      [&] {
        io::read_file(path("link"), {100, false, false}, "link");
      },
      "symbolic link");
  const std::string with_nul = path("target") + std::string(1, '\0') + "more";
  expect_error<InvalidArgument>(
      [&] {
        io::read_file(with_nul, {100, false, true}, "p");
      },
      "contains a NUL character");
  expect_error<InvalidArgument>([&] { io::read_file("", {100, false, true}, "p"); }, "empty");
}

}  // namespace
}  // namespace kvarn_cl::test
