#include "cli_runner.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/child_process.hpp"

#ifndef KVARN_CL_TOOL
#error "KVARN_CL_TOOL (path of the kvarn-cl program) must be defined by test/tools/extra.cmake"
#endif

namespace kvarn_cl::test {
namespace {

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

CliSandbox::CliSandbox() {
  std::string tmpl = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") +
                     "/kvarn_cli_test_XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
}

CliSandbox::~CliSandbox() {
  for (const auto& name : listing()) ::unlink(path(name).c_str());
  ::rmdir((dir_ + "/.captured").c_str());
  ::rmdir(dir_.c_str());
}

std::string tool_path() {
  const char* env = std::getenv("KVARN_CL_TEST_TOOL");
  return env && *env ? env : KVARN_CL_TOOL;
}

std::string eval_path() {
  const char* env = std::getenv("KVARN_CL_TEST_EVAL");
  if (env && *env) return env;
#ifdef KVARN_CL_EVAL_TOOL
  return KVARN_CL_EVAL_TOOL;
#else
  return "";
#endif
}

CliResult CliSandbox::run(const std::vector<std::string>& args) const {
  return run_program(tool_path(), args);
}

CliResult CliSandbox::run_program(const std::string& program,
                                  const std::vector<std::string>& args) const {
  return run_command(program, "", args, "");
}

CliResult CliSandbox::run_in_shell(const std::string& setup, const std::vector<std::string>& args,
                                   const std::string& stdout_to) const {
  return run_command(tool_path(), setup, args, stdout_to);
}

CliResult CliSandbox::run_command(const std::string& program, const std::string& setup,
                                  const std::vector<std::string>& args,
                                  const std::string& stdout_to) const {
  // Captured streams live outside the listing() (a dot-directory) so they never look like output.
  const std::string cap = dir_ + "/.captured";
  ::mkdir(cap.c_str(), 0700);
  std::string cmd = "cd " + shell_quote(dir_) + " && " + (setup.empty() ? "" : setup + " && ") +
                    shell_quote(program);
  for (const auto& a : args) cmd += " " + shell_quote(a);
  cmd += " </dev/null >" + shell_quote(stdout_to.empty() ? cap + "/out" : stdout_to) + " 2>" +
         shell_quote(cap + "/err");
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.exit_code = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
  r.out = slurp(cap + "/out");
  r.err = slurp(cap + "/err");
  ::unlink((cap + "/out").c_str());
  ::unlink((cap + "/err").c_str());
  return r;
}

void CliSandbox::write_bytes(const std::string& name,
                             const std::vector<std::uint8_t>& bytes) const {
  std::ofstream out(path(name), std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

void CliSandbox::write_halves(const std::string& name, const std::vector<half_bits>& h) const {
  std::vector<std::uint8_t> b(h.size() * 2);
  for (std::size_t i = 0; i < h.size(); ++i) {
    b[2 * i] = std::uint8_t(h[i] & 0xFF);
    b[2 * i + 1] = std::uint8_t(h[i] >> 8);
  }
  write_bytes(name, b);
}

std::vector<std::uint8_t> CliSandbox::read_bytes(const std::string& name) const {
  const std::string s = slurp(path(name));
  return std::vector<std::uint8_t>(s.begin(), s.end());
}

std::vector<half_bits> CliSandbox::read_halves(const std::string& name) const {
  const auto b = read_bytes(name);
  std::vector<half_bits> h(b.size() / 2);
  for (std::size_t i = 0; i < h.size(); ++i) h[i] = half_bits(b[2 * i] | (b[2 * i + 1] << 8));
  return h;
}

bool CliSandbox::exists(const std::string& name) const {
  struct stat st {};
  return ::stat(path(name).c_str(), &st) == 0;
}

std::vector<std::string> CliSandbox::listing() const {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir_.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != ".." && n != ".captured") names.push_back(n);
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace kvarn_cl::test
