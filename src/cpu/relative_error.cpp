// relative_error (codec.hpp): the relative L2 error of a result against its yardstick.
#include <cmath>
#include <string>
#include <vector>

#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl {

double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size())
    throw InvalidArgument("relative_error: got has " + std::to_string(got.size()) +
                          " values but want has " + std::to_string(want.size()));
  double num = 0, den = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double d = double(got[i]) - double(want[i]);
    num += d * d;
    den += double(want[i]) * want[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace kvarn_cl
