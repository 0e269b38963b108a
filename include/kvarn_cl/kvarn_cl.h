/* libkvarn_cl C API: KVarN KV-cache quantization (SPEC.md) behind opaque handles.
 *
 * Every function returns a kvarn_cl_status (values equal kvarn_cl::Status of the C++ API); on an
 * error kvarn_cl_last_error() returns the message of the failure of the calling thread (it names
 * the argument and the value). No function throws, exits or aborts. Handles are not thread-safe:
 * use one handle from one thread at a time. fp16 data is raw IEEE half bits (uint16_t).
 */
#ifndef KVARN_CL_H
#define KVARN_CL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kvarn_cl_status {
  KVARN_CL_OK = 0,
  KVARN_CL_INVALID_ARGUMENT = 1,
  KVARN_CL_NON_FINITE_INPUT = 2,
  KVARN_CL_CORRUPT_RECORD = 3,
  KVARN_CL_OUT_OF_MEMORY = 4,
  KVARN_CL_DEVICE_ERROR = 5,
  KVARN_CL_KERNEL_BUILD_ERROR = 6,
  KVARN_CL_UNSUPPORTED = 7,
  KVARN_CL_IO_ERROR = 8,
  KVARN_CL_INTERNAL = 9
} kvarn_cl_status;

typedef enum kvarn_cl_preset {
  KVARN_CL_K4V2_G128 = 0,
  KVARN_CL_K4V4_G128 = 1,
  KVARN_CL_K2V2_G128 = 2, /* experimental */
  KVARN_CL_K4V2_G64 = 3,
  KVARN_CL_K4V4_G64 = 4
} kvarn_cl_preset;

typedef enum kvarn_cl_backend_kind {
  KVARN_CL_BACKEND_CPU = 0,
  KVARN_CL_BACKEND_OPENCL = 1,
  KVARN_CL_BACKEND_AUTOMATIC = 2 /* OpenCL when a device is usable, else the CPU */
} kvarn_cl_backend_kind;

typedef enum kvarn_cl_element_type { KVARN_CL_F16 = 0, KVARN_CL_F32 = 1 } kvarn_cl_element_type;
typedef enum kvarn_cl_frame {
  KVARN_CL_FRAME_ORIGINAL = 0,
  KVARN_CL_FRAME_ROTATED = 1
} kvarn_cl_frame;
typedef enum kvarn_cl_attend_path {
  KVARN_CL_ATTEND_FUSED = 0,
  KVARN_CL_ATTEND_MATERIALIZE = 1
} kvarn_cl_attend_path;

typedef struct kvarn_cl_backend kvarn_cl_backend;
typedef struct kvarn_cl_cache kvarn_cl_cache;
typedef struct kvarn_cl_step kvarn_cl_step;

/* OpenCL's handle types by their C names (cl_context is struct _cl_context*, ...), so that this
 * header does not need CL/cl.h: pass the engine's cl_context, cl_mem, cl_event directly. */
struct _cl_context;
struct _cl_device_id;
struct _cl_command_queue;
struct _cl_mem;
struct _cl_event;

/* --- library ------------------------------------------------------------------------------ */
const char* kvarn_cl_version(void);
/* Message of the last failed call on this thread ("" if none). Valid until the next call. */
const char* kvarn_cl_last_error(void);
const char* kvarn_cl_status_name(kvarn_cl_status status);

/* --- presets and records ------------------------------------------------------------------ */
kvarn_cl_status kvarn_cl_preset_parse(const char* name, kvarn_cl_preset* out);
/* "k4v2_g128"; NULL for an unknown value. */
const char* kvarn_cl_preset_name(kvarn_cl_preset preset);
/* Tokens per tile (G) of a preset. */
kvarn_cl_status kvarn_cl_preset_group(kvarn_cl_preset preset, int* out);
/* Bytes of one record (one tile of one KV head) for head_dim 64, 128 or 256. */
kvarn_cl_status kvarn_cl_record_bytes(kvarn_cl_preset preset, int head_dim, size_t* out);

/* --- backends ----------------------------------------------------------------------------- */
/* cpu_threads: threads of the CPU backend whenever it is the one made (KVARN_CL_BACKEND_CPU, or
 * _AUTOMATIC choosing or falling back to the CPU); 0 = the shared pool (KVARN_CL_THREADS, else all
 * hardware threads). Must be 0 with KVARN_CL_BACKEND_OPENCL. The rule is make_backend's
 * (include/kvarn_cl/backend.hpp), the same for C++, C and Python. */
kvarn_cl_status kvarn_cl_backend_create(kvarn_cl_backend_kind kind, unsigned cpu_threads,
                                        kvarn_cl_backend** out);
/* The OpenCL backend on an engine's context, device and in-order queue (retained): the library's
 * kernels run on that queue, in order with the engine's own work. */
kvarn_cl_status kvarn_cl_backend_create_on_queue(struct _cl_context* context,
                                                 struct _cl_device_id* device,
                                                 struct _cl_command_queue* queue,
                                                 kvarn_cl_backend** out);
void kvarn_cl_backend_destroy(kvarn_cl_backend* backend);
/* What the backend runs on: KVARN_CL_BACKEND_CPU or KVARN_CL_BACKEND_OPENCL (never _AUTOMATIC). */
kvarn_cl_status kvarn_cl_backend_get_kind(const kvarn_cl_backend* backend,
                                          kvarn_cl_backend_kind* out);
/* "cpu (N threads)" or "opencl: <platform> / <device>"; owned by the handle. */
const char* kvarn_cl_backend_name(const kvarn_cl_backend* backend);

/* Quantizes `tiles` tiles: k and v are tiles*G rows of head_dim values each (token-major,
 * original frame, elem_type), records receives tiles*record_bytes bytes. sinkhorn_iters 0..64
 * (8 is the library default). */
kvarn_cl_status kvarn_cl_quantize_tiles(kvarn_cl_backend* backend, kvarn_cl_preset preset,
                                        int head_dim, int sinkhorn_iters, size_t tiles,
                                        const void* k, const void* v,
                                        kvarn_cl_element_type elem_type, uint8_t* records);
/* Decodes `tiles` records into tiles*G rows of K and V (fp16 or f32 per out_type). */
kvarn_cl_status kvarn_cl_dequantize_tiles(kvarn_cl_backend* backend, kvarn_cl_preset preset,
                                          int head_dim, size_t tiles, const uint8_t* records,
                                          kvarn_cl_frame frame, kvarn_cl_element_type out_type,
                                          void* k_out, void* v_out);

/* --- the paged KV cache ------------------------------------------------------------------- */
typedef struct kvarn_cl_cache_config {
  kvarn_cl_preset preset;
  int head_dim;       /* 64, 128 or 256 */
  int sinkhorn_iters; /* 8 = default */
  int num_layers;
  int num_kv_heads;
  int max_sequences;
  int max_tokens_per_sequence;
  int pool_blocks;     /* 0 = enough for every sequence at full length */
  int sink_tokens;     /* -1 = one tile */
  int max_uncommitted; /* speculative tokens per sequence, 0..G (default 64) */
  /* NULL: every layer uses `preset`. Otherwise num_layers presets, one per layer, all with the same
   * tile size (e.g. from kvarn_cl_layer_presets_read); `preset` is then ignored. Read only during
   * kvarn_cl_cache_create. */
  const kvarn_cl_preset* layer_presets;
  /* Newest committed tokens kept exact (fp16) beyond the still-filling tile, 0..65536 (default
   * 128, kvarn_cl::kDefaultRecentTokens; 0 turns the window off); they enlarge the tail pool,
   * which the memory report counts. */
  int recent_tokens;
} kvarn_cl_cache_config;

/* Fills the defaults of the C++ CacheConfig (k4v2_g128, D 128, 1 layer, 1 head, recent window
 * 128, ...). */
void kvarn_cl_cache_config_init(kvarn_cl_cache_config* config);

typedef struct kvarn_cl_memory_report {
  size_t records, sink, tail, block_tables, seq_info, workspaces, total;
  size_t records_in_use, live_tokens, fp16_equivalent, free_blocks;
  size_t exact_recent_tokens; /* live tokens held fp16 only because of recent_tokens */
} kvarn_cl_memory_report;

/* Reads a layer-preset file ("<layer> <preset>" lines, '#' comments; written by
 * `kvarn-eval --calibrate`): *count receives the number of layers; up to `capacity` presets go
 * to `out` (which may be NULL when capacity is 0, to ask for the count). A file with more layers
 * than `capacity` is KVARN_CL_INVALID_ARGUMENT, with *count set. */
kvarn_cl_status kvarn_cl_layer_presets_read(const char* path, kvarn_cl_preset* out, size_t capacity,
                                            size_t* count);

/* The cache keeps using `backend`: destroy the cache first. */
kvarn_cl_status kvarn_cl_cache_create(kvarn_cl_backend* backend,
                                      const kvarn_cl_cache_config* config, kvarn_cl_cache** out);
void kvarn_cl_cache_destroy(kvarn_cl_cache* cache);
kvarn_cl_status kvarn_cl_cache_add_sequence(kvarn_cl_cache* cache, uint64_t* seq_id);
kvarn_cl_status kvarn_cl_cache_free_sequence(kvarn_cl_cache* cache, uint64_t seq_id);
kvarn_cl_status kvarn_cl_cache_length(const kvarn_cl_cache* cache, uint64_t seq_id, int layer,
                                      int* tokens);
/* Appends tokens[i] tokens of seq_ids[i] to one layer; k and v are the rows of all listed
 * sequences one after the other, each [tokens][num_kv_heads][head_dim], original frame.
 * speculative 1: the tokens stay uncommitted until commit (rollback drops them); 0: committed at
 * once; any other value is refused with KVARN_CL_INVALID_ARGUMENT. */
kvarn_cl_status kvarn_cl_cache_append(kvarn_cl_cache* cache, int layer, size_t num_seqs,
                                      const uint64_t* seq_ids, const int* tokens, const void* k,
                                      const void* v, kvarn_cl_element_type elem_type,
                                      int speculative);
/* Commits the first `tokens` uncommitted tokens in every layer (-1: all). */
kvarn_cl_status kvarn_cl_cache_commit(kvarn_cl_cache* cache, uint64_t seq_id, int tokens);
kvarn_cl_status kvarn_cl_cache_rollback(kvarn_cl_cache* cache, uint64_t seq_id);
/* q [num_seqs][num_q_heads][head_dim] f32, out the same shape (out_type); scale 0 = 1/sqrt(D). */
kvarn_cl_status kvarn_cl_cache_attend(kvarn_cl_cache* cache, int layer, size_t num_seqs,
                                      const uint64_t* seq_ids, int num_q_heads, const float* q,
                                      void* out, kvarn_cl_element_type out_type, float scale,
                                      kvarn_cl_attend_path path);
kvarn_cl_status kvarn_cl_cache_memory_report(const kvarn_cl_cache* cache,
                                             kvarn_cl_memory_report* out);
/* --- the decode step (docs/API.md, "The decode step"; C++: kvarn_cl/decode_step.hpp) ---------
 * One new token of every listed sequence through every layer: begin plans and uploads once; per
 * layer, append and attend only enqueue device work (no blocking write, no read-back, no wait);
 * finish is the one synchronization point. Device-side failures (NaN, Inf or a value beyond the
 * codec's bound in a new K/V row) are returned by finish as KVARN_CL_NON_FINITE_INPUT, the step
 * rolled back (every sequence as before begin, nothing committed earlier lost). finish and
 * abandon free the handle whatever happens; abandon rolls an unfinished step back. While a step
 * is open the cache refuses append, commit, rollback and free_sequence.
 *
 * Events follow the clEnqueue* convention: the call's device work waits for the num_wait events
 * of `wait` (may be NULL when num_wait is 0); `done`, when not NULL, receives a new event (release
 * it with clReleaseEvent) that completes when the call's work has. On the CPU backend calls
 * complete before returning: num_wait must be 0 and *done is set to NULL. */
kvarn_cl_status kvarn_cl_cache_begin_step(kvarn_cl_cache* cache, size_t num_seqs,
                                          const uint64_t* seq_ids, kvarn_cl_step** out);
/* k, v: [num_seqs][num_kv_heads][head_dim] of elem_type, original frame, in host memory. */
kvarn_cl_status kvarn_cl_step_append(kvarn_cl_step* step, int layer, const void* k, const void* v,
                                     kvarn_cl_element_type elem_type);
/* The same from cl_mem buffers of the backend's context (OpenCL backend only). */
kvarn_cl_status kvarn_cl_step_append_cl(kvarn_cl_step* step, int layer, struct _cl_mem* k,
                                        struct _cl_mem* v, kvarn_cl_element_type elem_type,
                                        uint32_t num_wait, struct _cl_event* const* wait,
                                        struct _cl_event** done);
/* q [num_seqs][num_q_heads][head_dim] f32, out the same shape of out_type, original frame; host
 * memory (waits for the output). Each layer after its append. scale 0 = 1/sqrt(head_dim). */
kvarn_cl_status kvarn_cl_step_attend(kvarn_cl_step* step, int layer, int num_q_heads,
                                     const float* q, void* out, kvarn_cl_element_type out_type,
                                     float scale);
kvarn_cl_status kvarn_cl_step_attend_cl(kvarn_cl_step* step, int layer, int num_q_heads,
                                        struct _cl_mem* q, struct _cl_mem* out,
                                        kvarn_cl_element_type out_type, float scale,
                                        uint32_t num_wait, struct _cl_event* const* wait,
                                        struct _cl_event** done);
kvarn_cl_status kvarn_cl_step_finish(kvarn_cl_step* step);
void kvarn_cl_step_abandon(kvarn_cl_step* step);

/* The preset of one layer of the cache and its record bytes. */
kvarn_cl_status kvarn_cl_cache_layer_preset(const kvarn_cl_cache* cache, int layer,
                                            kvarn_cl_preset* preset, size_t* record_bytes);

/* --- per-layer preset plans (C++: include/kvarn_cl/layer_plan.hpp) ------------------------ */
/* Budgets are steady-state bytes per token per KV head, K and V together, averaged over layers
 * (record bytes / G; the fp16 sink, tail and recent window are not counted). */
kvarn_cl_status kvarn_cl_preset_bytes_per_token_head(kvarn_cl_preset preset, int head_dim,
                                                     double* out);
/* The budget of total_bytes of records holding `tokens` tokens of num_kv_heads heads per layer. */
kvarn_cl_status kvarn_cl_budget_from_total_bytes(size_t total_bytes, size_t tokens,
                                                 int num_kv_heads, int num_layers, double* out);
/* The proxy sensitivity from captured rows: k and v hold num_layers*tokens*num_kv_heads*head_dim
 * floats ([layer][token][head][channel], original frame); each whole tile of each head goes through
 * the CPU codec at every one of the num_presets candidates (distinct, one tile size);
 * error[layer*num_presets + i] receives |K-K'|^2/|K|^2 + |V-V'|^2/|V|^2 of that layer at
 * presets[i]. */
kvarn_cl_status kvarn_cl_layer_sensitivity_measure(const kvarn_cl_preset* presets,
                                                   size_t num_presets, int head_dim,
                                                   int sinkhorn_iters, int num_layers, int tokens,
                                                   int num_kv_heads, const float* k, const float* v,
                                                   double* error);
/* The per-layer plan under `budget` (greedy: largest error reduction per added byte first).
 * error[layer*num_presets + i]: any finite non-negative sensitivity of the layer at presets[i],
 * measured by the caller or by kvarn_cl_layer_sensitivity_measure. plan receives num_layers
 * presets (kvarn_cl_cache_config.layer_presets); bytes_per_token_head (may be NULL) what the plan
 * takes. A budget below the cheapest plan is KVARN_CL_INVALID_ARGUMENT naming both. */
kvarn_cl_status kvarn_cl_layer_plan_choose(const kvarn_cl_preset* presets, size_t num_presets,
                                           int num_layers, const double* error, int head_dim,
                                           double budget, kvarn_cl_preset* plan,
                                           double* bytes_per_token_head);

#ifdef __cplusplus
}
#endif

#endif /* KVARN_CL_H */
