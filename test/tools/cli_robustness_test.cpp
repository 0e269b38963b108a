// Robustness of the programs, run as a user runs them (docs/API.md, "Output files of kvarn-cl"):
// special files and links as outputs, outputs that collide with inputs or with each other, a run
// killed while it writes, integer options with white space or '+', the demo's sequence lengths,
// and kvarn-eval on crafted GGUF files (it must report them, not crash).
#include <gtest/gtest.h>

#include <chrono>
#include <climits>
#include <cstring>
#include <fstream>
#include <thread>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_runner.hpp"
#include "common/test_support.hpp"

using namespace kvarn_cl;
using kvarn_cl::test::CliResult;
using kvarn_cl::test::CliSandbox;

namespace {

constexpr int kUsage = 2, kIo = 4;
constexpr int D = 128, G = 128;

class CliRobustness : public ::testing::Test {
 protected:
  void SetUp() override {
    box.write_halves("k.f16", test::to_half(test::gaussian_rows(2 * G, D, 1, {3})));
    box.write_halves("v.f16", test::to_half(test::gaussian_rows(2 * G, D, 2)));
    const CliResult r = box.run(quantize("r.kvarn"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    records = box.read_bytes("r.kvarn");
  }
  static std::vector<std::string> quantize(const std::string& out, const std::string& k = "k.f16") {
    return {"quantize", "--preset", "k4v2_g128", "--head-dim", "128",   "--backend", "cpu",
            "--k",      k,          "--v",       "v.f16",      "--out", out};
  }
  static std::vector<std::string> dequantize(const std::string& k_out, const std::string& v_out,
                                             const std::string& in = "r.kvarn") {
    return {"dequantize", "--preset", "k4v2_g128", "--head-dim", "128",     "--backend", "cpu",
            "--in",       in,         "--k-out",   k_out,        "--v-out", v_out};
  }
  void expect_refused(const std::vector<std::string>& args, int code,
                      const std::vector<std::string>& mentions) {
    const auto before = box.listing();
    const CliResult r = box.run(args);
    EXPECT_EQ(r.exit_code, code) << r.err;
    EXPECT_EQ(r.err.rfind("kvarn-cl: error: ", 0), 0u) << r.err;
    for (const auto& m : mentions)
      EXPECT_NE(r.err.find(m), std::string::npos) << m << ": " << r.err;
    EXPECT_EQ(box.listing(), before) << "files appeared or vanished";
  }
  static mode_t type_of(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 ? (st.st_mode & S_IFMT) : 0;
  }
  CliSandbox box;
  std::vector<std::uint8_t> records;
};

}  // namespace

// A FIFO used to be replaced by a regular file (rename over it); it is written through now.
TEST_F(CliRobustness, FifoOutputIsWrittenThrough) {
  const std::string fifo = box.path("pipe");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::vector<std::uint8_t> got;
  std::thread reader([&] {
    std::ifstream in(fifo, std::ios::binary);
    got.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  });
  const CliResult r = box.run(quantize("pipe"));
  reader.join();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(type_of(fifo), mode_t(S_IFIFO));
  EXPECT_EQ(got, records);
}

// As root, `--out /dev/null` used to replace the device node with a regular file. Tested on a
// null device node of the sandbox (needs CAP_MKNOD, i.e. root, as in CI).
TEST_F(CliRobustness, CharacterDeviceOutputIsWrittenThrough) {
  const std::string dev = box.path("null");
  if (::mknod(dev.c_str(), S_IFCHR | 0666, makedev(1, 3)) != 0)
    GTEST_SKIP() << "cannot create a device node here (not root): " << std::strerror(errno);
  const CliResult r = box.run(dequantize("null", "null"));  // two outputs may share a device
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(type_of(dev), mode_t(S_IFCHR));
  const CliResult q = box.run(quantize("null"));
  EXPECT_EQ(q.exit_code, 0) << q.err;
  EXPECT_EQ(type_of(dev), mode_t(S_IFCHR));
}

// /dev/stdout writes to the descriptor (here a regular file: the captured stdout), and the
// command's summary goes to stderr so it does not mix with the data.
TEST_F(CliRobustness, StdoutOutputGoesToTheDescriptor) {
  const CliResult r = box.run(quantize("/dev/stdout"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::vector<std::uint8_t>(r.out.begin(), r.out.end()), records);
  EXPECT_NE(r.err.find("quantized"), std::string::npos) << r.err;
  EXPECT_EQ(type_of("/dev/null"), mode_t(S_IFCHR));
}

// A symbolic link used to be replaced by a regular file; links are refused now, and neither the
// link nor its target changes.
TEST_F(CliRobustness, SymlinkOutputIsRefused) {
  box.write_bytes("target", {'t'});
  ASSERT_EQ(::symlink("target", box.path("link").c_str()), 0);
  expect_refused(quantize("link"), kIo, {"--out 'link'", "symbolic link"});
  EXPECT_EQ(type_of(box.path("link")), mode_t(S_IFLNK));
  EXPECT_EQ(box.read_bytes("target"), (std::vector<std::uint8_t>{'t'}));
  ASSERT_EQ(::symlink("missing", box.path("dangling").c_str()), 0);
  expect_refused(quantize("dangling"), kIo, {"--out 'dangling'", "symbolic link"});
  EXPECT_FALSE(box.exists("missing"));
}

// --k-out equal to --v-out used to lose K silently; the same file under two spellings, or through
// a hard link, is refused too. Output equal to an input used to overwrite the input.
TEST_F(CliRobustness, CollidingOutputsAndInputsAreRefused) {
  expect_refused(dequantize("x.f16", "x.f16"), kUsage, {"--v-out 'x.f16'", "--k-out 'x.f16'"});
  expect_refused(dequantize("x.f16", "./x.f16"), kUsage, {"same file"});
  box.write_bytes("old.f16", {'o'});
  ASSERT_EQ(::link(box.path("old.f16").c_str(), box.path("hard.f16").c_str()), 0);
  expect_refused(dequantize("old.f16", "hard.f16"), kUsage, {"same file"});
  expect_refused(quantize("k.f16"), kUsage, {"--out 'k.f16'", "input --k 'k.f16'"});
  expect_refused(quantize("./v.f16"), kUsage, {"input --v 'v.f16'"});
  expect_refused(dequantize("r.kvarn", "v2.f16"), kUsage, {"--k-out 'r.kvarn'", "input --in"});
  EXPECT_EQ(box.read_bytes("r.kvarn"), records);
}

// A replaced file keeps its permission bits (it used to get 0666 & ~umask).
TEST_F(CliRobustness, ReplacedFileKeepsItsMode) {
  box.write_bytes("out.kvarn", {'x'});
  ASSERT_EQ(::chmod(box.path("out.kvarn").c_str(), 0640), 0);
  const CliResult r = box.run(quantize("out.kvarn"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct stat st {};
  ASSERT_EQ(::stat(box.path("out.kvarn").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, mode_t(0640));
  EXPECT_EQ(box.read_bytes("out.kvarn"), records);
}

namespace {

// Whether process `pid` has a file of `dir` open (its output being written).
bool has_file_open_in(pid_t pid, const std::string& dir) {
  const std::string fds = "/proc/" + std::to_string(pid) + "/fd";
  bool found = false;
  if (DIR* d = ::opendir(fds.c_str())) {
    while (dirent* e = ::readdir(d)) {
      char target[4096];
      const ssize_t n = ::readlink((fds + "/" + e->d_name).c_str(), target, sizeof target - 1);
      if (n <= 0) continue;
      target[n] = '\0';
      if (std::string(target).rfind(dir + "/", 0) == 0 &&
          std::string(target).find(".captured") == std::string::npos &&
          std::string(target).find(".f16") == std::string::npos)
        found = true;
    }
    ::closedir(d);
  }
  return found;
}

}  // namespace

// A run killed while it computes used to leave a hidden ".r.kvarn.tmp.XXXXXX" behind. The output
// is an unnamed file until it is complete now, so SIGKILL leaves nothing.
TEST_F(CliRobustness, KilledRunLeavesNoFile) {
  // Enough tiles that quantizing takes a while (about a second on two cores).
  box.write_halves("big_k.f16", test::to_half(test::gaussian_rows(std::size_t(512) * G, D, 5)));
  box.write_halves("big_v.f16", test::to_half(test::gaussian_rows(std::size_t(512) * G, D, 6)));
  const auto before = box.listing();
  const std::string tool = test::tool_path();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::chdir(box.dir().c_str()) != 0) ::_exit(127);
    const int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::execl(tool.c_str(), tool.c_str(), "quantize", "--preset", "k4v2_g128", "--head-dim", "128",
            "--backend", "cpu", "--k", "big_k.f16", "--v", "big_v.f16", "--out", "big.kvarn",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  bool seen = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!seen && std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) break;  // finished before we saw its output
    seen = has_file_open_in(pid, box.dir());
    if (!seen) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  if (seen) {
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
  }
  ASSERT_TRUE(seen) << "the run ended before its output file was seen open";
  EXPECT_EQ(box.listing(), before) << "a killed run left files behind";
}

// strtol used to accept " 128" and "+128".
TEST_F(CliRobustness, IntegerOptionsAreDigitsOnly) {
  for (const char* bad : {" 128", "+128", "128 ", "0x80", ""}) {
    auto args = quantize("o.kvarn");
    args[4] = bad;
    expect_refused(args, kUsage, {"--head-dim", "expected an integer"});
  }
  const CliResult neg = box.run({"demo", "--tokens", "-5"});
  EXPECT_EQ(neg.exit_code, kUsage) << neg.err;
}

// `demo --tokens 100 --sequences 4` used to fail with "internal error: vector::_M_default_append"
// (a sequence length that underflowed).
TEST_F(CliRobustness, DemoWithFewTokensAndManySequences) {
  const CliResult r = box.run({"demo", "--tokens", "100", "--sequences", "4", "--kv-heads", "1",
                               "--q-heads", "2", "--reps", "1", "--backend", "cpu"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("internal error"), std::string::npos) << r.err;
}

// --- kvarn-eval on crafted GGUF files ----------------------------------------------------------

namespace {

// A minimal GGUF v3 writer: metadata (u32, f32 and string values) and f32 tensors.
class GgufWriter {
 public:
  void u32(const std::string& key, std::uint32_t v) { kv(key, 4, &v, 4); }
  void f32(const std::string& key, float v) { kv(key, 6, &v, 4); }
  void str(const std::string& key, const std::string& v) {
    std::vector<std::uint8_t> b;
    put_string(b, v);
    kv(key, 8, b.data(), b.size());
  }
  void tensor(const std::string& name, std::vector<std::uint64_t> dims, std::uint64_t offset) {
    put_string(tensors_, name);
    put(tensors_, std::uint32_t(dims.size()));
    for (auto d : dims) put(tensors_, d);
    put(tensors_, std::uint32_t(0));  // F32
    put(tensors_, offset);
    ++n_tensors_;
  }
  std::vector<std::uint8_t> bytes(std::size_t data_bytes) const {
    std::vector<std::uint8_t> b;
    put(b, std::uint32_t(0x46554747u));
    put(b, std::uint32_t(3));
    put(b, n_tensors_);
    put(b, n_kv_);
    b.insert(b.end(), kvs_.begin(), kvs_.end());
    b.insert(b.end(), tensors_.begin(), tensors_.end());
    while (b.size() % 32) b.push_back(0);
    b.insert(b.end(), data_bytes, 0);
    return b;
  }

 private:
  template <typename T>
  static void put(std::vector<std::uint8_t>& b, T v) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof v);
  }
  static void put_string(std::vector<std::uint8_t>& b, const std::string& s) {
    put(b, std::uint64_t(s.size()));
    b.insert(b.end(), s.begin(), s.end());
  }
  void kv(const std::string& key, std::uint32_t type, const void* v, std::size_t n) {
    put_string(kvs_, key);
    put(kvs_, type);
    const auto* p = static_cast<const std::uint8_t*>(v);
    kvs_.insert(kvs_.end(), p, p + n);
    ++n_kv_;
  }
  std::vector<std::uint8_t> kvs_, tensors_;
  std::uint64_t n_kv_ = 0, n_tensors_ = 0;
};

// A small llama header (tensors are added by the caller).
GgufWriter llama_header(std::uint32_t heads, std::uint32_t kv_heads) {
  GgufWriter w;
  w.str("general.architecture", "llama");
  w.u32("llama.block_count", 1);
  w.u32("llama.embedding_length", 64);
  w.u32("llama.attention.head_count", heads);
  w.u32("llama.attention.head_count_kv", kv_heads);
  w.u32("llama.feed_forward_length", 128);
  w.f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  return w;
}

}  // namespace

TEST_F(CliRobustness, CraftedGgufFilesAreReportedNotCrashedOn) {
  const std::string eval = test::eval_path();
  if (eval.empty()) GTEST_SKIP() << "kvarn-eval is not part of this build";
  struct Case {
    const char* name;
    std::vector<std::uint8_t> file;
    const char* mention;
  };
  std::vector<Case> cases;
  {
    GgufWriter w = llama_header(1, 1);
    w.u32("general.alignment", 0);  // used to divide by zero
    cases.push_back({"alignment 0", w.bytes(64), "general.alignment = 0"});
  }
  {
    GgufWriter w = llama_header(1, 1);
    w.u32("general.alignment", 24);  // not a power of two
    cases.push_back({"alignment 24", w.bytes(64), "general.alignment = 24"});
  }
  {
    auto with_offset = [](std::uint64_t offset) {
      GgufWriter w = llama_header(1, 1);
      w.tensor("token_embd.weight", {16}, offset);
      return w;
    };
    // data_offset + offset + 64 wraps past 2^64 to 32 (inside the file), while the tensor itself
    // starts 32 bytes before the buffer.
    const std::uint64_t data_offset = with_offset(0).bytes(0).size();
    cases.push_back({"offset near 2^64", with_offset(std::uint64_t(0) - data_offset - 32).bytes(64),
                     "token_embd.weight"});
  }
  {
    GgufWriter w = llama_header(1, 1);
    w.tensor("token_embd.weight", {std::uint64_t(1) << 32, std::uint64_t(1) << 33}, 0);
    cases.push_back({"element count wraps", w.bytes(64), "64 bits"});
  }
  cases.push_back({"head_count 0", llama_header(0, 1).bytes(64), "head_count = 0"});
  cases.push_back({"head_count_kv 0", llama_header(1, 0).bytes(64), "head_count_kv = 0"});
  cases.push_back({"d_model not a multiple of heads", llama_header(3, 1).bytes(64), "multiple"});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    box.write_bytes("m.gguf", c.file);
    const CliResult r = box.run_program(
        eval, {"--model", "m.gguf", "--configs", "fp16", "--gen-tokens", "0", "--threads", "1"});
    EXPECT_EQ(r.exit_code, 1) << "(-1 = killed by a signal) " << r.err;
    EXPECT_NE(r.err.find("kvarn-eval: error: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.mention), std::string::npos) << r.err;
  }
}

// PoCL prints "N errors generated." to stderr while it compiles; that line used to come before
// kvarn-cl's one-line error. It is part of the build log now, after the error line.
TEST_F(CliRobustness, KernelBuildFailureStartsWithTheErrorLine) {
#if KVARN_CL_WITH_OPENCL
  const std::string kernels = box.path("kernels");
  ASSERT_EQ(::mkdir(kernels.c_str(), 0700), 0);
  for (const char* f : {"common.cl", "fwht_rows.cl", "rotate.cl", "quantize.cl", "dequantize.cl"}) {
    std::ifstream in(std::string(KVARN_CL_SOURCE_DIR) + "/kernels/" + f, std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (std::string(f) == "rotate.cl") text += "\nthis is not OpenCL C;\nint broken = ;\n";
    std::ofstream(kernels + "/" + f, std::ios::binary) << text;
  }
  ::setenv("KVARN_CL_KERNEL_DIR", kernels.c_str(), 1);
  ::setenv("POCL_CACHE_DIR", box.path("pocl").c_str(), 1);
  auto args = quantize("o.kvarn");
  args[6] = "opencl";
  const CliResult r = box.run(args);
  ::unsetenv("KVARN_CL_KERNEL_DIR");
  ::unsetenv("POCL_CACHE_DIR");
  if (r.err.find("no usable OpenCL") != std::string::npos) GTEST_SKIP() << r.err;
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_EQ(r.err.rfind("kvarn-cl: error: building OpenCL program", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("rotate.cl"), std::string::npos) << r.err;
  EXPECT_FALSE(box.exists("o.kvarn"));
#else
  GTEST_SKIP() << "built without OpenCL";
#endif
}
