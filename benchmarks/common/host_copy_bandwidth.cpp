#include "common/host_copy_bandwidth.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

namespace kvarn_cl::bench {

double host_copy_bandwidth() {
  static const double bw = [] {
    const std::size_t n = std::size_t(256) << 20;
    std::vector<unsigned char> a(n, 1), b(n, 2);
    double best = 0;
    for (int i = 0; i < 5; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      std::memcpy(b.data(), a.data(), n);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      benchmark::DoNotOptimize(b.data());
      best = std::max(best, 2.0 * double(n) / s);
    }
    return best;
  }();
  return bw;
}

}  // namespace kvarn_cl::bench
