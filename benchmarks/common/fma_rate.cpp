// FMA-rate probe: ten independent accumulator chains per thread (enough to cover the latency of
// the two FMA pipes of current x86 and Arm cores), on the widest vectors Highway dispatches to.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "common/fma_rate.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep

#include <hwy/highway.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>

#include "common/fma_rate.hpp"
#include "kvarn_cl/thread_pool.hpp"

HWY_BEFORE_NAMESPACE();
namespace kvarn_cl::bench {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Returns the FLOPs done; `sink` keeps the result alive.
double FmaChains(std::size_t iters, float* sink) {
  const hn::ScalableTag<float> df;
  const auto a = hn::Set(df, 0.999999f), b = hn::Set(df, 1e-7f);
  auto c0 = hn::Set(df, 1.0f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0,
       c8 = c0, c9 = c0;
  for (std::size_t i = 0; i < iters; ++i) {
    c0 = hn::MulAdd(c0, a, b);
    c1 = hn::MulAdd(c1, a, b);
    c2 = hn::MulAdd(c2, a, b);
    c3 = hn::MulAdd(c3, a, b);
    c4 = hn::MulAdd(c4, a, b);
    c5 = hn::MulAdd(c5, a, b);
    c6 = hn::MulAdd(c6, a, b);
    c7 = hn::MulAdd(c7, a, b);
    c8 = hn::MulAdd(c8, a, b);
    c9 = hn::MulAdd(c9, a, b);
  }
  const auto s = hn::Add(hn::Add(hn::Add(c0, c1), hn::Add(c2, c3)),
                         hn::Add(hn::Add(hn::Add(c4, c5), hn::Add(c6, c7)), hn::Add(c8, c9)));
  *sink = hn::GetLane(hn::SumOfLanes(df, s));
  return 2.0 * 10.0 * double(hn::Lanes(df)) * double(iters);
}

}  // namespace HWY_NAMESPACE
}  // namespace kvarn_cl::bench
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvarn_cl::bench {

HWY_EXPORT(FmaChains);

double fma_rate(unsigned threads) {
  static std::mutex m;
  static std::map<unsigned, double> cache;
  std::lock_guard<std::mutex> lock(m);
  if (auto it = cache.find(threads); it != cache.end()) return it->second;
  ThreadPool pool(threads);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::atomic<double> flops{0};
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(pool.size(), [&](std::size_t) {
      float sink = 0;
      const double f = HWY_DYNAMIC_DISPATCH(FmaChains)(std::size_t(20) << 20, &sink);
      double cur = flops.load();
      while (!flops.compare_exchange_weak(cur, cur + f + (sink == 12345.0f ? 1 : 0))) {
      }
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, flops.load() / s);
  }
  cache[threads] = best;
  return best;
}

}  // namespace kvarn_cl::bench
#endif
