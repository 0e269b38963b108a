// The decode step (include/kvarn_cl/decode_step.hpp): begin_step plans the step once
// (step_plan.hpp) and uploads the plan without waiting; each layer's append and attend only
// enqueue backend work that reads the uploaded plan; finish() is the one synchronization point,
// where the status words written by the device checks are read and a failed step is rolled back.
//
// Per layer, append enqueues: append_rows (rotate + check + store of every new row: one launch),
// and only on steps where a sequence completes a tile, quantize_deferred over those tiles and the
// tail shift behind them (with a copy of the rows the shift overwrites, so that a rollback can
// restore them). attend enqueues the fused attention over the plan's block tables and SeqInfo.
#include <algorithm>
#include <cmath>
#include <utility>

#include "cache/error_message.hpp"
#include "cache/input_checks.hpp"
#include "cache/kv_cache_impl.hpp"
#include "cache/step_plan.hpp"
#include "kvarn_cl/decode_step.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl {

using cache::message;

namespace cache {

struct StepState {
  std::uint64_t id = 0;
  std::vector<SeqId> ids;
  StepPlan plan;
  std::vector<char> appended;  // per layer: appended in this step
};

}  // namespace cache

KVCache::Impl::Impl() = default;
KVCache::Impl::~Impl() = default;

namespace {

constexpr std::size_t kStatusWordsPerLayer = 2;  // [append_rows, quantize_deferred]

// The rows a layer's tail shift overwrites (the shift runs' destinations), saved to / restored
// from the undo workspace: layer l keeps its K rows at [2·l·n, 2·l·n + n) and its V rows after
// them (n = plan.shift_rows).
std::vector<RowRun> undo_runs(const cache::StepPlan& plan, int layer, int part, bool save) {
  std::vector<RowRun> runs;
  std::uint64_t at = (std::uint64_t(layer) * 2 + std::uint64_t(part)) * plan.shift_rows;
  for (const RowRun& r : plan.shift) {
    runs.push_back(save ? RowRun{r.dst_row, at, r.rows} : RowRun{at, r.dst_row, r.rows});
    at += r.rows;
  }
  return runs;
}

}  // namespace

// --- KVCache / DecodeStep: the public calls -------------------------------------------------------

DecodeStep KVCache::begin_step(const std::vector<SeqId>& ids) {
  KVARN_CL_CACHE_CALL("begin_step", true);
  Impl& m = *impl_;
  if (m.step)
    throw InvalidArgument(
        "begin_step: a decode step is already open on this cache (finish it first)");
  Impl::check_not_empty(ids, "begin_step");
  const std::vector<Impl::Sequence*> batch =
      m.find_batch(ids, std::vector<int>(ids.size(), 1), "begin_step");
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const Impl::Sequence& s = *batch[i];
    for (int l = 0; l < m.cfg.num_layers; ++l) {
      const std::size_t li = std::size_t(l);
      if (s.length[li] != s.committed[li])
        throw InvalidArgument(message("begin_step: sequence ", s.id, " (batch entry ", i, ") has ",
                                      s.length[li] - s.committed[li],
                                      " uncommitted tokens in layer ", l,
                                      "; commit or roll them back before a decode step"));
      if (s.length[li] != s.length[0])
        throw InvalidArgument(message("begin_step: sequence ", s.id, " (batch entry ", i,
                                      ") holds ", s.length[0], " tokens in layer 0 but ",
                                      s.length[li], " in layer ", l,
                                      "; a decode step takes every layer one token further"));
    }
    if (s.length[0] + 1 > m.cfg.max_tokens_per_sequence)
      throw InvalidArgument(message("begin_step: sequence ", s.id, " (batch entry ", i, ") holds ",
                                    s.length[0], " tokens, max_tokens_per_sequence is ",
                                    m.cfg.max_tokens_per_sequence));
  }
  m.check_free_blocks(cache::step_blocks_needed(m, batch), "begin_step");

  auto st = std::make_unique<cache::StepState>();
  st->ids = ids;
  st->plan = cache::plan_step(m, batch, [&] { return m.pool.take(); });
  st->appended.assign(std::size_t(m.cfg.num_layers), 0);
  const cache::StepPlan& p = st->plan;
  auto give_back = [&] {
    for (const cache::StepEntryPlan& e : p.entries)
      if (e.block_taken) m.pool.give_back(e.block);
  };
  try {
    // One upload of the plan for every layer; none of these writes waits for the device.
    Backend& be = *m.be;
    be.write_async(m.step_dest_ws.ensure(be, p.destinations.size() * 4), 0, p.destinations.data(),
                   p.destinations.size() * 4);
    if (!p.quantize.empty())
      be.write_async(m.step_jobs_ws.ensure(be, p.quantize.size() * sizeof(QuantizeJob)), 0,
                     p.quantize.data(), p.quantize.size() * sizeof(QuantizeJob));
    be.write_async(m.step_tables_ws.ensure(be, p.tables.size() * 4), 0, p.tables.data(),
                   p.tables.size() * 4);
    be.write_async(m.step_info_ws.ensure(be, p.info.size() * sizeof(SeqInfo)), 0, p.info.data(),
                   p.info.size() * sizeof(SeqInfo));
    const std::vector<std::uint32_t> clear(std::size_t(m.cfg.num_layers) * kStatusWordsPerLayer,
                                           kNoDeviceFailure);
    be.write_async(m.step_status_ws.ensure(be, clear.size() * 4), 0, clear.data(),
                   clear.size() * 4);
    if (p.shift_rows > 0)
      m.step_undo_ws.ensure(be, std::size_t(m.cfg.num_layers) * 2 * p.shift_rows * m.row_bytes());
  } catch (...) {
    give_back();
    throw;
  }
  for (const cache::StepEntryPlan& e : p.entries)
    if (e.block_taken) e.seq->blocks.push_back(e.block);
  st->id = ++m.step_serial;
  const std::uint64_t id = st->id;
  m.step = std::move(st);
  return DecodeStep(*this, id);
}

DecodeStep::DecodeStep(DecodeStep&& other) noexcept : cache_(other.cache_), id_(other.id_) {
  other.cache_ = nullptr;
}

DecodeStep::~DecodeStep() {
  if (cache_ == nullptr) return;
  KVCache::Impl& m = *cache_->impl_;
  if (!m.step || m.step->id != id_) return;  // finished
  try {
    m.be->finish();
  } catch (...) {
    // The device failed; the host state is rolled back all the same.
  }
  m.roll_back_step();
}

const std::vector<SeqId>& DecodeStep::sequences() const noexcept {
  static const std::vector<SeqId> none;
  if (cache_ == nullptr) return none;
  const KVCache::Impl& m = *cache_->impl_;
  return m.step && m.step->id == id_ ? m.step->ids : none;
}

namespace {
KVCache& step_cache(KVCache* cache, const char* fn) {
  if (cache == nullptr)
    throw InvalidArgument(std::string("DecodeStep::") + fn + ": the step was moved from");
  return *cache;
}
}  // namespace

#define KVARN_CL_STEP_CALL(fn)                                                                 \
  KVCache& cache_ref_ = step_cache(cache_, fn);                                                \
  const ::kvarn_cl::cache::CallGuard guard_(cache_ref_.impl_->users, cache_ref_.impl_->writer, \
                                            "DecodeStep::" fn, true)

void DecodeStep::append(int layer, const Buffer& k, const Buffer& v, ElementType type,
                        const StepEvents& events) {
  KVARN_CL_STEP_CALL("append");
  cache_ref_.impl_->step_append(id_, layer, k, v, type, events);
}

void DecodeStep::append(int layer, const void* k, const void* v, ElementType type) {
  KVARN_CL_STEP_CALL("append");
  KVCache::Impl& m = *cache_ref_.impl_;
  const cache::StepState& st = m.open_step(id_, "append");
  if (k == nullptr || v == nullptr) throw InvalidArgument("DecodeStep::append: k or v is null");
  if (type != ElementType::f16 && type != ElementType::f32)
    throw InvalidArgument(
        message("DecodeStep::append: type ", int(type), " is neither f16 nor f32"));
  // The rows go up without waiting for the device; NaN/Inf are caught by the append's device
  // check and reported by finish(), as for device-resident rows.
  const std::size_t bytes =
      st.ids.size() * std::size_t(m.Hk) * std::size_t(m.D) * element_bytes(type);
  Buffer& kb = m.in_k.ensure(*m.be, bytes);
  Buffer& vb = m.in_v.ensure(*m.be, bytes);
  m.be->write_async(kb, 0, k, bytes);
  m.be->write_async(vb, 0, v, bytes);
  m.step_append(id_, layer, kb, vb, type, {});
}

void DecodeStep::attend(int layer, int hq, const Buffer& q, Buffer& out, ElementType out_type,
                        float scale, const StepEvents& events) {
  KVARN_CL_STEP_CALL("attend");
  cache_ref_.impl_->step_attend(id_, layer, hq, q, out, out_type, scale, events);
}

void DecodeStep::attend(int layer, int hq, const float* q, float* out, float scale) {
  attend_host(layer, hq, q, out, ElementType::f32, scale);
}

void DecodeStep::attend(int layer, int hq, const float* q, half_bits* out, float scale) {
  attend_host(layer, hq, q, out, ElementType::f16, scale);
}

void DecodeStep::attend_host(int layer, int hq, const float* q, void* out, ElementType out_type,
                             float scale) {
  KVARN_CL_STEP_CALL("attend");
  KVCache::Impl& m = *cache_ref_.impl_;
  const cache::StepState& st = m.open_step(id_, "attend");
  if (q == nullptr || out == nullptr) throw InvalidArgument("DecodeStep::attend: q or out is null");
  if (hq < 1 || hq % m.Hk != 0)
    throw InvalidArgument(message("DecodeStep::attend: num_q_heads ", hq,
                                  " is not a positive multiple of num_kv_heads ", m.Hk));
  const std::size_t values = st.ids.size() * std::size_t(hq) * std::size_t(m.D);
  cache::check_host_queries(q, st.ids.size(), hq, m.D);
  Buffer& qb = m.q_ws.ensure(*m.be, values * 4);
  Buffer& ob = m.out_ws.ensure(*m.be, values * element_bytes(out_type));
  m.be->write_async(qb, 0, q, values * 4);
  m.step_attend(id_, layer, hq, qb, ob, out_type, scale, {});
  m.be->read(ob, 0, out, values * element_bytes(out_type));
}

void DecodeStep::finish() {
  KVARN_CL_STEP_CALL("finish");
  cache_ref_.impl_->step_finish(id_);
}

// --- KVCache::Impl: the step's work -------------------------------------------------------------

void KVCache::Impl::check_no_step(const char* fn) const {
  if (step)
    throw InvalidArgument(message(fn, ": a decode step is open on this cache; finish() it first"));
}

cache::StepState& KVCache::Impl::open_step(std::uint64_t id, const char* fn) {
  if (!step || step->id != id)
    throw InvalidArgument(
        message("DecodeStep::", fn, ": this step is finished (begin a new one with begin_step)"));
  return *step;
}

void KVCache::Impl::step_append(std::uint64_t id, int layer, const Buffer& k, const Buffer& v,
                                ElementType type, const StepEvents& events) {
  cache::StepState& st = open_step(id, "append");
  check_layer(layer, "DecodeStep::append");
  const std::size_t l = std::size_t(layer);
  if (st.appended[l])
    throw InvalidArgument(
        message("DecodeStep::append: layer ", layer, " was already appended in this step"));
  if (type != ElementType::f16 && type != ElementType::f32)
    throw InvalidArgument(
        message("DecodeStep::append: type ", int(type), " is neither f16 nor f32"));
  const cache::StepPlan& p = st.plan;
  const std::size_t rows = st.ids.size() * std::size_t(Hk),
                    bytes = rows * std::size_t(D) * element_bytes(type);
  if (k.size() < bytes || v.size() < bytes) {  // the message is built only on this path
    const std::string what = message(st.ids.size(), " x ", Hk, " rows of ", D, " values");
    cache::check_buffer_holds(k, bytes, "DecodeStep::append", "k", what);
    cache::check_buffer_holds(v, bytes, "DecodeStep::append", "v", what);
  }

  LayerPools& pools = layers[l];
  be->wait_for(events.wait);
  AppendRowsArgs a;
  a.head_dim = D;
  a.k = &k;
  a.v = &v;
  a.in_type = type;
  a.rows = rows;
  a.destinations = &step_dest_ws.ensure(*be, 0);
  a.host_destinations = p.destinations.data();
  a.sink_k = pools.sink_k.get();
  a.sink_v = pools.sink_v.get();
  a.tail_k = pools.tail_k.get();
  a.tail_v = pools.tail_v.get();
  a.status = {&step_status_ws.ensure(*be, 0), l * kStatusWordsPerLayer};
  be->append_rows(a);
  if (!p.quantize.empty()) {
    // The completed tiles are the first G rows of their tails: quantized in place, then the rows
    // behind them move to the front (after a copy of the rows the move overwrites).
    be->quantize_deferred(pools.codec, *pools.tail_k, *pools.tail_v, step_jobs_ws.ensure(*be, 0),
                          p.quantize, *pools.records,
                          {&step_status_ws.ensure(*be, 0), l * kStatusWordsPerLayer + 1});
    if (!p.shift.empty()) {
      Buffer& undo = step_undo_ws.ensure(*be, 0);
      Buffer* tails[2] = {pools.tail_k.get(), pools.tail_v.get()};
      for (int part = 0; part < 2; ++part)
        be->copy_rows(*tails[part], undo, undo_runs(p, layer, part, true), row_bytes());
      if (!p.shift_overlaps) {
        for (Buffer* t : tails) be->copy_rows(*t, *t, p.shift, row_bytes());
      } else {
        std::vector<RowRun> out, back;
        std::uint64_t at = 0;
        for (const RowRun& r : p.shift) {
          out.push_back({r.src_row, at, r.rows});
          back.push_back({at, r.dst_row, r.rows});
          at += r.rows;
        }
        Buffer& ws = shift_ws.ensure(*be, std::size_t(at) * row_bytes());
        for (Buffer* t : tails) {
          be->copy_rows(*t, ws, out, row_bytes());
          be->copy_rows(ws, *t, back, row_bytes());
        }
      }
    }
  }
  if (events.done != nullptr) *events.done = be->enqueue_marker();
  st.appended[l] = 1;
  for (const cache::StepEntryPlan& e : p.entries) {
    ++e.seq->length[l];
    ++e.seq->committed[l];
  }
}

void KVCache::Impl::step_attend(std::uint64_t id, int layer, int hq, const Buffer& q, Buffer& out,
                                ElementType out_type, float scale, const StepEvents& events) {
  cache::StepState& st = open_step(id, "attend");
  check_layer(layer, "DecodeStep::attend");
  if (!st.appended[std::size_t(layer)])
    throw InvalidArgument(
        message("DecodeStep::attend: layer ", layer,
                " has not been appended in this step (append its new token first)"));
  if (hq < 1 || hq % Hk != 0)
    throw InvalidArgument(message("DecodeStep::attend: num_q_heads ", hq,
                                  " is not a positive multiple of num_kv_heads ", Hk));
  if (!std::isfinite(scale) || scale < 0)
    throw InvalidArgument(message("DecodeStep::attend: scale ", scale,
                                  " must be finite and >= 0 (0 = 1/sqrt(head_dim))"));
  if (out_type != ElementType::f16 && out_type != ElementType::f32)
    throw InvalidArgument(
        message("DecodeStep::attend: out_type ", int(out_type), " is neither f16 nor f32"));
  if (scale == 0) scale = 1.0f / std::sqrt(float(D));
  const std::size_t S = st.ids.size(), values = S * std::size_t(hq) * std::size_t(D);
  if (q.size() < values * 4)
    cache::check_buffer_holds(q, values * 4, "DecodeStep::attend", "q",
                              message(S, " x ", hq, " x ", D, " f32 values"));
  cache::check_buffer_holds(out, values * element_bytes(out_type), "DecodeStep::attend", "out",
                            "the output");

  const cache::StepPlan& p = st.plan;
  be->wait_for(events.wait);
  AttendArgs a = layer_attend_args(layer, int(S), hq, scale, q, out, out_type);
  a.block_tables = &step_tables_ws.ensure(*be, 0);
  a.max_blocks = p.table_width;
  a.seq_info = &step_info_ws.ensure(*be, 0);
  a.host_seq_info = p.info.data();  // validated and sized from these: nothing is read back
  a.host_block_tables = p.tables.data();
  be->attend(a);
  if (events.done != nullptr) *events.done = be->enqueue_marker();
}

void KVCache::Impl::roll_back_step() noexcept {
  if (!step) return;
  const cache::StepPlan& p = step->plan;
  for (std::size_t l = 0; l < step->appended.size(); ++l) {
    if (!step->appended[l]) continue;
    if (!p.shift.empty()) {
      try {
        Buffer& undo = step_undo_ws.ensure(*be, 0);
        LayerPools& pools = layers[l];
        be->copy_rows(undo, *pools.tail_k, undo_runs(p, int(l), 0, false), row_bytes());
        be->copy_rows(undo, *pools.tail_v, undo_runs(p, int(l), 1, false), row_bytes());
      } catch (...) {
        // A device that fails here has failed the queue; the host state still goes back.
      }
    }
    for (const cache::StepEntryPlan& e : p.entries) {
      --e.seq->length[l];
      --e.seq->committed[l];
    }
  }
  for (const cache::StepEntryPlan& e : p.entries)
    if (e.block_taken) {
      e.seq->blocks.pop_back();
      pool.give_back(e.block);
    }
  try {
    be->finish();
  } catch (...) {}
  step.reset();
}

void KVCache::Impl::step_finish(std::uint64_t id) {
  cache::StepState& st = open_step(id, "finish");
  const std::size_t NL = st.appended.size();
  for (std::size_t l = 0; l < NL; ++l)
    if (!st.appended[l]) {
      try {
        be->finish();
      } catch (...) {}
      roll_back_step();
      throw InvalidArgument(message("DecodeStep::finish: layer ", l,
                                    " was not appended in this step; the step was rolled back"));
    }
  std::vector<std::uint32_t> words(NL * kStatusWordsPerLayer);
  try {
    be->read(step_status_ws.ensure(*be, 0), 0, words.data(),
             words.size() * 4);  // waits for the step
  } catch (...) {
    roll_back_step();
    throw;
  }
  for (std::size_t l = 0; l < NL; ++l) {
    const std::uint32_t rows_word = words[l * kStatusWordsPerLayer],
                        tiles_word = words[l * kStatusWordsPerLayer + 1];
    if (rows_word == kNoDeviceFailure && tiles_word == kNoDeviceFailure) continue;
    std::string what;
    if (rows_word != kNoDeviceFailure) {
      const std::size_t row = rows_word / 2, entry = row / std::size_t(Hk);
      what = message("the new ", rows_word % 2 == 0 ? "key" : "value", " row of sequence ",
                     st.ids.at(entry), " (batch entry ", entry, ", KV head ", row % std::size_t(Hk),
                     ") in layer ", l, " holds NaN, Inf or a value beyond the codec's bound ",
                     kMaxRotatedMagnitude, " once rotated");
    } else {
      const std::size_t job = tiles_word / 2, entry = st.plan.quantize_entry.at(job);
      what = message("the ", tiles_word % 2 == 0 ? "key" : "value", " tile completed by sequence ",
                     st.ids.at(entry), " (batch entry ", entry, ") in layer ", l,
                     " cannot be quantized (NaN, Inf or beyond the codec's bound)");
    }
    roll_back_step();
    throw NonFiniteInput(message("DecodeStep::finish: ", what, "; the step was rolled back"));
  }
  step.reset();
}

}  // namespace kvarn_cl
