// Pieces shared by the kvarn-cl subcommands: option parsing, exit codes, file I/O with atomic
// output, backend selection. Each subcommand lives in its own cmd_<name>.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <sys/stat.h>

#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/format.hpp"
#include "kvarn_cl/half.hpp"

namespace kvarn_cl::cli {

// Exit codes of kvarn-cl (documented in README.md and in `kvarn-cl --help`).
enum ExitCode : int {
  kExitOk = 0,
  kExitInternal = 1,      // unexpected failure (a bug: please report it)
  kExitUsage = 2,         // bad command line: unknown subcommand/option, missing or invalid value
  kExitInvalidInput = 3,  // input data rejected: sizes, NaN/Inf, corrupt records
  kExitIo = 4,            // a file could not be read or written
  kExitDevice = 5,        // OpenCL/device failure, kernel build failure, out of memory, unsupported
};

// A command-line mistake; becomes kExitUsage.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// --- options ------------------------------------------------------------------------------------

struct OptionSpec {
  std::string name;   // without the leading "--"
  std::string value;  // placeholder shown in help ("" = a flag without value)
  std::string help;
  bool required = false;
};

struct CommandSpec {
  std::string name;
  std::string summary;
  std::vector<OptionSpec> options;
  std::string details;  // extra paragraphs of --help
};

class Options {
 public:
  // Throws UsageError for unknown options, missing values, repeated options, positional arguments
  // and missing required options. Sets help() instead when --help/-h is given.
  Options(const CommandSpec& spec, int argc, char** argv);

  bool help() const noexcept { return help_; }
  bool has(const std::string& name) const { return values_.count(name) != 0; }
  const std::string& get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  // Integer option; throws UsageError naming the option and the value if it is not an integer
  // in [min, max].
  long get_int(const std::string& name, long fallback, long min, long max) const;

  // The parsed codec parameters (--preset, --head-dim, --sinkhorn-iters); invalid values throw
  // UsageError naming the option and the value.
  CodecParams codec_params() const;
  BackendKind backend_kind() const;

 private:
  std::map<std::string, std::string> values_;
  bool help_ = false;
};

std::string help_text(const CommandSpec& spec);

// Option specs used by several subcommands.
OptionSpec preset_option(bool required);
OptionSpec head_dim_option(bool required);
OptionSpec iters_option();
OptionSpec backend_option();

// --- files --------------------------------------------------------------------------------------

// Whole file as bytes. Throws IoError naming the option and the path.
std::vector<std::uint8_t> read_file(const std::string& path, const std::string& option);
// The largest input file kvarn-cl reads (16 GiB: a quarter of a billion tokens of one KV head at
// head dimension 128); a larger one is refused before it is read.
constexpr std::uint64_t kMaxInputBytes = std::uint64_t(16) << 30;

// fp16 rows [rows][cols] from a raw little-endian fp16 file. Checks that the size is a whole
// number of rows of `cols` values, that rows is a multiple of `row_multiple` (with `multiple_what`
// explaining it), that the file is not empty, and that every value is finite (InvalidArgument /
// NonFiniteInput naming the option, the path, and the token and channel of the first bad value).
// cols_what names the row width in messages ("--head-dim 128").
std::vector<half_bits> read_f16_rows(const std::string& path, const std::string& option, int cols,
                                     const std::string& cols_what, std::size_t row_multiple,
                                     const std::string& multiple_what, std::size_t* rows_out);

// The checks and decoding of read_f16_rows on bytes already read; `what` names the source.
std::vector<half_bits> parse_f16_rows(const std::vector<std::uint8_t>& bytes,
                                      const std::string& what, int cols,
                                      const std::string& cols_what, std::size_t row_multiple,
                                      const std::string& multiple_what, std::size_t* rows_out);

// Throws NonFiniteInput naming the option and the first non-finite value (token, channel).
void check_finite(const half_bits* data, std::size_t rows, int cols, const std::string& what);

// An output file that appears only when complete (policy at the top of files.cpp and in
// docs/API.md): a regular or new file is replaced atomically by commit(), and the destructor
// leaves nothing behind without it; a character device, FIFO, socket or descriptor path
// (/dev/stdout) is written through in order. Symbolic links to anything else are refused.
class AtomicOutput {
 public:
  AtomicOutput(std::string path, std::string option);
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  void write(const void* data, std::size_t bytes);
  void commit();
  // Undo a commit() (when a later output of the same command failed); a no-op for write-through.
  void remove_committed() noexcept;
  const std::string& path() const noexcept { return path_; }
  // Whether the output is this process's standard output (then the summary goes to stderr).
  bool to_stdout() const noexcept { return to_stdout_; }

 private:
  std::string path_, option_, temp_;
  int fd_ = -1;
  int temp_slot_ = -1;
  bool committed_ = false;
  bool direct_ = false;            // written through (device, FIFO, descriptor)
  bool unnamed_ = false;           // an O_TMPFILE file, named only at commit()
  bool replace_existing_ = false;  // a regular file is there (its mode and owner are kept)
  bool to_stdout_ = false;
  struct stat existing_ {};
};

// Refuses (UsageError) an output that names one of the inputs, or two outputs naming the same
// file to be replaced; entries are {option, path}. Call before any output is opened.
void check_distinct_files(const std::vector<std::pair<std::string, std::string>>& inputs,
                          const std::vector<std::pair<std::string, std::string>>& outputs);

// The output-file policy for --help of the commands that write files.
std::string output_policy_help();

// Where a command's one-line summary goes: stdout, or stderr when an output is stdout.
std::FILE* summary_stream(std::initializer_list<const AtomicOutput*> outputs);

// --- backends -----------------------------------------------------------------------------------

// make_backend() with a note on stderr when `automatic` fell back to the CPU.
std::unique_ptr<Backend> open_backend(BackendKind kind, bool quiet = false);

// Per-unit formatting used by info and demo.
std::string format_bytes(double bytes);

// --- subcommands ------------------------------------------------------------------------------
int run_quantize(int argc, char** argv);
int run_dequantize(int argc, char** argv);
int run_info(int argc, char** argv);
int run_demo(int argc, char** argv);
int run_attend(int argc, char** argv);

}  // namespace kvarn_cl::cli
