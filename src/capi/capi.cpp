// The C API (include/kvarn_cl/kvarn_cl.h) over the C++ API: argument checks for what C can get
// wrong (null pointers, enum values out of range, flags that are not 0/1, sizes that overflow),
// then the C++ call inside capi::guarded.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "capi/arguments.hpp"
#include "capi/last_error.hpp"
#include "kvarn_cl/kvarn_cl.h"
#include "kvarn_cl/kvarn_cl.hpp"
#if KVARN_CL_WITH_OPENCL
#include "kvarn_cl/device.hpp"
#endif

struct kvarn_cl_backend {
  std::shared_ptr<kvarn_cl::Backend> impl;
  std::string name;
};

struct kvarn_cl_cache {
  std::unique_ptr<kvarn_cl::KVCache> impl;
};

struct kvarn_cl_step {
  kvarn_cl::DecodeStep impl;
};

namespace {

using namespace kvarn_cl;

using capi::from_preset;
using capi::raw;
using capi::require;
using capi::to_preset;

ElementType to_element(const kvarn_cl_element_type& t, const char* name) {
  const long long v = raw(t);
  if (v == KVARN_CL_F16) return ElementType::f16;
  if (v == KVARN_CL_F32) return ElementType::f32;
  throw InvalidArgument(std::string("invalid ") + name + " " + std::to_string(v) +
                        ": expected KVARN_CL_F16 (0) or KVARN_CL_F32 (1)");
}

Frame to_frame(const kvarn_cl_frame& f) {
  const long long v = raw(f);
  if (v == KVARN_CL_FRAME_ORIGINAL) return Frame::original;
  if (v == KVARN_CL_FRAME_ROTATED) return Frame::rotated;
  throw InvalidArgument("invalid frame " + std::to_string(v) +
                        ": expected KVARN_CL_FRAME_ORIGINAL (0) or KVARN_CL_FRAME_ROTATED (1)");
}

AttendPath to_path(const kvarn_cl_attend_path& a) {
  const long long v = raw(a);
  if (v == KVARN_CL_ATTEND_FUSED) return AttendPath::fused;
  if (v == KVARN_CL_ATTEND_MATERIALIZE) return AttendPath::materialize;
  throw InvalidArgument("invalid attend path " + std::to_string(v) +
                        ": expected KVARN_CL_ATTEND_FUSED (0) or KVARN_CL_ATTEND_MATERIALIZE (1)");
}

CodecParams params(const kvarn_cl_preset& preset, int head_dim, int iters) {
  CodecParams p;
  p.preset = to_preset(preset);
  p.head_dim = head_dim;
  p.sinkhorn_iters = iters;
  p.validate();
  return p;
}

// A batch cannot list more sequences than the cache holds; checked before the C arrays are copied.
void check_batch(const KVCache& cache, std::size_t num_seqs) {
  const auto max = std::size_t(cache.config().max_sequences);
  if (num_seqs > max)
    throw InvalidArgument("num_seqs " + std::to_string(num_seqs) +
                          " is more than the cache's max_sequences " + std::to_string(max));
}

}  // namespace

extern "C" {

const char* kvarn_cl_version(void) { return kvarn_cl::version(); }
const char* kvarn_cl_last_error(void) { return capi::last_error(); }
const char* kvarn_cl_status_name(kvarn_cl_status status) {
  const long long v = raw(status);
  if (v < KVARN_CL_OK || v > KVARN_CL_INTERNAL) return "unknown status";
  return kvarn_cl::status_name(static_cast<Status>(v));
}

kvarn_cl_status kvarn_cl_preset_parse(const char* name, kvarn_cl_preset* out) {
  return capi::guarded([&] {
    require(name, "name");
    require(out, "out");
    *out = from_preset(parse_preset(name, "preset name"));
  });
}

const char* kvarn_cl_preset_name(kvarn_cl_preset preset) {
  const long long v = raw(preset);
  if (v < 0 || v >= int(all_presets().size())) return nullptr;
  return preset_info(all_presets()[std::size_t(v)]).name;
}

kvarn_cl_status kvarn_cl_preset_group(kvarn_cl_preset preset, int* out) {
  return capi::guarded([&] {
    require(out, "out");
    *out = preset_info(to_preset(preset)).group;
  });
}

kvarn_cl_status kvarn_cl_record_bytes(kvarn_cl_preset preset, int head_dim, size_t* out) {
  return capi::guarded([&] {
    require(out, "out");
    *out = RecordLayout::make(params(preset, head_dim, kDefaultSinkhornIters)).bytes;
  });
}

kvarn_cl_status kvarn_cl_backend_create(kvarn_cl_backend_kind kind, unsigned cpu_threads,
                                        kvarn_cl_backend** out) {
  return capi::guarded([&] {
    require(out, "out");
    *out = nullptr;
    auto b = std::make_unique<kvarn_cl_backend>();
    const long long k = raw(kind);
    BackendOptions options;  // the one rule of make_backend, as C++ and Python
    if (k == KVARN_CL_BACKEND_CPU)
      options.kind = BackendKind::cpu;
    else if (k == KVARN_CL_BACKEND_OPENCL)
      options.kind = BackendKind::opencl;
    else if (k == KVARN_CL_BACKEND_AUTOMATIC)
      options.kind = BackendKind::automatic;
    else
      throw InvalidArgument("invalid backend kind " + std::to_string(k) +
                            ": expected KVARN_CL_BACKEND_CPU, _OPENCL or _AUTOMATIC");
    options.cpu_threads = CpuThreads{cpu_threads};
    b->impl = make_backend(options);
    b->name = b->impl->name();
    *out = b.release();
  });
}

kvarn_cl_status kvarn_cl_backend_create_on_queue(struct _cl_context* context,
                                                 struct _cl_device_id* device,
                                                 struct _cl_command_queue* queue,
                                                 kvarn_cl_backend** out) {
  return capi::guarded([&] {
    require(out, "out");
    *out = nullptr;
    require(context, "context");
    require(device, "device");
    require(queue, "queue");
#if KVARN_CL_WITH_OPENCL
    auto b = std::make_unique<kvarn_cl_backend>();
    b->impl = make_opencl_backend(context, device, queue);
    b->name = b->impl->name();
    *out = b.release();
#else
    throw Unsupported("this build of libkvarn_cl has no OpenCL backend (KVARN_CL_WITH_OPENCL=OFF)");
#endif
  });
}

void kvarn_cl_backend_destroy(kvarn_cl_backend* backend) { delete backend; }

kvarn_cl_status kvarn_cl_backend_get_kind(const kvarn_cl_backend* backend,
                                          kvarn_cl_backend_kind* out) {
  return capi::guarded([&] {
    require(backend, "backend");
    require(out, "out");
    *out = backend->impl->kind() == BackendKind::opencl ? KVARN_CL_BACKEND_OPENCL
                                                        : KVARN_CL_BACKEND_CPU;
  });
}

const char* kvarn_cl_backend_name(const kvarn_cl_backend* backend) {
  return backend ? backend->name.c_str() : "";
}

kvarn_cl_status kvarn_cl_quantize_tiles(kvarn_cl_backend* backend, kvarn_cl_preset preset,
                                        int head_dim, int sinkhorn_iters, size_t tiles,
                                        const void* k, const void* v,
                                        kvarn_cl_element_type elem_type, uint8_t* records) {
  return capi::guarded([&] {
    require(backend, "backend");
    require(k, "k");
    require(v, "v");
    require(records, "records");
    const CodecParams p = params(preset, head_dim, sinkhorn_iters);
    const ElementType type = to_element(elem_type, "elem_type");
    quantize_host(*backend->impl, p, k, v, type, Frame::original, tiles, records);
  });
}

kvarn_cl_status kvarn_cl_dequantize_tiles(kvarn_cl_backend* backend, kvarn_cl_preset preset,
                                          int head_dim, size_t tiles, const uint8_t* records,
                                          kvarn_cl_frame frame, kvarn_cl_element_type out_type,
                                          void* k_out, void* v_out) {
  return capi::guarded([&] {
    require(backend, "backend");
    require(records, "records");
    require(k_out, "k_out");
    require(v_out, "v_out");
    const CodecParams p = params(preset, head_dim, kDefaultSinkhornIters);
    const ElementType type = to_element(out_type, "out_type");
    dequantize_host(*backend->impl, p, records, tiles, to_frame(frame), type, k_out, v_out);
  });
}

void kvarn_cl_cache_config_init(kvarn_cl_cache_config* config) {
  if (config == nullptr) return;
  const CacheConfig d;
  config->preset = KVARN_CL_K4V2_G128;
  config->head_dim = d.codec.head_dim;
  config->sinkhorn_iters = d.codec.sinkhorn_iters;
  config->num_layers = d.num_layers;
  config->num_kv_heads = d.num_kv_heads;
  config->max_sequences = d.max_sequences;
  config->max_tokens_per_sequence = d.max_tokens_per_sequence;
  config->pool_blocks = d.pool_blocks;
  config->sink_tokens = d.sink_tokens;
  config->max_uncommitted = d.max_uncommitted;
  config->layer_presets = nullptr;
  config->recent_tokens = d.recent_tokens;
}

kvarn_cl_status kvarn_cl_cache_create(kvarn_cl_backend* backend,
                                      const kvarn_cl_cache_config* config, kvarn_cl_cache** out) {
  return capi::guarded([&] {
    require(backend, "backend");
    require(config, "config");
    require(out, "out");
    *out = nullptr;
    CacheConfig c;
    kvarn_cl_preset preset;  // copied as bytes: the field may hold any int (see raw())
    std::memcpy(&preset,
                reinterpret_cast<const char*>(config) + offsetof(kvarn_cl_cache_config, preset),
                sizeof preset);
    c.codec = params(preset, config->head_dim, config->sinkhorn_iters);
    c.num_layers = config->num_layers;
    c.num_kv_heads = config->num_kv_heads;
    c.max_sequences = config->max_sequences;
    c.max_tokens_per_sequence = config->max_tokens_per_sequence;
    c.pool_blocks = config->pool_blocks;
    c.sink_tokens = config->sink_tokens;
    c.max_uncommitted = config->max_uncommitted;
    c.recent_tokens = config->recent_tokens;
    if (config->layer_presets != nullptr) {
      if (config->num_layers < 1)
        throw InvalidArgument("invalid config->num_layers " + std::to_string(config->num_layers) +
                              ": must be >= 1");
      for (int l = 0; l < config->num_layers; ++l)
        c.layer_presets.push_back(to_preset(config->layer_presets[l]));
    }
    c.backend = backend->impl;
    auto cache = std::make_unique<kvarn_cl_cache>();
    cache->impl = std::make_unique<KVCache>(std::move(c));
    *out = cache.release();
  });
}

void kvarn_cl_cache_destroy(kvarn_cl_cache* cache) { delete cache; }

kvarn_cl_status kvarn_cl_cache_add_sequence(kvarn_cl_cache* cache, uint64_t* seq_id) {
  return capi::guarded([&] {
    require(cache, "cache");
    require(seq_id, "seq_id");
    *seq_id = cache->impl->add_sequence();
  });
}

kvarn_cl_status kvarn_cl_cache_free_sequence(kvarn_cl_cache* cache, uint64_t seq_id) {
  return capi::guarded([&] {
    require(cache, "cache");
    cache->impl->free_sequence(seq_id);
  });
}

kvarn_cl_status kvarn_cl_cache_length(const kvarn_cl_cache* cache, uint64_t seq_id, int layer,
                                      int* tokens) {
  return capi::guarded([&] {
    require(cache, "cache");
    require(tokens, "tokens");
    *tokens = cache->impl->length(seq_id, layer);
  });
}

kvarn_cl_status kvarn_cl_cache_append(kvarn_cl_cache* cache, int layer, size_t num_seqs,
                                      const uint64_t* seq_ids, const int* tokens, const void* k,
                                      const void* v, kvarn_cl_element_type elem_type,
                                      int speculative) {
  return capi::guarded([&] {
    require(cache, "cache");
    require(seq_ids, "seq_ids");
    require(tokens, "tokens");
    const ElementType type = to_element(elem_type, "elem_type");
    if (speculative != 0 && speculative != 1)
      throw InvalidArgument("invalid speculative " + std::to_string(speculative) +
                            ": expected 0 (commit) or 1 (speculative)");
    check_batch(*cache->impl, num_seqs);
    const std::vector<SeqId> ids(seq_ids, seq_ids + num_seqs);
    const std::vector<int> counts(tokens, tokens + num_seqs);
    cache->impl->append(layer, ids, counts, k, v, type,
                        speculative == 1 ? AppendMode::speculative : AppendMode::commit);
  });
}

kvarn_cl_status kvarn_cl_cache_commit(kvarn_cl_cache* cache, uint64_t seq_id, int tokens) {
  return capi::guarded([&] {
    require(cache, "cache");
    cache->impl->commit(seq_id, tokens);
  });
}

kvarn_cl_status kvarn_cl_cache_rollback(kvarn_cl_cache* cache, uint64_t seq_id) {
  return capi::guarded([&] {
    require(cache, "cache");
    cache->impl->rollback(seq_id);
  });
}

kvarn_cl_status kvarn_cl_cache_attend(kvarn_cl_cache* cache, int layer, size_t num_seqs,
                                      const uint64_t* seq_ids, int num_q_heads, const float* q,
                                      void* out, kvarn_cl_element_type out_type, float scale,
                                      kvarn_cl_attend_path path) {
  return capi::guarded([&] {
    require(cache, "cache");
    require(seq_ids, "seq_ids");
    require(q, "q");
    require(out, "out");
    const ElementType type = to_element(out_type, "out_type");
    const AttendPath p = to_path(path);
    check_batch(*cache->impl, num_seqs);
    const std::vector<SeqId> ids(seq_ids, seq_ids + num_seqs);
    if (type == ElementType::f32)
      cache->impl->attend(layer, ids, num_q_heads, q, static_cast<float*>(out), scale, p);
    else
      cache->impl->attend(layer, ids, num_q_heads, q, static_cast<half_bits*>(out), scale, p);
  });
}

kvarn_cl_status kvarn_cl_cache_memory_report(const kvarn_cl_cache* cache,
                                             kvarn_cl_memory_report* out) {
  return capi::guarded([&] {
    require(cache, "cache");
    require(out, "out");
    const MemoryReport r = cache->impl->memory_report();
    out->records = r.records;
    out->sink = r.sink;
    out->tail = r.tail;
    out->block_tables = r.block_tables;
    out->seq_info = r.seq_info;
    out->workspaces = r.workspaces;
    out->total = r.total();
    out->records_in_use = r.records_in_use;
    out->live_tokens = r.live_tokens;
    out->fp16_equivalent = r.fp16_equivalent;
    out->free_blocks = r.free_blocks;
    out->exact_recent_tokens = r.exact_recent_tokens;
  });
}

kvarn_cl_status kvarn_cl_cache_begin_step(kvarn_cl_cache* cache, size_t num_seqs,
                                          const uint64_t* seq_ids, kvarn_cl_step** out) {
  return capi::guarded([&] {
    require(out, "out");
    *out = nullptr;
    require(cache, "cache");
    require(seq_ids, "seq_ids");
    check_batch(*cache->impl, num_seqs);
    const std::vector<SeqId> ids(seq_ids, seq_ids + num_seqs);
    *out = new kvarn_cl_step{cache->impl->begin_step(ids)};
  });
}

kvarn_cl_status kvarn_cl_step_append(kvarn_cl_step* step, int layer, const void* k, const void* v,
                                     kvarn_cl_element_type elem_type) {
  return capi::guarded([&] {
    require(step, "step");
    require(k, "k");
    require(v, "v");
    step->impl.append(layer, k, v, to_element(elem_type, "elem_type"));
  });
}

kvarn_cl_status kvarn_cl_step_append_cl(kvarn_cl_step* step, int layer, struct _cl_mem* k,
                                        struct _cl_mem* v, kvarn_cl_element_type elem_type,
                                        uint32_t num_wait, struct _cl_event* const* wait,
                                        struct _cl_event** done) {
  return capi::guarded([&] {
    if (done != nullptr) *done = nullptr;
    require(step, "step");
    require(k, "k");
    require(v, "v");
    if (num_wait > 0) require(wait, "wait");
    const ElementType type = to_element(elem_type, "elem_type");
#if KVARN_CL_WITH_OPENCL
    const std::unique_ptr<Buffer> kb = wrap_opencl_buffer(k), vb = wrap_opencl_buffer(v);
    StepEvents ev{std::vector<_cl_event*>(wait, wait + num_wait), done};
    step->impl.append(layer, *kb, *vb, type, ev);
#else
    (void)type;
    (void)layer;
    throw Unsupported("kvarn_cl_step_append_cl: this build of libkvarn_cl has no OpenCL backend");
#endif
  });
}

kvarn_cl_status kvarn_cl_step_attend(kvarn_cl_step* step, int layer, int num_q_heads,
                                     const float* q, void* out, kvarn_cl_element_type out_type,
                                     float scale) {
  return capi::guarded([&] {
    require(step, "step");
    require(q, "q");
    require(out, "out");
    if (to_element(out_type, "out_type") == ElementType::f32)
      step->impl.attend(layer, num_q_heads, q, static_cast<float*>(out), scale);
    else
      step->impl.attend(layer, num_q_heads, q, static_cast<half_bits*>(out), scale);
  });
}

kvarn_cl_status kvarn_cl_step_attend_cl(kvarn_cl_step* step, int layer, int num_q_heads,
                                        struct _cl_mem* q, struct _cl_mem* out,
                                        kvarn_cl_element_type out_type, float scale,
                                        uint32_t num_wait, struct _cl_event* const* wait,
                                        struct _cl_event** done) {
  return capi::guarded([&] {
    if (done != nullptr) *done = nullptr;
    require(step, "step");
    require(q, "q");
    require(out, "out");
    if (num_wait > 0) require(wait, "wait");
    const ElementType type = to_element(out_type, "out_type");
#if KVARN_CL_WITH_OPENCL
    const std::unique_ptr<Buffer> qb = wrap_opencl_buffer(q), ob = wrap_opencl_buffer(out);
    StepEvents ev{std::vector<_cl_event*>(wait, wait + num_wait), done};
    step->impl.attend(layer, num_q_heads, *qb, *ob, type, scale, ev);
#else
    (void)type;
    (void)layer;
    (void)num_q_heads;
    (void)scale;
    throw Unsupported("kvarn_cl_step_attend_cl: this build of libkvarn_cl has no OpenCL backend");
#endif
  });
}

kvarn_cl_status kvarn_cl_step_finish(kvarn_cl_step* step) {
  const std::unique_ptr<kvarn_cl_step> owned(step);
  return capi::guarded([&] {
    require(step, "step");
    step->impl.finish();
  });
}

void kvarn_cl_step_abandon(kvarn_cl_step* step) { delete step; }

kvarn_cl_status kvarn_cl_cache_layer_preset(const kvarn_cl_cache* cache, int layer,
                                            kvarn_cl_preset* preset, size_t* record_bytes) {
  return capi::guarded([&] {
    require(cache, "cache");
    const RecordLayout& L = cache->impl->layout(layer);  // checks the layer
    if (preset != nullptr) *preset = from_preset(cache->impl->config().layer_codec(layer).preset);
    if (record_bytes != nullptr) *record_bytes = L.bytes;
  });
}

kvarn_cl_status kvarn_cl_layer_presets_read(const char* path, kvarn_cl_preset* out, size_t capacity,
                                            size_t* count) {
  return capi::guarded([&] {
    require(path, "path");
    require(count, "count");
    if (capacity > 0) require(out, "out");
    const std::vector<Preset> p = read_layer_presets(path);
    *count = p.size();
    if (p.size() > capacity)
      throw InvalidArgument(std::string("layer-preset file '") + path + "' lists " +
                            std::to_string(p.size()) + " layers but capacity is " +
                            std::to_string(capacity));
    for (std::size_t i = 0; i < p.size(); ++i) out[i] = from_preset(p[i]);
  });
}

}  // extern "C"
