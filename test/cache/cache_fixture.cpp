#include "cache/cache_fixture.hpp"

#include <cmath>

namespace kvarn_cl::test {
namespace {

std::vector<NamedBackend>& backends() {
  static std::vector<NamedBackend> b;
  return b;
}

// The backends are released when the tests are done, before exit() starts: OpenCL calls from
// static destructors come after the OpenCL stack's thread-local state is gone (under Oclgrind,
// clReleaseEvent from ~OpenCLBackend wrote into the runtime's freed thread_local call stack:
// heap corruption at exit, "corrupted double-linked list").
class ReleaseBackends : public ::testing::Environment {
 public:
  void TearDown() override { backends().clear(); }
};
const auto* const kRelease = ::testing::AddGlobalTestEnvironment(new ReleaseBackends);

}  // namespace

const std::vector<NamedBackend>& cache_test_backends() {
  static const bool made = [] {
    std::vector<NamedBackend>& b = backends();
    b.push_back({"cpu", std::shared_ptr<Backend>(make_cpu_backend(CpuThreads{2}))});
#if KVARN_CL_WITH_OPENCL
    try {
      b.push_back({"opencl", std::shared_ptr<Backend>(make_opencl_backend())});
    } catch (const Error&) {
      // no usable OpenCL device: the CPU backend alone
    }
#endif
    return true;
  }();
  (void)made;
  return backends();
}

CacheConfig small_config(std::shared_ptr<Backend> backend, Preset preset, int head_dim, int layers,
                         int kv_heads, int max_seqs, int max_tokens) {
  CacheConfig c;
  c.codec.preset = preset;
  c.codec.head_dim = head_dim;
  c.num_layers = layers;
  c.num_kv_heads = kv_heads;
  c.max_sequences = max_seqs;
  c.max_tokens_per_sequence = max_tokens;
  // Tiles are quantized as soon as they are complete: these tests count tiles against appended
  // tokens. The default window (kDefaultRecentTokens) has its own tests (RecentWindow.*).
  c.recent_tokens = 0;
  c.backend = std::move(backend);
  return c;
}

std::vector<float> kv_rows(int tokens, int kv_heads, int head_dim, std::uint32_t seed) {
  return gaussian_rows(std::size_t(tokens) * kv_heads, head_dim, seed, {1, head_dim / 2 + 3}, 8.0f);
}

std::vector<float> reference_attention(KVCache& cache, SeqId id, int layer, int num_q_heads,
                                       const float* q, float scale) {
  const SequenceSnapshot s = cache.snapshot(id, layer);
  const CodecParams p = cache.config().layer_codec(layer);
  const int D = p.head_dim, G = p.group(), Hk = cache.config().num_kv_heads;
  const int T = s.sink_len + s.num_tiles * G + s.tail_len;
  std::vector<float> k(std::size_t(Hk) * T * D), v(k.size());
  std::vector<float> kt(std::size_t(G) * D), vt(kt.size());
  const std::size_t rb = cache.layout(layer).bytes;
  for (int h = 0; h < Hk; ++h) {
    float* kh = k.data() + std::size_t(h) * T * D;
    float* vh = v.data() + std::size_t(h) * T * D;
    halves_to_floats(s.sink_k.data() + std::size_t(h) * s.sink_len * D, kh,
                     std::size_t(s.sink_len) * D);
    halves_to_floats(s.sink_v.data() + std::size_t(h) * s.sink_len * D, vh,
                     std::size_t(s.sink_len) * D);
    for (int j = 0; j < s.num_tiles; ++j) {
      dequantize_tile(p, s.records.data() + (std::size_t(j) * Hk + h) * rb, kt.data(), vt.data(),
                      Frame::rotated);
      std::copy(kt.begin(), kt.end(), kh + (std::size_t(s.sink_len) + std::size_t(j) * G) * D);
      std::copy(vt.begin(), vt.end(), vh + (std::size_t(s.sink_len) + std::size_t(j) * G) * D);
    }
    const std::size_t at = (std::size_t(s.sink_len) + std::size_t(s.num_tiles) * G) * D;
    halves_to_floats(s.tail_k.data() + std::size_t(h) * s.tail_len * D, kh + at,
                     std::size_t(s.tail_len) * D);
    halves_to_floats(s.tail_v.data() + std::size_t(h) * s.tail_len * D, vh + at,
                     std::size_t(s.tail_len) * D);
  }
  std::vector<float> qr(q, q + std::size_t(num_q_heads) * D), out(qr.size());
  for (int h = 0; h < num_q_heads; ++h) fwht_inplace(qr.data() + std::size_t(h) * D, D);
  exact_attention(qr.data(), k.data(), v.data(), num_q_heads, Hk, D, T, scale, out.data());
  for (int h = 0; h < num_q_heads; ++h) fwht_inplace(out.data() + std::size_t(h) * D, D);
  return out;
}

std::vector<float> exact_over_rows(const std::vector<float>& k, const std::vector<float>& v,
                                   int tokens, int kv_heads, int head_dim, int num_q_heads,
                                   const float* q, float scale) {
  // [T][Hk][D] -> [Hk][T][D]
  std::vector<float> kh(k.size()), vh(v.size());
  for (int t = 0; t < tokens; ++t)
    for (int h = 0; h < kv_heads; ++h)
      for (int d = 0; d < head_dim; ++d) {
        kh[(std::size_t(h) * tokens + t) * head_dim + d] =
            k[(std::size_t(t) * kv_heads + h) * head_dim + d];
        vh[(std::size_t(h) * tokens + t) * head_dim + d] =
            v[(std::size_t(t) * kv_heads + h) * head_dim + d];
      }
  std::vector<float> out(std::size_t(num_q_heads) * head_dim);
  exact_attention(q, kh.data(), vh.data(), num_q_heads, kv_heads, head_dim, tokens, scale,
                  out.data());
  return out;
}

}  // namespace kvarn_cl::test
