// Fuzzes the C API entry points that take sizes and buffers, driven by the input bytes: the codec
// calls (kvarn_cl_quantize_tiles / _dequantize_tiles with any preset, head_dim, frame and element
// type, on data from the input). Enum values stay in range here: holding an out-of-range value in
// a C++ enum variable is itself undefined behaviour, so those are exercised from C
// (test/capi/c_robustness_check.c) and a cache fed appends, commits, rollbacks and attends
// whose counts, flags and rows come from the input. Every call must return a status (never crash,
// never leak), and a cache must stay usable after any refused call.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kvarn_cl/kvarn_cl.h"

namespace {

class Input {
 public:
  Input(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
  std::uint8_t byte() { return pos_ < n_ ? d_[pos_++] : 0; }
  int small(int mod) { return int(byte()) % mod; }
  std::int32_t i32() {
    std::int32_t v = 0;
    for (int i = 0; i < 4; ++i) v = std::int32_t(std::uint32_t(v) << 8 | byte());
    return v;
  }
  bool more() const { return pos_ < n_; }
  // `count` values: fp16 bit patterns or f32 from the input (repeating it when short).
  std::vector<std::uint8_t> payload(std::size_t bytes) {
    std::vector<std::uint8_t> p(bytes);
    for (std::size_t i = 0; i < bytes; ++i) p[i] = n_ ? d_[(pos_ + i) % n_] : 0;
    return p;
  }

 private:
  const std::uint8_t* d_;
  std::size_t n_, pos_ = 0;
};

kvarn_cl_backend* backend() {
  static kvarn_cl_backend* b = [] {
    kvarn_cl_backend* x = nullptr;
    kvarn_cl_backend_create(KVARN_CL_BACKEND_CPU, 1, &x);
    return x;
  }();
  return b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in(data, size);
  kvarn_cl_backend* be = backend();
  if (be == nullptr) return 0;
  const int dims[] = {64, 128, 256, 96, 0, -64};
  // Codec calls: enum values and sizes straight from the input (any int).
  {
    const auto preset = static_cast<kvarn_cl_preset>(in.small(5));
    const int head_dim = dims[in.small(6)];
    const auto frame = static_cast<kvarn_cl_frame>(in.small(2));
    const auto type = static_cast<kvarn_cl_element_type>(in.small(2));
    const std::size_t tiles = in.small(3);
    size_t record = 0;
    if (kvarn_cl_record_bytes(preset, head_dim, &record) == KVARN_CL_OK && record > 0) {
      int group = 0;
      kvarn_cl_preset_group(preset, &group);
      const std::size_t values = tiles * std::size_t(group) * std::size_t(head_dim);
      auto rec = in.payload(tiles * record);
      std::vector<float> k(values + 1), v(values + 1);
      kvarn_cl_dequantize_tiles(be, preset, head_dim, tiles, rec.data(), frame, type, k.data(), v.data());
      auto kin = in.payload(values * 4 + 4), vin = in.payload(values * 4 + 4);
      std::vector<std::uint8_t> out(tiles * record + 1);
      kvarn_cl_quantize_tiles(be, preset, head_dim, in.small(66) - 1, tiles, kin.data(), vin.data(), type,
                              out.data());
    }
    // Sizes whose byte counts overflow: must be refused before any allocation.
    std::uint8_t dummy[16] = {};
    kvarn_cl_dequantize_tiles(be, KVARN_CL_K4V2_G64, 64, SIZE_MAX / (1 + in.small(255)), dummy,
                              KVARN_CL_FRAME_ROTATED, KVARN_CL_F16, dummy, dummy);
  }
  // A small cache driven by the rest of the input.
  kvarn_cl_cache_config cfg;
  kvarn_cl_cache_config_init(&cfg);
  cfg.preset = KVARN_CL_K4V2_G64;
  cfg.head_dim = 64;
  cfg.num_layers = 1 + in.small(2);
  cfg.num_kv_heads = 1 + in.small(2);
  cfg.max_sequences = 2;
  cfg.max_tokens_per_sequence = 64 + in.small(4) * 64;
  cfg.max_uncommitted = in.small(65);
  kvarn_cl_cache* cache = nullptr;
  if (kvarn_cl_cache_create(be, &cfg, &cache) != KVARN_CL_OK) return 0;
  std::uint64_t ids[2] = {0, 0};
  kvarn_cl_cache_add_sequence(cache, &ids[0]);
  kvarn_cl_cache_add_sequence(cache, &ids[1]);
  const std::size_t row = std::size_t(cfg.num_kv_heads) * 64;
  for (int step = 0; step < 12 && in.more(); ++step) {
    const int op = in.small(6);
    const int layer = in.small(4) - 1;
    const std::size_t n = 1 + in.small(2);
    int tokens[2] = {in.small(80) - 2, in.small(80) - 2};
    if (op <= 2) {
      const std::size_t total = std::size_t(std::max(0, tokens[0])) + (n > 1 ? std::size_t(std::max(0, tokens[1])) : 0);
      const auto type = static_cast<kvarn_cl_element_type>(in.small(2));
      const std::size_t elem = type == KVARN_CL_F32 ? 4 : 2;
      auto k = in.payload(total * row * elem + 4), v = in.payload(total * row * elem + 4);
      kvarn_cl_cache_append(cache, layer, n, ids, tokens, k.data(), v.data(), type, in.small(4) - 1);
    } else if (op == 3) {
      kvarn_cl_cache_commit(cache, ids[in.small(2)], in.small(70) - 2);
    } else if (op == 4) {
      kvarn_cl_cache_rollback(cache, ids[in.small(2)]);
    } else {
      const int hq = cfg.num_kv_heads * (1 + in.small(2));
      std::vector<float> q(n * std::size_t(hq) * 64, 0.5f), out(q.size());
      q[0] = float(in.i32());
      kvarn_cl_cache_attend(cache, layer, n, ids, hq, q.data(), out.data(), KVARN_CL_F32, 0.0f,
                            static_cast<kvarn_cl_attend_path>(in.small(2)));
    }
  }
  kvarn_cl_memory_report report;
  kvarn_cl_cache_memory_report(cache, &report);
  kvarn_cl_cache_destroy(cache);
  return 0;
}
