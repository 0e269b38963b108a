// Helpers of the tests that rerun their own executable as a child process (a setting read once per
// process, such as KVARN_CL_DEVICE_LIMITS, must be there from the start) or run a program and read
// what it wrote.
#pragma once

#include <string>

namespace kvarn_cl::test {

// The path of the running test executable (/proc/self/exe); throws std::runtime_error if unreadable.
std::string self_exe();
// "env -u GTEST_TOTAL_SHARDS -u GTEST_SHARD_INDEX -u GTEST_SHARD_STATUS_FILE ": the start of a
// child's command line. A child runs one test by --gtest_filter; under gtest sharding (CI runs
// test_opencl in two shards on Intel's runtime) the inherited shard variables would split that one
// test away from half the children, which would then run nothing.
std::string child_env();
// The whole content of a file, bytes as written; empty if it cannot be opened.
std::string slurp(const std::string& path);

}  // namespace kvarn_cl::test
