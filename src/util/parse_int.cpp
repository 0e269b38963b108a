// try_parse_int, parse_int (parse_int.hpp).
#include "util/parse_int.hpp"

#include <limits>

#include "kvarn_cl/error.hpp"

namespace kvarn_cl::util {

ParsedInt try_parse_int(const std::string& text, long long min, long long max) noexcept {
  const bool negative = !text.empty() && text[0] == '-';
  const std::size_t first = negative ? 1 : 0;
  if (text.size() == first) return {0, IntError::not_an_integer};
  if (text[first] == '0' && text.size() > first + 1) return {0, IntError::not_an_integer};  // "007"
  if (negative && text == "-0") return {0, IntError::not_an_integer};
  // Accumulated as a negative number, whose range includes LLONG_MIN, then checked digit by digit
  // so that no text overflows.
  constexpr long long kLowest = std::numeric_limits<long long>::min();
  long long acc = 0;
  bool overflow = false;
  for (std::size_t i = first; i < text.size(); ++i) {
    const char c = text[i];
    if (c < '0' || c > '9') return {0, IntError::not_an_integer};
    const int digit = c - '0';
    if (overflow || acc < (kLowest + digit) / 10) {
      overflow = true;  // keep reading: "99999999999999999999x" is not an integer at all
      continue;
    }
    acc = acc * 10 - digit;
  }
  if (overflow) return {0, IntError::out_of_range};
  if (!negative && acc == kLowest) return {0, IntError::out_of_range};
  const long long value = negative ? acc : -acc;
  if (value < min || value > max) return {value, IntError::out_of_range};
  return {value, IntError::none};
}

std::string int_error_message(const std::string& text, long long min, long long max,
                              const std::string& what) {
  std::string quoted;
  for (char c : text)  // a value from the environment or a file may hold anything
    quoted += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  return what + " is '" + quoted + "': expected an integer from " + std::to_string(min) + " to " +
         std::to_string(max);
}

long long parse_int(const std::string& text, long long min, long long max,
                    const std::string& what) {
  const ParsedInt r = try_parse_int(text, min, max);
  if (r.error != IntError::none) throw InvalidArgument(int_error_message(text, min, max, what));
  return r.value;
}

}  // namespace kvarn_cl::util
