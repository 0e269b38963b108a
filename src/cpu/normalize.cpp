// Variance normalization of SPEC §2.3 ("Sinkhorn-like", log domain), on one rows×cols fp32 matrix.
//
// Numerics, chosen so that the OpenCL kernels can agree to the last bit in all but rare cases:
// - cur is always recomputed from the original M as (M / exp(lc)[col]) / exp(lr)[row] with two
//   fp32 divisions, never by scaling a previous cur (SPEC: scales are never applied cumulatively).
// - Standard deviations are unbiased and mean-subtracted; sums are accumulated in double so the
//   reference is as exact as fp32 inputs allow, then rounded to fp32.
// - log/exp/clamp run in fp32; imbalance() is evaluated in fp32 and compared with `<=`.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/codec_detail.hpp"
#include "kvarn_cl/codec.hpp"

namespace kvarn_cl::detail {
namespace {

constexpr float kStdFloor = 1e-3f;
constexpr float kStdCeil = 1e3f;
constexpr float kLogMin = -0.3f;
constexpr float kLogMax = 10.0f;
constexpr float kImbalanceFloor = 1e-8f;

// Unbiased standard deviation of every row and every column of a rows×cols matrix.
void row_col_std(const float* m, int rows, int cols, std::vector<float>* row_std,
                 std::vector<float>* col_std) {
  if (row_std) {
    // Eight partial sums per row (a fixed order, so results are deterministic) let the compiler
    // vectorize what would otherwise be one serial double-precision chain.
    constexpr int kLanes = 8;
    row_std->resize(std::size_t(rows));
    for (int r = 0; r < rows; ++r) {
      const float* x = m + std::size_t(r) * cols;
      const int body = cols - cols % kLanes;
      double part[kLanes] = {};
      for (int c = 0; c < body; c += kLanes)
        for (int j = 0; j < kLanes; ++j) part[j] += x[c + j];
      for (int c = body; c < cols; ++c) part[0] += x[c];
      double sum = 0;
      for (double p : part) sum += p;
      const double mean = sum / cols;
      double sq[kLanes] = {};
      for (int c = 0; c < body; c += kLanes)
        for (int j = 0; j < kLanes; ++j) sq[j] += (x[c + j] - mean) * (x[c + j] - mean);
      for (int c = body; c < cols; ++c) sq[0] += (x[c] - mean) * (x[c] - mean);
      double ss = 0;
      for (double p : sq) ss += p;
      (*row_std)[std::size_t(r)] = static_cast<float>(std::sqrt(ss / (cols - 1)));
    }
  }
  if (col_std) {
    std::vector<double> sum(std::size_t(cols), 0.0), ss(std::size_t(cols), 0.0);
    for (int r = 0; r < rows; ++r) {
      const float* x = m + std::size_t(r) * cols;
      for (int c = 0; c < cols; ++c) sum[std::size_t(c)] += x[c];
    }
    for (int c = 0; c < cols; ++c) sum[std::size_t(c)] /= rows;  // now the mean
    for (int r = 0; r < rows; ++r) {
      const float* x = m + std::size_t(r) * cols;
      for (int c = 0; c < cols; ++c) {
        const double d = x[c] - sum[std::size_t(c)];
        ss[std::size_t(c)] += d * d;
      }
    }
    col_std->resize(std::size_t(cols));
    for (int c = 0; c < cols; ++c)
      (*col_std)[std::size_t(c)] = static_cast<float>(std::sqrt(ss[std::size_t(c)] / (rows - 1)));
  }
}

float ratio_term(const std::vector<float>& s) {
  const auto [mn, mx] = std::minmax_element(s.begin(), s.end());
  return *mx / std::max(*mn, kImbalanceFloor);
}

float imbalance_of(const std::vector<float>& row_std, const std::vector<float>& col_std) {
  return ratio_term(col_std) + ratio_term(row_std);
}

// cur = (M / ec[col]) / er[row]
void apply_scales(const float* m, int rows, int cols, const std::vector<float>& ec,
                  const std::vector<float>& er, float* cur) {
  for (int r = 0; r < rows; ++r) {
    const float* x = m + std::size_t(r) * cols;
    float* y = cur + std::size_t(r) * cols;
    const float rr = er[std::size_t(r)];
    for (int c = 0; c < cols; ++c) y[c] = (x[c] / ec[std::size_t(c)]) / rr;
  }
}

void update_log_scale(std::vector<float>& log_scale, const std::vector<float>& stds,
                      std::vector<float>& scale) {
  for (std::size_t i = 0; i < log_scale.size(); ++i) {
    const float s = std::clamp(stds[i], kStdFloor, kStdCeil);
    log_scale[i] = std::clamp(log_scale[i] + std::log(s), kLogMin, kLogMax);
    scale[i] = std::exp(log_scale[i]);
  }
}

}  // namespace

double imbalance(const float* m, int rows, int cols) {
  std::vector<float> rs, cs;
  row_col_std(m, rows, cols, &rs, &cs);
  return imbalance_of(rs, cs);
}

Normalization normalize(const float* m, int rows, int cols, int iters) {
  Normalization out;
  out.col_scale.assign(std::size_t(cols), 1.0f);
  out.row_scale.assign(std::size_t(rows), 1.0f);

  std::vector<float> rs, cs;
  row_col_std(m, rows, cols, &rs, &cs);
  float best = imbalance_of(rs, cs);
  out.initial_imbalance = best;

  std::vector<float> lc(std::size_t(cols), 0.0f), lr(std::size_t(rows), 0.0f);
  std::vector<float> ec(std::size_t(cols), 1.0f), er(std::size_t(rows), 1.0f);
  std::vector<float> cur(std::size_t(rows) * cols);
  // cs holds colstd(cur) for the current cur (initially cur = M).
  for (int it = 1; it <= iters; ++it) {
    update_log_scale(lc, cs, ec);
    apply_scales(m, rows, cols, ec, er, cur.data());
    row_col_std(cur.data(), rows, cols, &rs, nullptr);
    update_log_scale(lr, rs, er);
    apply_scales(m, rows, cols, ec, er, cur.data());
    row_col_std(cur.data(), rows, cols, &rs, &cs);
    const float imb = imbalance_of(rs, cs);
    if (imb <= best) {
      best = imb;
      out.col_scale = ec;
      out.row_scale = er;
      out.best_iteration = it;
    }
  }
  out.best_imbalance = best;
  return out;
}

}  // namespace kvarn_cl::detail
