// The on/off environment switches (env_switch.hpp).
#include "util/env_switch.hpp"

#include <cstring>

namespace kvarn_cl::util {

Switch read_switch(const char* value) noexcept {
  if (value == nullptr) return Switch::unset;
  if (std::strcmp(value, "0") == 0 || std::strcmp(value, "off") == 0) return Switch::off;
  if (std::strcmp(value, "1") == 0 || std::strcmp(value, "on") == 0) return Switch::on;
  return Switch::other;
}

}  // namespace kvarn_cl::util
