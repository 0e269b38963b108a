// The library's one integer parser (src/util/parse_int.hpp) and the places that read integers
// through it: garbage and overflow are refused with the argument and its text named, in every
// one of them (CLI options: test/tools/cli_robustness_test.cpp; KVARN_CL_THREADS:
// test/cpu/thread_pool_test.cpp; layer-preset files: test/cache/layer_presets_test.cpp).
#include <gtest/gtest.h>

#include <climits>
#include <string>

#include "common/scoped_env.hpp"
#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/error.hpp"
#include "kvarn_cl/thread_pool.hpp"
#include "util/parse_int.hpp"
#if KVARN_CL_WITH_OPENCL
#include "kvarn_cl/device.hpp"
#include "opencl/device_discovery.hpp"
#endif

namespace kvarn_cl::util {
namespace {

TEST(ParseInt, TheOneSpelling) {
  EXPECT_EQ(parse_int("0", 0, 10, "x"), 0);
  EXPECT_EQ(parse_int("10", 0, 10, "x"), 10);
  EXPECT_EQ(parse_int("-7", -10, 10, "x"), -7);
  EXPECT_EQ(parse_int("9223372036854775807", LLONG_MIN, LLONG_MAX, "x"), LLONG_MAX);
  EXPECT_EQ(parse_int("-9223372036854775808", LLONG_MIN, LLONG_MAX, "x"), LLONG_MIN);
}

TEST(ParseInt, GarbageIsNotAnInteger) {
  for (const char* bad : {"", "-", " 1", "1 ", "+1", "0x10", "1e3", "abc", "4x", "1.0", "007", "-0",
                          "1\n", "\xef\xbc\x91" /* fullwidth 1 */, "99999999999999999999x"}) {
    SCOPED_TRACE(std::string("'") + bad + "'");
    EXPECT_EQ(try_parse_int(bad, -100, 100).error, IntError::not_an_integer);
  }
  EXPECT_EQ(try_parse_int("-5", 0, 100).error, IntError::out_of_range);  // an integer, below min
}

TEST(ParseInt, OverflowAndRangeAreOutOfRange) {
  for (const char* big : {"9223372036854775808", "-9223372036854775809", "99999999999999999999",
                          "184467440737095516160"}) {
    SCOPED_TRACE(big);
    EXPECT_EQ(try_parse_int(big, LLONG_MIN, LLONG_MAX).error, IntError::out_of_range);
  }
  EXPECT_EQ(try_parse_int("4097", 1, 4096).error, IntError::out_of_range);
  EXPECT_EQ(try_parse_int("-11", -10, 10).error, IntError::out_of_range);
  EXPECT_EQ(try_parse_int("4096", 1, 4096).value, 4096);
}

TEST(ParseInt, TheMessageNamesTheArgumentTheTextAndTheRange) {
  try {
    parse_int("99999999999", 0, 1000, "KVARN_CL_SOMETHING");
    ADD_FAILURE() << "accepted";
  } catch (const InvalidArgument& e) {
    EXPECT_STREQ(e.what(),
                 "KVARN_CL_SOMETHING is '99999999999': expected an integer from 0 to 1000");
  }
  // Control characters from the environment or a file are not echoed to the terminal.
  EXPECT_EQ(int_error_message("1\x1b[31m", 0, 1, "v"),
            "v is '1?[31m': expected an integer from 0 to 1");
}

// Where the library reads integers from the environment, the error names the variable and value.
TEST(ParseInt, EnvironmentIntegersNameTheVariableAndTheValue) {
  {
    test::ScopedEnv env("KVARN_CL_THREADS", "99999999999");
    try {
      ThreadPool::default_size();
      ADD_FAILURE() << "KVARN_CL_THREADS=99999999999 was accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("KVARN_CL_THREADS"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("'99999999999'"), std::string::npos) << e.what();
    }
  }
#if KVARN_CL_WITH_OPENCL
  for (const char* var : {"KVARN_CL_DEVICE", "KVARN_CL_PLATFORM"}) {
    test::ScopedEnv env(var, "99999999999");
    try {
      make_opencl_backend();
      ADD_FAILURE() << var << "=99999999999 was accepted";
    } catch (const Unsupported& e) {  // no device has that index (the CLI's exit code 5)
      EXPECT_NE(std::string(e.what()).find(std::string(var) + " is '99999999999'"),
                std::string::npos)
          << e.what();
    }
  }
  // A selector passed in code is named as such, not as the variable.
  try {
    make_opencl_backend(DeviceSelector{"", "99999999999"});
    ADD_FAILURE() << "device index 99999999999 was accepted";
  } catch (const Unsupported& e) {
    EXPECT_EQ(std::string(e.what()).rfind("device is '99999999999'", 0), 0u) << e.what();
  }
  DeviceCapabilities caps;
  caps.max_work_group_size = 256;
  for (const char* bad :
       {"work_group=99999999999999", "work_group=+4", "work_group=0x40", "local_mem=K"}) {
    SCOPED_TRACE(bad);
    try {
      opencl::apply_device_limits(caps, bad);
      ADD_FAILURE() << "accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("KVARN_CL_DEVICE_LIMITS"), std::string::npos)
          << e.what();
    }
  }
  opencl::apply_device_limits(caps, "work_group=64");
  EXPECT_EQ(caps.max_work_group_size, 64u);
#endif
}

}  // namespace
}  // namespace kvarn_cl::util
