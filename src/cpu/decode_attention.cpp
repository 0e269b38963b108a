// CPU decode attention (SPEC §4). One work item = one (sequence, KV head, context chunk): it reads
// every tile of its chunk once and serves all Hq/Hk query heads of that KV head from it (GQA).
// Scores of a record tile come straight from the codes: q is pre-scaled by s_col_K, the inner loop
// is codes × floats, and the zero point and s_row_K are applied per token afterwards. Values use
// the softmax weights pre-multiplied by s_row_V, the zero-point sum, and s_col_V at the end. Sink
// and tail rows are read as fp16 in the same pass. Each item keeps an online (running max)
// softmax; the chunks of one (sequence, KV head) are merged by log-sum-exp (flash-decoding), then
// the output is rotated back to the original frame.
#include "cpu/decode_attention.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "cpu/simd.hpp"
#include "cpu/tile_checks.hpp"
#include "cpu/unpack_floats.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl::cpu {
namespace {

// fp16 rows are processed in runs of this many tokens (one softmax update per run).
constexpr int kRunTokens = 64;

// A piece of one (sequence, KV head) context: a record tile, or a run of fp16 rows.
struct Segment {
  const std::uint8_t* record = nullptr;
  const half_bits* k = nullptr;
  const half_bits* v = nullptr;
  int tokens = 0;
};

void load_scales(const std::uint8_t* src, int n, float* out, const char* field, bool simd) {
  if (!simd || !simd::load_finite_halves(src, n, out)) load_record_halves(src, n, out, field);
}

// Per-thread scratch and the running softmax of the R query heads of one work item.
struct Worker {
  int R, D, G;
  float scale;
  bool simd;
  std::vector<float> score, tmp, qs, cf, row, z, zs;
  std::vector<float> s_col_k, zp_k, s_row_k, s_col_v, s_row_v, zp_v;

  Worker(int r, int d, int g, float sc, bool use_simd)
      : R(r),
        D(d),
        G(g),
        scale(sc),
        simd(use_simd),
        score(std::size_t(r) * std::max(g, kRunTokens)),
        tmp(std::size_t(r) * d),
        qs(std::size_t(r) * d),
        cf(std::size_t(std::max(g, d))),
        row(std::size_t(d)),
        z(std::size_t(r)),
        zs(std::size_t(r)),
        s_col_k(std::size_t(d)),
        zp_k(std::size_t(d)),
        s_row_k(std::size_t(std::max(g, 1))),
        s_col_v(std::size_t(d)),
        s_row_v(std::size_t(std::max(g, 1))),
        zp_v(std::size_t(std::max(g, 1))) {}

  int stride() const { return std::max(G, kRunTokens); }

  // Folds n new scores per head (in `score`, replaced by their weights p) into the running max
  // m, sum l and accumulator acc.
  void softmax_update(int n, float* m, float* l, float* acc) {
    const int st = stride();
    if (simd) return simd::softmax_update(score.data(), std::size_t(st), R, n, D, m, l, acc);
    for (int r = 0; r < R; ++r) {
      float* sr = score.data() + std::size_t(r) * st;
      float mx = m[r];
      for (int t = 0; t < n; ++t) mx = std::max(mx, sr[t]);
      const float alpha =
          m[r] == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(m[r] - mx);
      if (alpha != 1.0f) {
        l[r] *= alpha;
        float* ar = acc + std::size_t(r) * D;
        for (int d = 0; d < D; ++d) ar[d] *= alpha;
      }
      float sum = 0;
      for (int t = 0; t < n; ++t) {
        sr[t] = std::exp(sr[t] - mx);
        sum += sr[t];
      }
      l[r] += sum;
      m[r] = mx;
    }
  }

  void record_tile(const RecordLayout& L, const std::uint8_t* rec, const float* q, float* m,
                   float* l, float* acc) {
    load_scales(rec + L.s_col_k, D, s_col_k.data(), "s_col_K", simd);
    load_scales(rec + L.zp_k, D, zp_k.data(), "zp_K", simd);
    load_scales(rec + L.s_row_k, G, s_row_k.data(), "s_row_K", simd);
    load_scales(rec + L.s_col_v, D, s_col_v.data(), "s_col_V", simd);
    load_scales(rec + L.s_row_v, G, s_row_v.data(), "s_row_V", simd);
    load_scales(rec + L.zp_v, G, zp_v.data(), "zp_V", simd);
    const int st = stride();

    if (simd) {
      // Scores: q pre-scaled by s_col_K, codes × floats, then zero point and s_row_K per token;
      // values: weights p·s_row_V over the codes, plus Σ p·zp_V, all times s_col_V.
      simd::prescale_query(q, R, D, s_col_k.data(), zp_k.data(), qs.data(), z.data());
      simd::code_matmul(qs.data(), std::size_t(D), R, rec + L.k_codes, L.k_row_bytes, L.k_bits, D,
                        G, score.data(), std::size_t(st));
      simd::fold_scores(score.data(), std::size_t(st), R, G, s_row_k.data(), z.data(), scale);
      softmax_update(G, m, l, acc);
      simd::value_weights(score.data(), std::size_t(st), R, G, zp_v.data(), s_row_v.data(),
                          zs.data());
      simd::code_matmul(score.data(), std::size_t(st), R, rec + L.v_codes, L.v_row_bytes, L.v_bits,
                        G, D, tmp.data(), std::size_t(D));
      simd::accumulate_values(acc, tmp.data(), R, D, s_col_v.data(), zs.data());
      return;
    }

    // Scores: q pre-scaled by s_col_K, codes × floats, then zero point and s_row_K per token.
    for (int r = 0; r < R; ++r) {
      const float* qr = q + std::size_t(r) * D;
      // The zero-point sums may cancel and shift every score of the tile: summed in double.
      double zr = 0;
      for (int d = 0; d < D; ++d) {
        qs[std::size_t(r) * D + d] = qr[d] * s_col_k[std::size_t(d)];
        zr += qr[d] * zp_k[std::size_t(d)];
      }
      z[std::size_t(r)] = float(zr);
      std::fill_n(score.data() + std::size_t(r) * st, G, 0.0f);
    }
    for (int d = 0; d < D; ++d) {
      unpack_codes_to_floats(rec + L.k_codes + std::size_t(d) * L.k_row_bytes, G, L.k_bits,
                             cf.data());
      for (int r = 0; r < R; ++r) {
        const float a = qs[std::size_t(r) * D + d];
        float* sr = score.data() + std::size_t(r) * st;
        for (int t = 0; t < G; ++t) sr[t] += a * cf[std::size_t(t)];
      }
    }
    for (int r = 0; r < R; ++r) {
      float* sr = score.data() + std::size_t(r) * st;
      for (int t = 0; t < G; ++t)
        sr[t] = s_row_k[std::size_t(t)] * (sr[t] + z[std::size_t(r)]) * scale;
    }
    softmax_update(G, m, l, acc);

    // Values: weights p·s_row_V over the codes, plus Σ p·zp_V, all times s_col_V.
    for (int r = 0; r < R; ++r) {
      float* sr = score.data() + std::size_t(r) * st;
      double zsum = 0;
      for (int t = 0; t < G; ++t) {
        zsum += sr[t] * zp_v[std::size_t(t)];
        sr[t] *= s_row_v[std::size_t(t)];
      }
      zs[std::size_t(r)] = float(zsum);
    }
    std::fill(tmp.begin(), tmp.end(), 0.0f);
    for (int t = 0; t < G; ++t) {
      unpack_codes_to_floats(rec + L.v_codes + std::size_t(t) * L.v_row_bytes, D, L.v_bits,
                             cf.data());
      for (int r = 0; r < R; ++r) {
        const float w = score[std::size_t(r) * st + t];
        float* tr = tmp.data() + std::size_t(r) * D;
        for (int d = 0; d < D; ++d) tr[d] += w * cf[std::size_t(d)];
      }
    }
    for (int r = 0; r < R; ++r) {
      float* ar = acc + std::size_t(r) * D;
      const float* tr = tmp.data() + std::size_t(r) * D;
      for (int d = 0; d < D; ++d) ar[d] += s_col_v[std::size_t(d)] * (tr[d] + zs[std::size_t(r)]);
    }
  }

  void fp16_run(const half_bits* k, const half_bits* v, int n, const float* q, float* m, float* l,
                float* acc) {
    const int st = stride();
    if (simd) {
      simd::fp16_scores(q, R, D, k, n, score.data(), std::size_t(st));
      for (int r = 0; r < R; ++r)
        for (int t = 0; t < n; ++t) score[std::size_t(r) * st + t] *= scale;
      softmax_update(n, m, l, acc);
      simd::fp16_accumulate(score.data(), std::size_t(st), R, D, v, n, acc);
      return;
    }
    for (int t = 0; t < n; ++t) {
      halves_to_floats(k + std::size_t(t) * D, row.data(), std::size_t(D));
      for (int r = 0; r < R; ++r) {
        const float* qr = q + std::size_t(r) * D;
        float dot = 0;
        for (int d = 0; d < D; ++d) dot += qr[d] * row[std::size_t(d)];
        score[std::size_t(r) * st + t] = dot * scale;
      }
    }
    softmax_update(n, m, l, acc);
    for (int t = 0; t < n; ++t) {
      halves_to_floats(v + std::size_t(t) * D, row.data(), std::size_t(D));
      for (int r = 0; r < R; ++r) {
        const float p = score[std::size_t(r) * st + t];
        float* ar = acc + std::size_t(r) * D;
        for (int d = 0; d < D; ++d) ar[d] += p * row[std::size_t(d)];
      }
    }
  }
};

void append_fp16_runs(std::vector<Segment>& segs, const half_bits* k, const half_bits* v, int n,
                      int D) {
  for (int t = 0; t < n; t += kRunTokens) {
    Segment s;
    s.k = k + std::size_t(t) * D;
    s.v = v + std::size_t(t) * D;
    s.tokens = std::min(kRunTokens, n - t);
    segs.push_back(s);
  }
}

// The shared driver: rotated (or plain) queries, a segment list per (sequence, KV head), chunked
// work items over threads, log-sum-exp merge, optional rotation back, output store.
template <typename Segments>
void run_attention(int S, int Hq, int Hk, int D, int G, const RecordLayout* layout, float scale,
                   const std::vector<float>& q, bool rotate_back, void* out, ElementType out_type,
                   ThreadPool& pool, bool simd, Segments&& segments_of) {
  const int R = Hq / Hk;
  const std::size_t groups = std::size_t(S) * Hk;
  if (groups == 0) return;

  // Split long contexts only when (sequence, KV head) pairs alone cannot keep the threads busy.
  std::size_t max_segs = 0;
  {
    std::vector<Segment> segs;
    for (std::size_t g = 0; g < groups; ++g) {
      segs.clear();
      segments_of(int(g / Hk), int(g % Hk), segs);
      max_segs = std::max(max_segs, segs.size());
    }
  }
  const std::size_t workers = pool.size();
  std::size_t chunks = 1;
  if (groups < 2 * workers)
    chunks = std::max<std::size_t>(1, std::min((2 * workers + groups - 1) / groups, max_segs / 2));

  const std::size_t part = std::size_t(R) * (D + 2);  // m[R], l[R], acc[R][D]
  std::vector<float> partials(groups * chunks * part);
  pool.parallel_for(groups * chunks, [&](std::size_t item) {
    // One Worker per thread, kept between calls: a decode step makes no allocation per item.
    static thread_local std::unique_ptr<Worker> cached;
    if (!cached || cached->R != R || cached->D != D || cached->G != G || cached->simd != simd)
      cached = std::make_unique<Worker>(R, D, G, scale, simd);
    Worker& w = *cached;
    w.scale = scale;
    static thread_local std::vector<Segment> segs;
    {
      const std::size_t g = item / chunks, c = item % chunks;
      const int s = int(g / Hk), h = int(g % Hk);
      segs.clear();
      segments_of(s, h, segs);
      float* m = partials.data() + item * part;
      float* l = m + R;
      float* acc = l + R;
      std::fill_n(m, R, -std::numeric_limits<float>::infinity());
      std::fill_n(l, R, 0.0f);
      std::fill_n(acc, std::size_t(R) * D, 0.0f);
      const float* qg = q.data() + (std::size_t(s) * Hq + std::size_t(h) * R) * D;
      const std::size_t b = segs.size() * c / chunks, e = segs.size() * (c + 1) / chunks;
      for (std::size_t i = b; i < e; ++i) {
        // The next record is Hk records away in the pool: no hardware prefetcher follows that
        // stride, so ask for it while this tile is computed.
        if (i + 1 < e && segs[i + 1].record != nullptr)
          for (std::size_t off = 0; off < layout->bytes; off += 64)
            __builtin_prefetch(segs[i + 1].record + off);
        if (segs[i].record != nullptr)
          w.record_tile(*layout, segs[i].record, qg, m, l, acc);
        else
          w.fp16_run(segs[i].k, segs[i].v, segs[i].tokens, qg, m, l, acc);
      }
    }
  });

  // Log-sum-exp merge of the chunks, normalization, rotation back, store.
  pool.parallel_ranges(std::size_t(S) * Hq, [&](std::size_t begin, std::size_t end) {
    std::vector<float> o(static_cast<std::size_t>(D));
    for (std::size_t sq = begin; sq < end; ++sq) {
      const std::size_t s = sq / Hq, hq = sq % Hq, h = hq / R, r = hq % R;
      float mx = -std::numeric_limits<float>::infinity();
      for (std::size_t c = 0; c < chunks; ++c)
        mx = std::max(mx, partials[((s * Hk + h) * chunks + c) * part + r]);
      std::fill(o.begin(), o.end(), 0.0f);
      float lsum = 0;
      if (mx != -std::numeric_limits<float>::infinity()) {
        for (std::size_t c = 0; c < chunks; ++c) {
          const float* p = partials.data() + ((s * Hk + h) * chunks + c) * part;
          if (p[r] == -std::numeric_limits<float>::infinity()) continue;
          const float f = std::exp(p[r] - mx);
          lsum += p[R + r] * f;
          const float* acc = p + 2 * R + r * D;
          for (int d = 0; d < D; ++d) o[std::size_t(d)] += acc[d] * f;
        }
        for (auto& x : o) x /= lsum;
        if (rotate_back) {
          if (simd)
            simd::fwht_rows(o.data(), 1, D);
          else
            fwht_inplace(o.data(), D);
        }
      }
      if (out_type == ElementType::f32)
        std::memcpy(static_cast<float*>(out) + sq * D, o.data(), sizeof(float) * D);
      else
        floats_to_halves(o.data(), static_cast<half_bits*>(out) + sq * D, std::size_t(D));
    }
  });
}

std::vector<float> queries(const float* q, std::size_t rows, int D, bool rotate, bool simd) {
  std::vector<float> out(q, q + rows * D);
  if (rotate && simd) simd::fwht_rows(out.data(), rows, D);
  if (rotate && !simd)
    for (std::size_t i = 0; i < rows; ++i) fwht_inplace(out.data() + i * D, D);
  return out;
}

}  // namespace

void attend_records(const AttendRecordsHost& a, ThreadPool& pool, Kernels kernels) {
  const bool simd = kernels == Kernels::simd;
  const RecordLayout L = RecordLayout::make(a.params);
  const int D = L.head_dim, Hk = a.num_kv_heads;
  const std::size_t W = std::size_t(a.pools.max_blocks);
  check_attend_indices(a.pools, a.num_seqs, a.seq_info, a.block_tables, L.group);
  const std::vector<float> q = queries(a.q, std::size_t(a.num_seqs) * a.num_q_heads, D, true, simd);
  // Token order: sink, records in block-table order, tail.
  auto segments_of = [&](int s, int h, std::vector<Segment>& segs) {
    const SeqInfo& info = a.seq_info[s];
    const std::size_t slot_head = std::size_t(info.slot) * Hk + std::size_t(h);
    const std::size_t sink_at = slot_head * std::size_t(a.pools.sink_capacity) * D;
    append_fp16_runs(segs, a.sink + sink_at, a.sink_v + sink_at, info.sink_len, D);
    for (int j = 0; j < info.num_blocks; ++j) {
      const std::size_t b = std::size_t(a.block_tables[std::size_t(s) * W + std::size_t(j)]);
      Segment seg;
      seg.record = a.records + (b * Hk + std::size_t(h)) * L.bytes;
      seg.tokens = L.group;
      segs.push_back(seg);
    }
    const std::size_t tail_at = slot_head * std::size_t(a.pools.tail_capacity) * D;
    append_fp16_runs(segs, a.tail + tail_at, a.tail_v + tail_at, info.tail_len, D);
  };
  run_attention(a.num_seqs, a.num_q_heads, Hk, D, L.group, &L, a.scale, q, true, a.out, a.out_type,
                pool, simd, segments_of);
}

void attend_fp16(const AttendFp16Host& a, ThreadPool& pool, Kernels kernels) {
  const bool simd = kernels == Kernels::simd;
  const int D = a.head_dim, Hk = a.num_kv_heads;
  check_seq_lens(a.num_seqs, a.seq_lens, a.capacity);
  const bool rotated = a.kv_frame == Frame::rotated;
  const std::vector<float> q =
      queries(a.q, std::size_t(a.num_seqs) * a.num_q_heads, D, rotated, simd);
  auto segments_of = [&](int s, int h, std::vector<Segment>& segs) {
    const std::size_t at = (std::size_t(s) * Hk + std::size_t(h)) * std::size_t(a.capacity) * D;
    append_fp16_runs(segs, a.k + at, a.v + at, a.seq_lens[s], D);
  };
  run_attention(a.num_seqs, a.num_q_heads, Hk, D, 0, nullptr, a.scale, q, rotated, a.out,
                a.out_type, pool, simd, segments_of);
}

}  // namespace kvarn_cl::cpu
