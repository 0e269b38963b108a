// kvarn-cl: the command-line face of libkvarn_cl. This file only dispatches to a subcommand and turns
// every failure into one line "kvarn-cl: error: ..." and a documented exit code; nothing escapes
// as a crash.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "cli.hpp"
#include "kvarn_cl/error.hpp"
#include "kvarn_cl/thread_pool.hpp"

namespace {

using namespace kvarn_cl;
using namespace kvarn_cl::cli;

struct Subcommand {
  const char* name;
  const char* summary;
  int (*run)(int, char**);
};

const Subcommand kSubcommands[] = {
    {"info", "version, presets with record sizes, OpenCL devices, the backend `auto` picks",
     run_info},
    {"quantize", "fp16 K/V files (one KV head, token-major) -> KVarN records", run_quantize},
    {"dequantize", "KVarN records -> fp16 K/V files", run_dequantize},
    {"attend", "decode attention of one query over K/V files through a KVarN cache", run_attend},
    {"demo", "the main job: bytes, compression, error and speed of every preset on generated data",
     run_demo},
};

void print_usage(std::FILE* to) {
  std::fprintf(
      to,
      "usage: kvarn-cl <subcommand> [options]   (kvarn-cl <subcommand> --help for more)\n\n"
      "KVarN KV-cache quantization with OpenCL kernels and an exact CPU fallback.\n\n"
      "subcommands:\n");
  for (const auto& s : kSubcommands) std::fprintf(to, "  %-12s%s\n", s.name, s.summary);
  std::fprintf(to,
               "\nexit codes:\n"
               "  0  success\n"
               "  1  internal error (a bug: please report it)\n"
               "  2  bad command line: unknown subcommand or option, missing or invalid value\n"
               "  3  input data rejected: file sizes, NaN/Inf values, corrupt records\n"
               "  4  a file could not be read or written\n"
               "  5  OpenCL/device failure, kernel build failure, out of memory, unsupported\n");
}

// Errors are one line; a kernel build failure adds its build log on the following lines.
int report(const std::string& message, int code) {
  const auto nl = message.find('\n');
  std::fprintf(stderr, "kvarn-cl: error: %s\n", message.substr(0, nl).c_str());
  if (nl != std::string::npos) std::fprintf(stderr, "%s\n", message.substr(nl + 1).c_str());
  return code;
}

int exit_code(Status s) {
  switch (s) {
    case Status::invalid_argument:
    case Status::non_finite_input:
    case Status::corrupt_record:
      return kExitInvalidInput;
    case Status::io_error:
      return kExitIo;
    case Status::out_of_memory:
    case Status::device_error:
    case Status::kernel_build_error:
    case Status::unsupported:
      return kExitDevice;
    case Status::ok:
    case Status::internal:
      break;
  }
  return kExitInternal;
}

// What went to stdout must have arrived: a full disk or a closed pipe on stdout (> /dev/full) is
// exit 4 with a message, not a silent success. An earlier failure keeps its own exit code.
int flush_stdout(int code) {
  errno = 0;
  if (std::fflush(stdout) == 0 && !std::ferror(stdout)) return code;
  const std::string why = errno != 0 ? std::strerror(errno) : "write error";
  std::fprintf(stderr, "kvarn-cl: error: standard output: write failed: %s\n", why.c_str());
  return code == kExitOk ? kExitIo : code;
}

int run(int argc, char** argv) {
  if (argc < 2) {
    print_usage(stderr);
    return kExitUsage;
  }
  const std::string sub = argv[1];
  if (sub == "--help" || sub == "-h" || sub == "help") {
    print_usage(stdout);
    return kExitOk;
  }
  if (sub == "--version") {
    std::printf("kvarn-cl %s\n", KVARN_CL_VERSION);
    return kExitOk;
  }
  for (const auto& s : kSubcommands) {
    if (sub != s.name) continue;
    try {
      // The environment is part of the command line: a malformed KVARN_CL_THREADS is exit 2
      // before any work, not an input-data error from deep inside the first CPU call.
      try {
        (void)ThreadPool::default_size();
      } catch (const InvalidArgument& e) {
        throw UsageError(e.what());
      }
      return s.run(argc - 2, argv + 2);
    } catch (const UsageError& e) {
      return report(e.what(), kExitUsage);
    } catch (const Error& e) {
      return report(e.what(), exit_code(e.status()));
    } catch (const std::bad_alloc&) {
      return report("out of host memory", kExitDevice);
    } catch (const std::exception& e) {
      return report(std::string("internal error: ") + e.what(), kExitInternal);
    }
  }
  report("unknown subcommand '" + sub +
             "' (expected info, quantize, dequantize, attend or demo; see kvarn-cl --help)",
         kExitUsage);
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  // Past the file-size limit (ulimit -f) a write fails with EFBIG, reported as exit 4 like any
  // other write error (the output is then discarded), instead of SIGXFSZ killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
  return flush_stdout(run(argc, argv));
}
