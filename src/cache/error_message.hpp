// The text of the cache's error messages, built from their parts (argument names, values), so
// that every throw names what was wrong and its value in one expression.
#pragma once

#include <sstream>
#include <string>

namespace kvarn_cl::cache {

template <typename... Parts>
std::string message(const Parts&... parts) {
  std::ostringstream s;
  (s << ... << parts);
  return s.str();
}

}  // namespace kvarn_cl::cache
