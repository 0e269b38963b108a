// Text from files (or other processes) quoted in an error message: control bytes and bytes
// outside ASCII become \xNN, so a crafted file cannot send escape sequences to the terminal that
// prints the message, nor split it into lines that look like other messages.
#pragma once

#include <string>
#include <string_view>

namespace kvarn_cl {

std::string printable(std::string_view text);

}  // namespace kvarn_cl
