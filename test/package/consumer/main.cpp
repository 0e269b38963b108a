// Uses the installed headers and library: a round trip of one tile through the CPU codec.
#include <kvarn_cl/kvarn_cl.hpp>

#include <cstdio>
#include <vector>

int main() {
  const kvarn_cl::CodecParams params;  // k4v2_g128, D = 128
  const kvarn_cl::RecordLayout layout = kvarn_cl::RecordLayout::make(params);
  std::vector<float> k(128 * 128), v(128 * 128);
  for (std::size_t i = 0; i < k.size(); ++i) {
    k[i] = float(int(i * 37 % 101) - 50) / 25.0f;
    v[i] = float(int(i * 53 % 89) - 44) / 22.0f;
  }
  std::vector<kvarn_cl::half_bits> kr(k.size()), vr(v.size());
  kvarn_cl::rotate_rows(k.data(), kr.data(), 128, 128);
  kvarn_cl::rotate_rows(v.data(), vr.data(), 128, 128);
  std::vector<std::uint8_t> record(layout.bytes);
  kvarn_cl::quantize_tile(params, kr.data(), vr.data(), record.data());
  std::printf("record bytes %zu\n", record.size());
  return layout.bytes == 13824 ? 0 : 1;
}
