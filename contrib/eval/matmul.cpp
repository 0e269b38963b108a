#include "matmul.hpp"

#include <algorithm>
#include <cstring>

namespace kvarn_eval {
namespace {

// 16 lanes: one AVX-512 register, or two AVX2 registers (GCC splits the type as needed).
typedef float v16 __attribute__((vector_size(64), aligned(4)));
constexpr std::size_t kLanes = 16;

inline v16 load(const float* p) {
  v16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline float hsum(v16 v) {
  float s = 0;
  for (std::size_t i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// 4 rows of X against 4 rows of W: 16 dot products of length K (K % 16 == 0).
inline void block4x4(const float* x, const float* w, float* y, std::size_t K, std::size_t N,
                     std::size_t mr, std::size_t nr) {
  const float* xr[4];
  const float* wr[4];
  for (std::size_t i = 0; i < 4; ++i) xr[i] = x + std::min(i, mr - 1) * K;
  for (std::size_t j = 0; j < 4; ++j) wr[j] = w + std::min(j, nr - 1) * K;
  v16 acc[4][4] = {};
  for (std::size_t k = 0; k < K; k += kLanes) {
    const v16 a0 = load(xr[0] + k), a1 = load(xr[1] + k), a2 = load(xr[2] + k), a3 = load(xr[3] + k);
    for (std::size_t j = 0; j < 4; ++j) {
      const v16 b = load(wr[j] + k);
      acc[0][j] += a0 * b;
      acc[1][j] += a1 * b;
      acc[2][j] += a2 * b;
      acc[3][j] += a3 * b;
    }
  }
  for (std::size_t i = 0; i < mr; ++i)
    for (std::size_t j = 0; j < nr; ++j) y[i * N + j] = hsum(acc[i][j]);
}

}  // namespace

void matmul_xwt(ThreadPool& pool, const float* x, const float* w, float* y, std::size_t M,
                std::size_t N, std::size_t K) {
  if (K % kLanes != 0) {  // scalar fallback for odd shapes
    pool.parallel_for(N, [&](std::size_t n) {
      for (std::size_t m = 0; m < M; ++m) {
        float s = 0;
        for (std::size_t k = 0; k < K; ++k) s += x[m * K + k] * w[n * K + k];
        y[m * N + n] = s;
      }
    });
    return;
  }
  // Panels: 64 weight rows (~150 KB at K=576, L2-resident) × 64 input rows; inside a panel the 4
  // input rows of the micro-kernel stay in L1 while the weight rows stream past them.
  constexpr std::size_t kPanelN = 64, kPanelM = 64;
  const std::size_t pn = (N + kPanelN - 1) / kPanelN, pm = (M + kPanelM - 1) / kPanelM;
  pool.parallel_for(pn * pm, [&](std::size_t item) {
    const std::size_t n0 = (item % pn) * kPanelN, m0 = (item / pn) * kPanelM;
    const std::size_t n1 = std::min(N, n0 + kPanelN), m1 = std::min(M, m0 + kPanelM);
    for (std::size_t m = m0; m < m1; m += 4)
      for (std::size_t n = n0; n < n1; n += 4)
        block4x4(x + m * K, w + n * K, y + m * N + n, K, N, std::min<std::size_t>(4, m1 - m),
                 std::min<std::size_t>(4, n1 - n));
  });
}

}  // namespace kvarn_eval
