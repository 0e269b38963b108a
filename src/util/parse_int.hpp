// The one integer parser of the library and its tools: command-line options (tools/kvarn-cl),
// environment variables (KVARN_CL_THREADS, KVARN_CL_DEVICE / _PLATFORM indices,
// KVARN_CL_DEVICE_LIMITS) and layer-preset files. One spelling everywhere, the one
// std::to_string writes: decimal digits without leading zeros, a leading '-' for negative values
// (never "-0"); no '+', no white space, no base prefix, no trailing text. A value beyond the range, or beyond what any integer type holds, is refused with
// the text as written, never wrapped or clamped.
#pragma once

#include <string>

namespace kvarn_cl::util {

enum class IntError {
  none,
  not_an_integer,  // empty, or not the spelling above
  out_of_range,    // an integer, but outside [min, max] (or outside long long): "-5" for [0, 9]
};

struct ParsedInt {
  long long value = 0;  // valid when error == none
  IntError error = IntError::none;
};

// `text` read as an integer in [min, max].
ParsedInt try_parse_int(const std::string& text, long long min, long long max) noexcept;

// The same, throwing InvalidArgument that names `what` (the option, variable or file position)
// and the text: "KVARN_CL_THREADS is 'abc': expected an integer from 1 to 4096".
long long parse_int(const std::string& text, long long min, long long max, const std::string& what);

// The message parse_int throws for a failed result (for callers that throw another type).
std::string int_error_message(const std::string& text, long long min, long long max,
                              const std::string& what);

}  // namespace kvarn_cl::util
