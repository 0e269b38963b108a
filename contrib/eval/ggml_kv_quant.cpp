#include "ggml_kv_quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kvarn_cl/half.hpp"

namespace kvarn_eval {
namespace {

constexpr std::size_t kBlock = 32;

float fp16_round(float x) { return kvarn_cl::half_to_float(kvarn_cl::float_to_half(x)); }

void q8_0_block(const float* x, float* y) {
  float amax = 0;
  for (std::size_t j = 0; j < kBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const float dh = fp16_round(d);
  for (std::size_t j = 0; j < kBlock; ++j) {
    const auto q = static_cast<std::int8_t>(std::roundf(x[j] * id));
    y[j] = float(q) * dh;
  }
}

void q4_0_block(const float* x, float* y) {
  float amax = 0, max = 0;  // max keeps the sign of the value of largest magnitude
  for (std::size_t j = 0; j < kBlock; ++j)
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const float dh = fp16_round(d);
  for (std::size_t j = 0; j < kBlock; ++j) {
    const int q = std::min(15, int(static_cast<std::int8_t>(x[j] * id + 8.5f)));
    y[j] = float(q - 8) * dh;
  }
}

}  // namespace

const char* to_string(GgmlKvType t) { return t == GgmlKvType::q8_0 ? "q8_0" : "q4_0"; }

std::size_t block_bytes(GgmlKvType t) { return t == GgmlKvType::q8_0 ? 34 : 18; }

void ggml_round_trip(GgmlKvType t, const float* x, float* y, std::size_t n) {
  for (std::size_t b = 0; b < n; b += kBlock) {
    if (t == GgmlKvType::q8_0) q8_0_block(x + b, y + b);
    else q4_0_block(x + b, y + b);
  }
}

}  // namespace kvarn_eval
