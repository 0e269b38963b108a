// Runs the built kvarn-cl program (path from the KVARN_CL_TOOL compile definition) in a scratch
// directory and captures its exit code, stdout and stderr, for the CLI tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvarn_cl/half.hpp"

namespace kvarn_cl::test {

// The kvarn-cl under test: $KVARN_CL_TEST_TOOL when set (to run these tests against another
// build, e.g. to see them fail before a fix), else the one this build made.
std::string tool_path();
// kvarn-eval the same way ($KVARN_CL_TEST_EVAL), or "" when this build has none.
std::string eval_path();

struct CliResult {
  int exit_code = -1;  // -1: killed by a signal (a crash)
  std::string out, err;
};

class CliSandbox {
 public:
  CliSandbox();   // a fresh temporary directory
  ~CliSandbox();  // removes it and everything in it
  CliSandbox(const CliSandbox&) = delete;
  CliSandbox& operator=(const CliSandbox&) = delete;

  const std::string& dir() const { return dir_; }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // kvarn-cl with these arguments, run with the sandbox as working directory.
  CliResult run(const std::vector<std::string>& args) const;
  // Another program (e.g. kvarn-eval) the same way.
  CliResult run_program(const std::string& program, const std::vector<std::string>& args) const;
  // kvarn-cl in a shell that first runs `setup` (e.g. "ulimit -f 100", "export X=1"; empty:
  // nothing), with stdout sent to `stdout_to` instead of being captured when that is not empty
  // (e.g. "/dev/full").
  CliResult run_in_shell(const std::string& setup, const std::vector<std::string>& args,
                         const std::string& stdout_to = "") const;

  void write_bytes(const std::string& name, const std::vector<std::uint8_t>& bytes) const;
  void write_halves(const std::string& name, const std::vector<half_bits>& h) const;
  std::vector<std::uint8_t> read_bytes(const std::string& name) const;
  std::vector<half_bits> read_halves(const std::string& name) const;
  bool exists(const std::string& name) const;
  // File names in the sandbox, sorted (to see that nothing partial or temporary was left).
  std::vector<std::string> listing() const;

 private:
  CliResult run_command(const std::string& program, const std::string& setup,
                        const std::vector<std::string>& args, const std::string& stdout_to) const;
  std::string dir_;
};

}  // namespace kvarn_cl::test
