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

}  // namespace kvarn_cl::test
