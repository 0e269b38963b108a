// kvarn_cl.KVCache: the paged KVarN cache (SPEC §3-4) over arrays. Keys, values and queries are
// read in place from the caller's arrays and attention writes straight into the result; the
// GIL is released while the library works and the backend's lock serializes its users.
#include <nanobind/stl/string.h>

#include <cmath>
#include <optional>

#include "arrays.hpp"
#include "backend.hpp"
#include "files.hpp"
#include "kvarn_cl/kvarn_cl.hpp"
#include "module.hpp"

namespace kvarn_cl::py {
namespace {

struct PyCache {
  nb::object backend_ref;  // the kvarn_cl.Backend the cache runs on (kept alive)
  PyBackend* backend = nullptr;
  std::unique_ptr<KVCache> cache;

  template <typename F>
  auto locked(F&& f) {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(*backend->mutex);
    return f(*cache);
  }
};

// int -> one id (single = true); a sequence of ints -> many.
std::vector<SeqId> seq_ids(nb::handle h, const char* fn, const char* name, bool* single = nullptr) {
  auto one = [&](nb::handle x) -> SeqId {
    long long id = -1;
    if (nb::isinstance<nb::bool_>(x) || !nb::try_cast(x, id, true) || id < 0)
      throw InvalidArgument(std::string(fn) + ": " + name + ": " +
                            std::string(nb::repr(x).c_str()) +
                            " is not a sequence id (an int from add_sequence())");
    return SeqId(id);
  };
  std::vector<SeqId> ids;
  if (single) *single = false;
  // An int or an integer scalar (np.int64: __index__, no __iter__) is one id; a list, tuple or
  // 1-D integer array is many.
  const bool text = nb::isinstance<nb::str>(h) || nb::isinstance<nb::bytes>(h);
  if (nb::isinstance<nb::int_>(h) ||
      (!text && !nb::hasattr(h, "__iter__") && nb::hasattr(h, "__index__"))) {
    ids.push_back(one(h));
    if (single) *single = true;
  } else if (!text && nb::hasattr(h, "__iter__")) {
    for (nb::handle x : h) ids.push_back(one(x));
  } else {
    throw InvalidArgument(std::string(fn) + ": " + name +
                          " must be a sequence id or a list of them, got " +
                          std::string(nb::type_name(h.type()).c_str()));
  }
  return ids;
}

std::vector<int> token_counts(nb::handle h, const char* fn, std::size_t expected) {
  std::vector<int> t;
  if (nb::isinstance<nb::str>(h) || !nb::hasattr(h, "__iter__"))
    throw InvalidArgument(std::string(fn) + ": tokens must be a list of ints, got " +
                          std::string(nb::type_name(h.type()).c_str()));
  for (nb::handle x : h) {
    long long n = 0;
    if (nb::isinstance<nb::bool_>(x) || !nb::try_cast(x, n, true) || n < 0 || n > 0x7fffffff)
      throw InvalidArgument(std::string(fn) + ": tokens: " + std::string(nb::repr(x).c_str()) +
                            " is not a token count");
    t.push_back(int(n));
  }
  if (t.size() != expected)
    throw InvalidArgument(std::string(fn) + ": tokens has " + std::to_string(t.size()) +
                          " entries for " + std::to_string(expected) + " sequences");
  return t;
}

// None: every layer uses `preset`; a str: a layer-preset file (`kvarn-eval --calibrate`); else
// one preset name per layer.
std::vector<Preset> parse_layer_list(nb::handle h) {
  std::vector<Preset> out;
  if (h.is_none()) return out;
  if (nb::isinstance<nb::str>(h)) return read_layer_presets_without_gil(nb::cast<std::string>(h));
  if (!nb::hasattr(h, "__iter__"))
    throw InvalidArgument(
        "KVCache: layer_presets must be None, a layer-preset file or a list of "
        "preset names, got " +
        std::string(nb::type_name(h.type()).c_str()));
  for (nb::handle x : h) {
    if (!nb::isinstance<nb::str>(x))
      throw InvalidArgument("KVCache: layer_presets[" + std::to_string(out.size()) + "] " +
                            std::string(nb::repr(x).c_str()) + " is not a preset name");
    out.push_back(parse_preset(nb::cast<std::string>(x),
                               "KVCache: layer_presets[" + std::to_string(out.size()) + "]"));
  }
  return out;
}

void init_cache(PyCache* self, const std::string& preset, int layers, int kv_heads, int head_dim,
                int max_tokens, nb::handle backend, int max_sequences, int pool_blocks,
                nb::handle sink_tokens, int max_uncommitted, int sinkhorn_iters,
                nb::handle layer_presets, int recent_tokens) {
  const char* fn = "KVCache";
  // The Python names of the fields whose C++ names differ.
  if (layers < 1)
    throw InvalidArgument("KVCache: layers " + std::to_string(layers) + " must be >= 1");
  if (kv_heads < 1)
    throw InvalidArgument("KVCache: kv_heads " + std::to_string(kv_heads) + " must be >= 1");
  if (max_tokens < 1)
    throw InvalidArgument("KVCache: max_tokens " + std::to_string(max_tokens) + " must be >= 1");
  CacheConfig cfg;
  cfg.codec = {parse_preset(preset, "KVCache: preset"), head_dim, sinkhorn_iters};
  validate_head_dim(head_dim, "KVCache: head_dim");
  cfg.num_layers = layers;
  cfg.num_kv_heads = kv_heads;
  cfg.max_sequences = max_sequences;
  cfg.max_tokens_per_sequence = max_tokens;
  cfg.pool_blocks = pool_blocks;
  cfg.sink_tokens = -1;
  if (!sink_tokens.is_none() &&
      (nb::isinstance<nb::bool_>(sink_tokens) ||
       !nb::try_cast(sink_tokens, cfg.sink_tokens, true) || cfg.sink_tokens < 0))
    throw InvalidArgument("KVCache: sink_tokens " + std::string(nb::repr(sink_tokens).c_str()) +
                          " must be an int >= 0, or None for one tile");
  cfg.max_uncommitted = max_uncommitted;
  cfg.recent_tokens = recent_tokens;
  cfg.layer_presets = parse_layer_list(layer_presets);
  nb::object ref = resolve_backend(backend, fn);
  PyBackend& be = nb::cast<PyBackend&>(ref);
  cfg.backend = be.impl;
  cfg.validate();
  std::unique_ptr<KVCache> cache;
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(*be.mutex);
    cache = std::make_unique<KVCache>(cfg);
  }
  new (self) PyCache{std::move(ref), &be, std::move(cache)};
}

void append(PyCache& c, nb::handle seq, int layer, nb::handle k_obj, nb::handle v_obj,
            nb::handle tokens_obj, bool speculative) {
  const char* fn = "append";
  bool single = false;
  const std::vector<SeqId> ids = seq_ids(seq, fn, "seq", &single);
  const ArrayIn k = array_in(k_obj, fn, "k", {Dtype::f16, Dtype::f32});
  const ArrayIn v = array_in(v_obj, fn, "v", {Dtype::f16, Dtype::f32});
  if (k.dtype != v.dtype)
    throw InvalidArgument(std::string(fn) + ": k is " + dtype_name(k.dtype) + " but v is " +
                          dtype_name(v.dtype));
  if (k.shape != v.shape)
    throw InvalidArgument(std::string(fn) + ": k has shape " + shape_str(k.shape) +
                          " but v has shape " + shape_str(v.shape));
  const CacheConfig& cfg = c.cache->config();
  const std::size_t hk = std::size_t(cfg.num_kv_heads), d = std::size_t(cfg.codec.head_dim);
  std::vector<int> tokens;
  std::string expected;
  if (single || !tokens_obj.is_none()) {
    if (single && !tokens_obj.is_none())
      throw InvalidArgument(std::string(fn) +
                            ": tokens is for a list of sequences; one sequence takes k [T][Hk][D]");
    expected = "[T][" + std::to_string(hk) + "][" + std::to_string(d) + "]";
    if (k.shape.size() != 3 || k.shape[1] != hk || k.shape[2] != d)
      throw InvalidArgument(
          std::string(fn) + ": k has shape " + shape_str(k.shape) + ", expected " + expected +
          (single ? "" : " (the rows of every listed sequence, one after the other)"));
    if (single)
      tokens = {int(k.shape[0])};
    else {
      tokens = token_counts(tokens_obj, fn, ids.size());
      std::size_t sum = 0;
      for (int t : tokens) sum += std::size_t(t);
      if (sum != k.shape[0])
        throw InvalidArgument(std::string(fn) + ": tokens add up to " + std::to_string(sum) +
                              " but k has " + std::to_string(k.shape[0]) + " rows");
    }
  } else {
    expected = "[" + std::to_string(ids.size()) + "][T][" + std::to_string(hk) + "][" +
               std::to_string(d) + "]";
    if (k.shape.size() != 4 || k.shape[0] != ids.size() || k.shape[2] != hk || k.shape[3] != d)
      throw InvalidArgument(std::string(fn) + ": k has shape " + shape_str(k.shape) +
                            ", expected " + expected + " for " + std::to_string(ids.size()) +
                            " sequences (or pass tokens= with k [sum(tokens)][Hk][D])");
    tokens.assign(ids.size(), int(k.shape[1]));
  }
  for (int t : tokens)
    if (t < 1) throw InvalidArgument(std::string(fn) + ": k holds no token for a sequence (T = 0)");
  const AppendMode mode = speculative ? AppendMode::speculative : AppendMode::commit;
  const ElementType type = k.dtype == Dtype::f32 ? ElementType::f32 : ElementType::f16;
  c.locked([&](KVCache& kv) {
    kv.append(layer, ids, tokens, k.data, v.data, type, mode);
    return 0;
  });
}

// The C++ API takes fp32 queries: an fp16 q is widened once (the one conversion it needs), then
// f(queries) runs.
template <typename F>
void with_f32_queries(const ArrayIn& q, F&& f) {
  if (q.dtype != Dtype::f16) {
    f(static_cast<const float*>(q.data));
    return;
  }
  std::vector<float> widened(q.elements());
  halves_to_floats(static_cast<const half_bits*>(q.data), widened.data(), widened.size());
  f(widened.data());
}

nb::object attend(PyCache& c, int layer, nb::handle q_obj, nb::handle seqs, nb::handle scale_obj,
                  const std::string& path_name, nb::handle out_obj, nb::handle dtype_obj) {
  const char* fn = "attend";
  const std::vector<SeqId> ids = seq_ids(seqs, fn, "seqs");
  const ArrayIn q = array_in(q_obj, fn, "q", {Dtype::f32, Dtype::f16});
  const std::size_t d = std::size_t(c.cache->config().codec.head_dim);
  if (q.shape.size() != 3 || q.shape[0] != ids.size() || q.shape[2] != d)
    throw InvalidArgument(std::string(fn) + ": q has shape " + shape_str(q.shape) + ", expected [" +
                          std::to_string(ids.size()) + "][Hq][" + std::to_string(d) + "] for " +
                          std::to_string(ids.size()) + " sequences");
  const int hq = int(q.shape[1]);
  AttendPath path;
  if (path_name == "fused")
    path = AttendPath::fused;
  else if (path_name == "materialize")
    path = AttendPath::materialize;
  else
    throw InvalidArgument(std::string(fn) + ": path '" + path_name +
                          "' is not 'fused' or 'materialize'");
  float scale = 0;
  if (!scale_obj.is_none()) {
    double s = 0;
    if (!nb::try_cast(scale_obj, s, true) || !(s > 0) || !std::isfinite(s))
      throw InvalidArgument(std::string(fn) + ": scale " +
                            std::string(nb::repr(scale_obj).c_str()) +
                            " must be a finite number > 0 (None = 1/sqrt(head_dim))");
    scale = float(s);
  }
  const Dtype want = parse_dtype(dtype_obj, fn, Dtype::f32);
  ArrayOut out = array_out(out_obj, fn, q.shape, want, {Dtype::f32, Dtype::f16});
  if (!dtype_obj.is_none() && out.dtype != want)
    throw InvalidArgument(std::string(fn) + ": dtype " + dtype_name(want) +
                          " disagrees with out's dtype " + dtype_name(out.dtype));
  c.locked([&](KVCache& kv) {
    with_f32_queries(q, [&](const float* qf) {
      if (out.dtype == Dtype::f32)
        kv.attend(layer, ids, hq, qf, static_cast<float*>(out.data), scale, path);
      else
        kv.attend(layer, ids, hq, qf, static_cast<half_bits*>(out.data), scale, path);
    });
    return 0;
  });
  return out.object;
}

void commit(PyCache& c, nb::handle seq, nb::handle tokens_obj) {
  bool single = false;
  const std::vector<SeqId> ids = seq_ids(seq, "commit", "seq", &single);
  std::vector<int> tokens(ids.size(), -1);
  if (!tokens_obj.is_none()) {
    if (single) {
      long long n = 0;
      if (nb::isinstance<nb::bool_>(tokens_obj) || !nb::try_cast(tokens_obj, n, true) || n < 0 ||
          n > 0x7fffffff)
        throw InvalidArgument("commit: tokens " + std::string(nb::repr(tokens_obj).c_str()) +
                              " must be an int >= 0, or None for every uncommitted token");
      tokens[0] = int(n);
    } else {
      tokens = token_counts(tokens_obj, "commit", ids.size());
    }
  }
  c.locked([&](KVCache& kv) {
    kv.commit(ids, tokens);
    return 0;
  });
}

SeqId one_id(nb::handle seq, const char* fn) {
  bool single = false;
  const std::vector<SeqId> ids = seq_ids(seq, fn, "seq", &single);
  if (!single) throw InvalidArgument(std::string(fn) + ": seq must be one sequence id");
  return ids[0];
}

nb::dict memory_report(PyCache& c) {
  const MemoryReport r = c.locked([](KVCache& kv) { return kv.memory_report(); });
  nb::dict d;
  d["records"] = r.records;
  d["sink"] = r.sink;
  d["tail"] = r.tail;
  d["block_tables"] = r.block_tables;
  d["seq_info"] = r.seq_info;
  d["workspaces"] = r.workspaces;
  d["total"] = r.total();
  d["records_in_use"] = r.records_in_use;
  d["exact_recent_tokens"] = r.exact_recent_tokens;
  d["live_tokens"] = r.live_tokens;
  d["fp16_equivalent"] = r.fp16_equivalent;
  d["free_blocks"] = r.free_blocks;
  return d;
}

nb::tuple materialize(PyCache& c, nb::handle seq, int layer, bool rotated) {
  const SeqId id = one_id(seq, "materialize");
  MaterializedKV m = c.locked([&](KVCache& kv) {
    return kv.materialize(id, layer, rotated ? Frame::rotated : Frame::original);
  });
  const std::vector<std::size_t> shape{std::size_t(c.cache->config().num_kv_heads),
                                       std::size_t(m.tokens),
                                       std::size_t(c.cache->config().codec.head_dim)};
  nb::object k = array_from_vector(std::move(m.k), Dtype::f16, shape);
  nb::object v = array_from_vector(std::move(m.v), Dtype::f16, shape);
  return nb::make_tuple(k, v);
}

nb::dict snapshot(PyCache& c, nb::handle seq, int layer) {
  const SeqId id = one_id(seq, "snapshot");
  SequenceSnapshot snap = c.locked([&](KVCache& kv) { return kv.snapshot(id, layer); });
  const std::size_t hk = std::size_t(c.cache->config().num_kv_heads);
  const std::size_t d = std::size_t(c.cache->config().codec.head_dim);
  nb::dict r;
  r["records"] = array_from_vector(std::move(snap.records), Dtype::u8,
                                   {std::size_t(snap.num_tiles), hk, c.cache->layout(layer).bytes});
  r["sink_k"] =
      array_from_vector(std::move(snap.sink_k), Dtype::f16, {hk, std::size_t(snap.sink_len), d});
  r["sink_v"] =
      array_from_vector(std::move(snap.sink_v), Dtype::f16, {hk, std::size_t(snap.sink_len), d});
  r["tail_k"] =
      array_from_vector(std::move(snap.tail_k), Dtype::f16, {hk, std::size_t(snap.tail_len), d});
  r["tail_v"] =
      array_from_vector(std::move(snap.tail_v), Dtype::f16, {hk, std::size_t(snap.tail_len), d});
  return r;
}

// kvarn_cl.DecodeStep: one token of a batch through every layer (include/kvarn_cl/decode_step.hpp).
// It keeps its cache alive; the C++ step lives in an optional so that finish/abandon end it.
struct PyStep {
  nb::object cache_ref;
  PyCache* cache = nullptr;
  std::optional<DecodeStep> step;
  std::size_t num_seqs = 0;

  DecodeStep& open(const char* fn) {
    if (!step)
      throw InvalidArgument(std::string("DecodeStep.") + fn +
                            ": this step is finished (begin a new one with begin_step)");
    return *step;
  }
  template <typename F>
  auto locked(F&& f) {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(*cache->backend->mutex);
    return f();
  }
};

nb::object begin_step(nb::handle self, nb::handle seqs) {
  PyCache& c = nb::cast<PyCache&>(self);
  const std::vector<SeqId> ids = seq_ids(seqs, "begin_step", "seqs");
  auto st = std::make_unique<PyStep>();
  st->cache_ref = nb::borrow(self);
  st->cache = &c;
  st->num_seqs = ids.size();
  st->step.emplace(c.locked([&](KVCache& kv) { return kv.begin_step(ids); }));
  return nb::cast(st.release(), nb::rv_policy::take_ownership);
}

void step_append(PyStep& s, int layer, nb::handle k_obj, nb::handle v_obj) {
  const char* fn = "DecodeStep.append";
  DecodeStep& st = s.open("append");
  const ArrayIn k = array_in(k_obj, fn, "k", {Dtype::f16, Dtype::f32});
  const ArrayIn v = array_in(v_obj, fn, "v", {Dtype::f16, Dtype::f32});
  const CacheConfig& cfg = s.cache->cache->config();
  const std::vector<std::size_t> want{s.num_seqs, std::size_t(cfg.num_kv_heads),
                                      std::size_t(cfg.codec.head_dim)};
  for (const ArrayIn* a : {&k, &v})
    if (a->shape != want)
      throw InvalidArgument(std::string(fn) + ": " + (a == &k ? "k" : "v") + " has shape " +
                            shape_str(a->shape) + ", expected " + shape_str(want) +
                            " (one new token per sequence)");
  if (k.dtype != v.dtype)
    throw InvalidArgument(std::string(fn) + ": k is " + dtype_name(k.dtype) + " but v is " +
                          dtype_name(v.dtype));
  const ElementType type = k.dtype == Dtype::f32 ? ElementType::f32 : ElementType::f16;
  s.locked([&] {
    st.append(layer, k.data, v.data, type);
    return 0;
  });
}

nb::object step_attend(PyStep& s, int layer, nb::handle q_obj, nb::handle scale_obj,
                       nb::handle out_obj, nb::handle dtype_obj) {
  const char* fn = "DecodeStep.attend";
  DecodeStep& st = s.open("attend");
  const ArrayIn q = array_in(q_obj, fn, "q", {Dtype::f32, Dtype::f16});
  const std::size_t d = std::size_t(s.cache->cache->config().codec.head_dim);
  if (q.shape.size() != 3 || q.shape[0] != s.num_seqs || q.shape[2] != d)
    throw InvalidArgument(std::string(fn) + ": q has shape " + shape_str(q.shape) + ", expected [" +
                          std::to_string(s.num_seqs) + "][Hq][" + std::to_string(d) + "]");
  float scale = 0;
  if (!scale_obj.is_none()) {
    double x = 0;
    if (!nb::try_cast(scale_obj, x, true) || !(x > 0) || !std::isfinite(x))
      throw InvalidArgument(std::string(fn) + ": scale " +
                            std::string(nb::repr(scale_obj).c_str()) +
                            " must be a finite number > 0 (None = 1/sqrt(head_dim))");
    scale = float(x);
  }
  const Dtype want = parse_dtype(dtype_obj, fn, Dtype::f32);
  ArrayOut out = array_out(out_obj, fn, q.shape, want, {Dtype::f32, Dtype::f16});
  const int hq = int(q.shape[1]);
  s.locked([&] {
    with_f32_queries(q, [&](const float* qf) {
      if (out.dtype == Dtype::f32)
        st.attend(layer, hq, qf, static_cast<float*>(out.data), scale);
      else
        st.attend(layer, hq, qf, static_cast<half_bits*>(out.data), scale);
    });
    return 0;
  });
  return out.object;
}

void step_finish(PyStep& s) {
  DecodeStep& st = s.open("finish");
  try {
    s.locked([&] {
      st.finish();
      return 0;
    });
  } catch (...) {
    s.step.reset();
    throw;
  }
  s.step.reset();
}

void step_abandon(PyStep& s) {
  if (!s.step) return;
  s.locked([&] {
    s.step.reset();  // rolls the unfinished step back
    return 0;
  });
}

}  // namespace

void bind_cache(nb::module_& m) {
  nb::class_<PyCache>(
      m, "KVCache",
      "A paged KVarN KV cache for many sequences (SPEC §3): per sequence and KV head, the first "
      "sink_tokens tokens stay fp16, every later complete and committed tile of G tokens is "
      "quantized into a record, the filling tail stays fp16.\n\n"
      "preset, head_dim (64/128/256), layers, kv_heads (Hk), max_tokens (longest sequence), "
      "max_sequences (alive at once), pool_blocks (tiles of all heads per layer in the record "
      "pool; 0 = enough for every sequence at max_tokens), sink_tokens (None = one tile), "
      "max_uncommitted (speculative tokens per sequence, 0..G), backend (Backend, 'cpu', "
      "'opencl', 'auto' or None = 'auto'), layer_presets (None = `preset` for every layer; a "
      "list of one preset name per layer, or the path of a layer-preset file written by "
      "`kvarn-eval --calibrate`; all with the same G), recent_tokens (newest committed tokens "
      "kept fp16 beyond the filling tile, 0..65536; default 128, 0 turns the window off). Every "
      "pool is allocated up front.")
      .def("__init__", &init_cache, nb::arg("preset") = "k4v2_g128", nb::arg("layers") = 1,
           nb::arg("kv_heads") = 1, nb::arg("head_dim") = 128, nb::arg("max_tokens") = 4096,
           nb::arg("backend") = nb::none(), nb::kw_only(), nb::arg("max_sequences") = 1,
           nb::arg("pool_blocks") = 0, nb::arg("sink_tokens") = nb::none(),
           nb::arg("max_uncommitted") = 64, nb::arg("sinkhorn_iters") = kDefaultSinkhornIters,
           nb::arg("layer_presets") = nb::none(), nb::arg("recent_tokens") = kDefaultRecentTokens)
      .def(
          "add_sequence",
          [](PyCache& c) { return c.locked([](KVCache& kv) { return kv.add_sequence(); }); },
          "Starts a sequence and returns its id (ids are never reused). OutOfMemory when "
          "max_sequences are alive.")
      .def(
          "free",
          [](PyCache& c, nb::handle seq) {
            const SeqId id = one_id(seq, "free");
            c.locked([&](KVCache& kv) {
              kv.free_sequence(id);
              return 0;
            });
          },
          nb::arg("seq"), "Ends a sequence; its tiles and slot are reused by later sequences.")
      .def(
          "append", &append, nb::arg("seq"), nb::arg("layer"), nb::arg("k"), nb::arg("v"),
          nb::kw_only(), nb::arg("tokens") = nb::none(), nb::arg("speculative") = false,
          "Appends keys and values of one layer (original frame, float16 or float32, C-contiguous; "
          "read in place).\n\n"
          "seq an id: k, v [T][Hk][D]. seq a list of B ids: k, v [B][T][Hk][D] (T tokens each), or "
          "[sum(tokens)][Hk][D] with tokens=[T_0, ...]. Complete committed tiles are quantized in "
          "one backend launch. speculative=True keeps the tokens uncommitted (commit() or "
          "rollback()). On an error nothing changes.")
      .def("commit", &commit, nb::arg("seq"), nb::arg("tokens") = nb::none(),
           "Commits the first `tokens` uncommitted tokens (None: all) of the sequence(s) in every "
           "layer and quantizes the tiles that became complete.")
      .def(
          "rollback",
          [](PyCache& c, nb::handle seq) {
            const SeqId id = one_id(seq, "rollback");
            c.locked([&](KVCache& kv) {
              kv.rollback(id);
              return 0;
            });
          },
          nb::arg("seq"), "Drops every uncommitted token of the sequence in every layer.")
      .def(
          "attend", &attend, nb::arg("layer"), nb::arg("q"), nb::kw_only(), nb::arg("seqs"),
          nb::arg("scale") = nb::none(), nb::arg("path") = "fused", nb::arg("out") = nb::none(),
          nb::arg("dtype") = nb::none(),
          "Decode attention of one query token per sequence over every appended token "
          "(committed or not) of one layer, straight from the records.\n\n"
          "q: float32 (or float16) [B][Hq][D], original frame, B = len(seqs), Hq a multiple of Hk. "
          "Returns [B][Hq][D] float32 (dtype=np.float16 or an out= array of float16 for fp16), "
          "written in place. scale None = 1/sqrt(D). path 'fused' (from the records) or "
          "'materialize' (dequantize to fp16, then plain attention).")
      .def("memory_report", &memory_report,
           "Every byte the cache holds, by kind (records, sink, tail, block_tables, seq_info, "
           "workspaces, total), and its use (records_in_use, live_tokens, fp16_equivalent, "
           "free_blocks).")
      .def("materialize", &materialize, nb::arg("seq"), nb::arg("layer") = 0, nb::kw_only(),
           nb::arg("rotated") = false,
           "The sequence's K and V in one layer as the cache holds them, decoded: float16 "
           "[Hk][tokens][D], original frame (rotated=True: as stored).")
      .def("snapshot", &snapshot, nb::arg("seq"), nb::arg("layer") = 0,
           "The raw content of the sequence in one layer, as a dict: records uint8 "
           "[tiles][Hk][record_bytes] (block-table order), sink_k, sink_v, tail_k, tail_v float16 "
           "[Hk][len][D] (rotated frame). Token order: sink, tiles, tail.")
      .def(
          "length",
          [](PyCache& c, nb::handle seq, int layer) {
            const SeqId id = one_id(seq, "length");
            return c.locked([&](KVCache& kv) { return kv.length(id, layer); });
          },
          nb::arg("seq"), nb::arg("layer") = 0,
          "Tokens of the sequence in the layer, uncommitted included.")
      .def(
          "committed",
          [](PyCache& c, nb::handle seq, int layer) {
            const SeqId id = one_id(seq, "committed");
            return c.locked([&](KVCache& kv) { return kv.committed(id, layer); });
          },
          nb::arg("seq"), nb::arg("layer") = 0, "Committed tokens of the sequence in the layer.")
      .def(
          "quantized_tiles",
          [](PyCache& c, nb::handle seq, int layer) {
            const SeqId id = one_id(seq, "quantized_tiles");
            return c.locked([&](KVCache& kv) { return kv.quantized_tiles(id, layer); });
          },
          nb::arg("seq"), nb::arg("layer") = 0,
          "Tiles of the sequence stored as records in the layer.")
      .def("__contains__",
           [](PyCache& c, nb::handle seq) {
             long long id = -1;
             if (!nb::try_cast(seq, id, true) || id < 0) return false;
             return c.locked([&](KVCache& kv) { return kv.contains(SeqId(id)); });
           })
      .def("__len__",
           [](PyCache& c) { return c.locked([](KVCache& kv) { return kv.num_sequences(); }); })
      .def_prop_ro(
          "preset", [](PyCache& c) { return to_string(c.cache->config().layer_codec(0).preset); },
          "Layer 0's preset (layer_presets lists every layer's).")
      .def_prop_ro(
          "layer_presets",
          [](PyCache& c) {
            nb::list l;
            for (int i = 0; i < c.cache->config().num_layers; ++i)
              l.append(to_string(c.cache->config().layer_codec(i).preset));
            return l;
          },
          "The preset of every layer.")
      .def_prop_ro(
          "layer_record_bytes",
          [](PyCache& c) {
            nb::list l;
            for (int i = 0; i < c.cache->config().num_layers; ++i)
              l.append(c.cache->layout(i).bytes);
            return l;
          },
          "Bytes of one record of every layer.")
      .def_prop_ro("recent_tokens", [](PyCache& c) { return c.cache->config().recent_tokens; })
      .def_prop_ro("head_dim", [](PyCache& c) { return c.cache->config().codec.head_dim; })
      .def_prop_ro(
          "group", [](PyCache& c) { return c.cache->config().codec.group(); },
          "Tokens per tile (G).")
      .def_prop_ro("sinkhorn_iters",
                   [](PyCache& c) { return c.cache->config().codec.sinkhorn_iters; })
      .def_prop_ro("layers", [](PyCache& c) { return c.cache->config().num_layers; })
      .def_prop_ro("kv_heads", [](PyCache& c) { return c.cache->config().num_kv_heads; })
      .def_prop_ro("max_sequences", [](PyCache& c) { return c.cache->config().max_sequences; })
      .def_prop_ro("max_tokens",
                   [](PyCache& c) { return c.cache->config().max_tokens_per_sequence; })
      .def_prop_ro("max_uncommitted", [](PyCache& c) { return c.cache->config().max_uncommitted; })
      .def_prop_ro(
          "sink_tokens", [](PyCache& c) { return c.cache->sink_capacity(); },
          "fp16 tokens kept at the start of each sequence.")
      .def_prop_ro("tail_capacity", [](PyCache& c) { return c.cache->tail_capacity(); })
      .def_prop_ro(
          "record_bytes", [](PyCache& c) { return c.cache->layout(0).bytes; },
          "Bytes of one record of layer 0 (layer_record_bytes: every layer's).")
      .def_prop_ro("backend", [](PyCache& c) { return c.backend_ref; })
      .def("begin_step", &begin_step, nb::arg("seqs"),
           "Starts a decode step: one new token of every listed sequence through every layer "
           "(docs/PYTHON.md). Planned and uploaded once; per layer DecodeStep.append then "
           "DecodeStep.attend; DecodeStep.finish() is the one synchronization point. Use it as a "
           "context manager: `with cache.begin_step(ids) as step:` finishes on success and rolls "
           "the step back on an exception.");

  nb::class_<PyStep>(
      m, "DecodeStep",
      "One token of a batch of sequences through every layer (KVCache.begin_step). Every "
      "sequence's layers advance together; failures found on the device (NaN/Inf in a new key "
      "or value row) are raised by finish(), which then rolls the whole step back.")
      .def("append", &step_append, nb::arg("layer"), nb::arg("k"), nb::arg("v"),
           "The new token's keys and values of one layer: float16 or float32 [B][Hk][D], original "
           "frame, B = len(sequences). Each layer exactly once per step.")
      .def("attend", &step_attend, nb::arg("layer"), nb::arg("q"), nb::kw_only(),
           nb::arg("scale") = nb::none(), nb::arg("out") = nb::none(),
           nb::arg("dtype") = nb::none(),
           "Decode attention of one layer after its append: q float32 (or float16) [B][Hq][D]; "
           "returns [B][Hq][D] float32 (or float16 with dtype=np.float16 / an out= array).")
      .def("finish", &step_finish,
           "Waits for the step and reports device-side failures (NonFiniteInput, the step rolled "
           "back; ValueError if a layer was not appended, rolled back too). Ends the step.")
      .def("abandon", &step_abandon, "Rolls an unfinished step back and ends it.")
      .def_prop_ro(
          "sequences",
          [](PyStep& s) {
            nb::list l;
            if (s.step)
              for (SeqId id : s.step->sequences()) l.append(id);
            return l;
          },
          "The step's sequence ids in batch order (empty once finished).")
      .def("__enter__", [](nb::handle self) { return nb::borrow(self); })
      .def(
          "__exit__",
          [](PyStep& s, nb::handle type, nb::handle, nb::handle) {
            if (!s.step) return false;
            if (type.is_none())
              step_finish(s);
            else
              step_abandon(s);
            return false;
          },
          nb::arg("exc_type").none(), nb::arg("exc_value").none(), nb::arg("traceback").none());
}

}  // namespace kvarn_cl::py
