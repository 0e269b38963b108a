// Issue 19, through the real program: what kvarn-cl reads is bounded (a FIFO or a device given as
// a file is refused, not waited on or read forever; procfs files are read), what it writes to
// stdout must arrive (/dev/full is exit 4), a file-size limit is exit 4 rather than SIGXFSZ,
// a device index too large for an int is "no such device" (and `auto` falls back), `auto` also
// falls back when an attention program does not build, KVARN_CL_THREADS mistakes are usage
// errors, and file text in messages cannot drive the terminal.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <iterator>
#include <thread>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_runner.hpp"
#include "common/test_support.hpp"

using namespace kvarn_cl;
using kvarn_cl::test::CliResult;
using kvarn_cl::test::CliSandbox;

namespace {

constexpr int kUsage = 2, kInput = 3, kIo = 4, kDevice = 5;
constexpr int D = 64, G = 128;

bool mentions(const CliResult& r, const std::string& text) {
  return r.err.find(text) != std::string::npos;
}

class CliReliability : public ::testing::Test {
 protected:
  void SetUp() override {
    box.write_halves("k.f16", test::to_half(test::gaussian_rows(2 * G, D, 1, {3})));
    box.write_halves("v.f16", test::to_half(test::gaussian_rows(2 * G, D, 2)));
    box.write_halves("q.f16", test::to_half(test::gaussian_rows(2, D, 3)));
    write_text("plan.txt", "0 k4v2_g128\n1 k4v4_g128\n");
  }
  void write_text(const std::string& name, const std::string& text) const {
    box.write_bytes(name, std::vector<std::uint8_t>(text.begin(), text.end()));
  }
  static std::vector<std::string> quantize(const std::string& out, const std::string& k = "k.f16",
                                           const std::string& backend = "cpu") {
    return {"quantize", "--preset", "k4v2_g128", "--head-dim", std::to_string(D), "--backend",
            backend,    "--k",      k,           "--v",        "v.f16",           "--out",
            out};
  }
  static std::vector<std::string> attend(const std::string& plan,
                                         const std::string& backend = "cpu") {
    return {"attend",
            "--layer-presets",
            plan,
            "--head-dim",
            std::to_string(D),
            "--q-heads",
            "2",
            "--kv-heads",
            "1",
            "--q",
            "q.f16",
            "--k",
            "k.f16",
            "--v",
            "v.f16",
            "--out",
            "o.f32",
            "--backend",
            backend};
  }
  CliSandbox box;
};

// While `run` runs, a FIFO without a writer is opened for writing now and then and closed at
// once: a reader that blocked on the FIFO (as kvarn-cl used to) then sees its end instead of
// hanging the test forever; a reader that never waits is not affected.
template <typename Run>
CliResult with_fifo_unblocker(const std::string& fifo, Run run) {
  std::atomic<bool> done{false};
  std::thread unblocker([&] {
    while (!done) {
      const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) ::close(fd);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  const CliResult r = run();
  done = true;
  unblocker.join();
  return r;
}

}  // namespace

// Case 5: --layer-presets given a FIFO used to hang; /dev/zero and /dev/urandom were read without
// limit. Each is refused now as not a regular file (exit 4), and no output appears.
TEST_F(CliReliability, LayerPresetsFromAFifoOrADeviceAreRefused) {
  const std::string fifo = box.path("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const CliResult r = with_fifo_unblocker(fifo, [&] { return box.run(attend("fifo")); });
  EXPECT_EQ(r.exit_code, kIo) << r.err;
  EXPECT_TRUE(mentions(r, "layer-preset file 'fifo': not a regular file (a FIFO)")) << r.err;
  for (const char* device : {"/dev/zero", "/dev/urandom"}) {
    const CliResult d = box.run(attend(device));
    EXPECT_EQ(d.exit_code, kIo) << d.err;
    EXPECT_TRUE(mentions(d, "not a regular file (a character device)")) << d.err;
  }
  EXPECT_FALSE(box.exists("o.f32"));
}

// A FIFO given as --k was refused before (stat), but a FIFO swapped in after the check could
// hang the read; the bounded reader checks the descriptor it reads. The message says what it is.
TEST_F(CliReliability, InputFifoIsRefusedWithItsKind) {
  const std::string fifo = box.path("kfifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const CliResult r =
      with_fifo_unblocker(fifo, [&] { return box.run(quantize("o.kvarn", "kfifo")); });
  EXPECT_EQ(r.exit_code, kIo) << r.err;
  EXPECT_TRUE(mentions(r, "--k 'kfifo': not a regular file (a FIFO)")) << r.err;
}

// Case 6: procfs files report size 0; kvarn-cl used to call them empty without reading them.
// /proc/self/status is read now, and refused for its real size (not a whole number of rows).
TEST_F(CliReliability, ProcfsFilesAreReadAlthoughTheyReportSizeZero) {
  const CliResult r = box.run(quantize("o.kvarn", "/proc/self/status"));
  EXPECT_EQ(r.exit_code, kInput) << r.err;
  EXPECT_FALSE(mentions(r, "empty file")) << r.err;
  EXPECT_TRUE(mentions(r, "--k '/proc/self/status'")) << r.err;
  // What the size check then says depends on how long the process's status text is (a whole
  // number of rows or not): either way the file was read, with its real size.
  EXPECT_TRUE(mentions(r, "fp16 values") || mentions(r, "is not a multiple of the tile size"))
      << r.err;
}

// Case 10: output to stdout that cannot be written (> /dev/full) used to be exit 0 in silence.
TEST_F(CliReliability, StdoutThatCannotBeWrittenIsExit4) {
  const std::vector<std::vector<std::string>> commands = {
      quantize("o.kvarn"),
      {"info"},
      {"--help"},
      {"quantize", "--help"},
      {"demo", "--tokens", "256", "--sequences", "1", "--kv-heads", "1", "--q-heads", "1",
       "--head-dim", "64", "--reps", "1", "--backend", "cpu"}};
  for (const auto& args : commands) {
    SCOPED_TRACE(args[0] + (args.size() > 1 ? " " + args[1] : ""));
    // No OpenCL platform (ocl-icd reads its drivers from OCL_ICD_VENDORS): `info` then has no
    // kernels to build, and stdout is what is tested.
    const CliResult r = box.run_in_shell("export OCL_ICD_VENDORS=/nonexistent", args, "/dev/full");
    EXPECT_EQ(r.exit_code, kIo) << r.err;
    EXPECT_TRUE(mentions(r, "kvarn-cl: error: standard output: write failed")) << r.err;
  }
  // The quantize output itself was complete and is kept: only the summary line was lost.
  EXPECT_EQ(box.read_bytes("o.kvarn").size(), std::size_t(2) * 7296);  // 2 records, D 64
}

// Case 11: past the file-size limit the process used to be killed by SIGXFSZ (exit 153); it is
// a write error now (exit 4), and the unfinished output is not left behind.
TEST_F(CliReliability, FileSizeLimitIsAWriteError) {
  const auto before = box.listing();
  // 8 blocks (4 KiB in dash's 512-byte units, 8 KiB in bash's) against 2 records of 4 KiB+.
  const CliResult r = box.run_in_shell("ulimit -f 8", quantize("o.kvarn"));
  EXPECT_EQ(r.exit_code, kIo) << "(-1 = killed by a signal) " << r.err;
  EXPECT_TRUE(mentions(r, "--out 'o.kvarn': write failed")) << r.err;
  EXPECT_EQ(box.listing(), before);
}

// Case 9: an index too large for an int used to escape as "internal error: stoi" (exit 1), and
// `auto` did not fall back. It matches no device now: auto uses the CPU, opencl is exit 5.
TEST_F(CliReliability, HugeDeviceIndexMatchesNoDevice) {
  for (const char* var : {"KVARN_CL_DEVICE", "KVARN_CL_PLATFORM"}) {
    SCOPED_TRACE(var);
    const std::string setup = std::string("export ") + var + "=99999999999";
    if (std::string(var) == "KVARN_CL_DEVICE") {  // (info builds every kernel: once is enough)
      const CliResult info = box.run_in_shell(setup, {"info"});
      EXPECT_EQ(info.exit_code, 0) << info.err;
      EXPECT_FALSE(mentions(info, "internal error")) << info.err;
    }
    const CliResult autob = box.run_in_shell(setup, quantize("a.kvarn", "k.f16", "auto"));
    EXPECT_EQ(autob.exit_code, 0) << autob.err;
#if KVARN_CL_WITH_OPENCL
    const CliResult cl = box.run_in_shell(setup, quantize("c.kvarn", "k.f16", "opencl"));
    EXPECT_EQ(cl.exit_code, kDevice) << cl.err;
    EXPECT_TRUE(mentions(cl, "99999999999")) << cl.err;
#endif
  }
}

// Case 14: a malformed KVARN_CL_THREADS is a usage error (exit 2), not rejected input data.
TEST_F(CliReliability, BadThreadCountIsAUsageError) {
  for (const char* value : {"abc", "0", "99999999999999999999", "-3"}) {
    SCOPED_TRACE(value);
    const CliResult r = box.run_in_shell(std::string("export KVARN_CL_THREADS='") + value + "'",
                                         quantize("o.kvarn"));
    EXPECT_EQ(r.exit_code, kUsage) << r.err;
    EXPECT_TRUE(mentions(r, "KVARN_CL_THREADS")) << r.err;
  }
  EXPECT_FALSE(box.exists("o.kvarn"));
}

// Case 14: layer numbers "+0" and "00" were accepted, unlike every other integer; text from the
// file was echoed raw, so a crafted file could send escape sequences to the terminal.
TEST_F(CliReliability, LayerNumbersHaveOneSpellingAndFileTextIsEscaped) {
  for (const char* plan : {"+0 k4v2_g128\n", "00 k4v2_g128\n", "0 k4v2_g128\n01 k4v2_g128\n"}) {
    SCOPED_TRACE(plan);
    write_text("bad.txt", plan);
    const CliResult r = box.run(attend("bad.txt"));
    EXPECT_EQ(r.exit_code, kUsage) << r.err;
    EXPECT_TRUE(mentions(r, "was expected")) << r.err;
  }
  write_text("evil.txt", "0 \x1b]0;owned\x07\x1b[31mk4v2\n");
  const CliResult r = box.run(attend("evil.txt"));
  EXPECT_EQ(r.exit_code, kUsage) << r.err;
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\x07'), std::string::npos) << r.err;
  EXPECT_TRUE(mentions(r, "\\x1b")) << r.err;
}

// Case 12: `auto` fell back to the CPU when the codec programs did not build, but not when an
// attention program did (attend --backend auto was exit 5). Now a device whose attention
// kernels do not build is no device either: the same run uses the CPU and says why.
TEST_F(CliReliability, AutoFallsBackWhenAttentionKernelsDoNotBuild) {
#if KVARN_CL_WITH_OPENCL
  const std::string kernels = box.path("kernels");
  ASSERT_EQ(::mkdir(kernels.c_str(), 0700), 0);
  DIR* dir = ::opendir((std::string(KVARN_CL_SOURCE_DIR) + "/kernels").c_str());
  ASSERT_NE(dir, nullptr);
  while (const dirent* e = ::readdir(dir)) {
    const std::string f = e->d_name;
    if (f.size() < 3 || f.compare(f.size() - 3, 3, ".cl") != 0) continue;
    std::ifstream in(std::string(KVARN_CL_SOURCE_DIR) + "/kernels/" + f, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (f == "attention_shared.cl") text += "\nthis is not OpenCL C;\n";
    std::ofstream(kernels + "/" + f, std::ios::binary) << text;
  }
  ::closedir(dir);
  write_text("one.txt", "0 k4v2_g128\n");
  const CliResult cpu = box.run(attend("one.txt", "cpu"));
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  const auto expected = box.read_bytes("o.f32");
  // The PoCL device named explicitly, so that auto would use it if its kernels built.
  const std::string setup = "export KVARN_CL_KERNEL_DIR='" + kernels + "' POCL_CACHE_DIR='" +
                            box.path("pocl") + "' KVARN_CL_DEVICE=0";
  const CliResult r = box.run_in_shell(setup, attend("one.txt", "auto"));
  if (mentions(r, "no OpenCL platform")) GTEST_SKIP() << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(mentions(r, "kvarn-cl: note: backend auto uses the CPU")) << r.err;
  EXPECT_TRUE(mentions(r, "attention")) << r.err;
  EXPECT_EQ(box.read_bytes("o.f32"), expected);
#else
  GTEST_SKIP() << "built without OpenCL";
#endif
}
