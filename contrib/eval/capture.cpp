#include "capture.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <mutex>

#include "kvarn_cl/codec.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_eval {

void capture_tiles(Model& model, ThreadPool& pool, const std::vector<std::int32_t>& tokens,
                   const CaptureRequest& req) {
  const ModelConfig& mc = model.config();
  const KvConfig cfg = KvConfig::parse("k4v2_g128", mc.head_dim);
  const int G = cfg.group(), D = mc.head_dim;
  const int n = std::min<int>(int(tokens.size()), (req.tile + 1) * G);
  if (n < (req.tile + 1) * G)
    throw kvarn_cl::InvalidArgument("capture needs " + std::to_string((req.tile + 1) * G) + " tokens of text");
  KvStore store(cfg, mc.layers, mc.kv_heads, mc.head_dim, n);
  std::mutex mu;
  std::vector<double> outlier(std::size_t(mc.layers), 0.0);
  store.set_tile_observer([&](int layer, int head, int tile, const kvarn_cl::half_bits* k,
                              const kvarn_cl::half_bits* v) {
    if (tile != req.tile) return;
    // Channel RMS of the unrotated keys (rotate back in fp32).
    std::vector<float> row(static_cast<std::size_t>(D));
    std::vector<double> ms(std::size_t(D), 0.0);
    for (int t = 0; t < G; ++t) {
      kvarn_cl::halves_to_floats(k + std::size_t(t) * D, row.data(), std::size_t(D));
      kvarn_cl::fwht_inplace(row.data(), D);
      for (int d = 0; d < D; ++d) ms[std::size_t(d)] += double(row[std::size_t(d)]) * row[std::size_t(d)] / G;
    }
    std::vector<double> sorted = ms;
    std::sort(sorted.begin(), sorted.end());
    const double ratio = std::sqrt(sorted.back() / std::max(sorted[sorted.size() / 2], 1e-30));
    std::lock_guard<std::mutex> lock(mu);
    outlier[std::size_t(layer)] = std::max(outlier[std::size_t(layer)], ratio);
    if (std::find(req.layers.begin(), req.layers.end(), layer) == req.layers.end()) return;
    char name[256];
    std::snprintf(name, sizeof(name), "%s/smollm2_L%02d_h%d_t%d.kv16", req.dir.c_str(), layer, head, tile);
    std::ofstream f(name, std::ios::binary);
    if (!f) throw kvarn_cl::IoError(std::string("cannot write capture file '") + name + "'");
    f.write(reinterpret_cast<const char*>(k), std::streamsize(std::size_t(G) * D * 2));
    f.write(reinterpret_cast<const char*>(v), std::streamsize(std::size_t(G) * D * 2));
    std::fprintf(stderr, "captured %s\n", name);
  });
  std::vector<float> logits;
  for (int p0 = 0; p0 < n; p0 += 64) {
    const int T = std::min(64, n - p0);
    std::vector<SequenceStep> steps{{&store, tokens.data() + p0, T, false}};
    model.forward(pool, steps, logits);
  }
  std::printf("layer  max/median key channel RMS (tile %d, worst KV head)\n", req.tile);
  for (int l = 0; l < mc.layers; ++l) std::printf("%5d  %8.2f\n", l, outlier[std::size_t(l)]);
}

}  // namespace kvarn_eval
