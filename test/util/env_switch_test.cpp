// The one reading of the on/off environment variables (src/util/env_switch.hpp), used by
// KVARN_CL_CACHE, KVARN_CL_MMA and KVARN_CL_DENORMAL_DECODE.
#include <gtest/gtest.h>

#include "util/env_switch.hpp"

namespace kvarn_cl::util {
namespace {

TEST(EnvSwitch, ReadsOffOnUnsetAndAnythingElse) {
  EXPECT_EQ(read_switch(nullptr), Switch::unset);
  EXPECT_EQ(read_switch("0"), Switch::off);
  EXPECT_EQ(read_switch("off"), Switch::off);
  EXPECT_EQ(read_switch("1"), Switch::on);
  EXPECT_EQ(read_switch("on"), Switch::on);
  // Only those four spellings: no case folding, no white space, no other numbers.
  for (const char* other : {"", "OFF", "On", " 0", "1 ", "00", "2", "yes", "true", "-1"})
    EXPECT_EQ(read_switch(other), Switch::other) << "'" << other << "'";
}

}  // namespace
}  // namespace kvarn_cl::util
