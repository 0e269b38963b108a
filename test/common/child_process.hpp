// Helpers of the tests that rerun their own executable as a child process (a setting read once per
// process, such as KVARN_CL_DEVICE_LIMITS, must be there from the start) or run a program and read
// what it wrote.
#pragma once

#include <string>

namespace kvarn_cl::test {

// The path of the running test executable (/proc/self/exe); throws std::runtime_error if unreadable.
std::string self_exe();
// The whole content of a file, bytes as written; empty if it cannot be opened.
std::string slurp(const std::string& path);
// Runs `command` with /bin/sh -c, as std::system does (same return value: the wait status, or -1
// if no child could be started), except that the child inherits no file descriptor above stderr.
// On the GPU host a child started with std::system from a test process that held an NVIDIA OpenCL
// context saw no NVIDIA platform (2026-12-07, H100, driver 580.159), while the same child started
// alone saw it; the parent's open driver descriptors are what it inherited.
int run_shell_command(const std::string& command);

}  // namespace kvarn_cl::test
