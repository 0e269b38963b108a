// The proxy sensitivity of captured K/V rows (layer_plan.hpp): each layer's tiles through the CPU
// codec at every candidate preset, the relative squared error of K plus that of V.
#include <cmath>
#include <cstdint>
#include <string>

#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"
#include "kvarn_cl/half.hpp"
#include "kvarn_cl/layer_plan.hpp"
#include "plan/candidates.hpp"

namespace kvarn_cl {

namespace {

// Rows of one layer regrouped per (tile, head) as the codec takes them, rotated to fp16.
struct LayerTiles {
  std::vector<half_bits> k, v;  // [tiles*Hk][G][D]
  std::size_t count = 0;        // tiles * Hk
};

void check_finite(const float* rows, std::size_t n, int D, int Hk, int tokens, int layer,
                  const char* name) {
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(rows[i])) {
      const std::size_t row = i / std::size_t(D);
      throw NonFiniteInput(std::string(name) + " of layer " + std::to_string(layer) + ", token " +
                           std::to_string(row / std::size_t(Hk) % std::size_t(tokens)) + ", head " +
                           std::to_string(row % std::size_t(Hk)) + " holds a NaN or Inf");
    }
}

LayerTiles gather(const float* k, const float* v, int tiles, int G, int Hk, int D) {
  LayerTiles t;
  t.count = std::size_t(tiles) * std::size_t(Hk);
  const std::size_t tile_values = std::size_t(G) * std::size_t(D);
  t.k.resize(t.count * tile_values);
  t.v.resize(t.count * tile_values);
  std::vector<float> row_block(tile_values);
  for (int tile = 0; tile < tiles; ++tile)
    for (int h = 0; h < Hk; ++h) {
      const std::size_t out = (std::size_t(tile) * std::size_t(Hk) + std::size_t(h)) * tile_values;
      for (int which = 0; which < 2; ++which) {
        const float* src = which == 0 ? k : v;
        for (int i = 0; i < G; ++i) {
          const float* row =
              src +
              ((std::size_t(tile) * G + std::size_t(i)) * std::size_t(Hk) + std::size_t(h)) * D;
          std::copy(row, row + D,
                    row_block.begin() + std::ptrdiff_t(std::size_t(i) * std::size_t(D)));
        }
        rotate_rows(row_block.data(), (which == 0 ? t.k : t.v).data() + out, std::size_t(G), D);
      }
    }
  return t;
}

// |a - b|² / |b|² (|a - b|² when b is zero).
double relative_squared_error(const std::vector<half_bits>& got,
                              const std::vector<half_bits>& want) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double w = half_to_float(want[i]);
    const double d = double(half_to_float(got[i])) - w;
    num += d * d;
    den += w * w;
  }
  return den > 0 ? num / den : num;
}

}  // namespace

LayerSensitivity measure_layer_sensitivity(const CodecParams& codec,
                                           const std::vector<Preset>& presets, int num_layers,
                                           int tokens, int num_kv_heads, const float* k,
                                           const float* v) {
  plan::check_candidates(presets, "presets");
  CodecParams base = codec;
  base.preset = presets[0];
  base.validate();
  if (num_layers < 1)
    throw InvalidArgument("measure_layer_sensitivity: num_layers " + std::to_string(num_layers) +
                          " must be >= 1");
  if (num_kv_heads < 1)
    throw InvalidArgument("measure_layer_sensitivity: num_kv_heads " +
                          std::to_string(num_kv_heads) + " must be >= 1");
  const int G = base.group(), D = base.head_dim;
  if (tokens < G)
    throw InvalidArgument("measure_layer_sensitivity: tokens " + std::to_string(tokens) +
                          " is less than one tile (G = " + std::to_string(G) + " of " +
                          to_string(presets[0]) + ")");
  if (k == nullptr || v == nullptr)
    throw InvalidArgument(std::string("measure_layer_sensitivity: ") + (k == nullptr ? "k" : "v") +
                          " is null");
  const int tiles = tokens / G;
  const std::size_t layer_values = std::size_t(tokens) * std::size_t(num_kv_heads) * std::size_t(D);

  LayerSensitivity s;
  s.presets = presets;
  s.error.assign(std::size_t(num_layers), std::vector<double>(presets.size()));
  std::vector<std::uint8_t> records;
  std::vector<half_bits> k_out, v_out;
  for (int l = 0; l < num_layers; ++l) {
    const float* kl = k + std::size_t(l) * layer_values;
    const float* vl = v + std::size_t(l) * layer_values;
    check_finite(kl, layer_values, D, num_kv_heads, tokens, l, "k");
    check_finite(vl, layer_values, D, num_kv_heads, tokens, l, "v");
    const LayerTiles t = gather(kl, vl, tiles, G, num_kv_heads, D);
    for (std::size_t i = 0; i < presets.size(); ++i) {
      CodecParams p = base;
      p.preset = presets[i];
      records.resize(t.count * RecordLayout::make(p).bytes);
      k_out.resize(t.k.size());
      v_out.resize(t.v.size());
      quantize_tiles(p, t.k.data(), t.v.data(), t.count, records.data());
      dequantize_tiles(p, records.data(), t.count, k_out.data(), v_out.data(), Frame::rotated);
      s.error[std::size_t(l)][i] =
          relative_squared_error(k_out, t.k) + relative_squared_error(v_out, t.v);
    }
  }
  return s;
}

}  // namespace kvarn_cl
