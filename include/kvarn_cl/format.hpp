// Presets, codec parameters and the record layout of SPEC §2.1 and §2.5.
// This header is the single source of truth for record geometry: the CPU codec reads its offsets
// from RecordLayout and the OpenCL kernels receive the same numbers as -D build options.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvarn_cl {

// Element type of rows handed to the library and of the outputs it writes (fp16 as IEEE bits).
enum class ElementType { f16, f32 };
// Bytes of one value of the type.
constexpr std::size_t element_bytes(ElementType t) noexcept {
  return t == ElementType::f32 ? 4 : 2;
}

// The "original" frame is what the model produces; the "rotated" frame is x·H with H the
// normalized Sylvester Hadamard matrix. Records always hold rotated-frame data.
enum class Frame { original, rotated };

enum class Preset { k4v2_g128, k4v4_g128, k2v2_g128, k4v2_g64, k4v4_g64 };
// How many presets `Preset` names: the size of all_presets() and of the preset table
// (src/format/preset.cpp, whose static_assert checks that row i describes Preset(i)).
inline constexpr std::size_t kNumPresets = 5;

struct PresetInfo {
  Preset preset;
  const char* name;  // "k4v2_g128"
  int k_bits;
  int v_bits;
  int group;  // G, tokens per tile
  bool experimental;
};

// The code widths, in bits per code, that the record format (a byte holds 8 / bits codes), the
// CPU codec and the kernels implement (SPEC §2.4–2.5): 2 and 4, stated once here. Every preset's
// k_bits and v_bits is one of them (a static_assert where the presets are defined,
// src/format/preset.cpp); the codec's packing and unpacking are written for exactly this set
// (static_asserts in src/cpu/pack.cpp and simd_codec.cpp). A new width starts here.
inline constexpr std::array<int, 2> kSupportedCodeBits = {2, 4};
constexpr bool is_supported_code_bits(int bits) noexcept {
  for (int b : kSupportedCodeBits)
    if (b == bits) return true;
  return false;
}
// Throws InvalidArgument naming the argument and the width when `bits` is not supported.
void validate_code_bits(int bits, std::string_view argument);
// Throws InvalidArgument naming the preset when its description cannot run: a code width not in
// kSupportedCodeBits, or a tile size G other than 64 or 128. CodecParams::validate() calls it, so
// every configuration (a cache, a codec call, a record layout) is checked before it runs.
void validate_preset_info(const PresetInfo& info);

// Every preset in enum order; the C API's preset index (kvarn_cl.h) is the position here.
const std::array<Preset, kNumPresets>& all_presets() noexcept;
const PresetInfo& preset_info(Preset p) noexcept;
std::string to_string(Preset p);
// Throws InvalidArgument naming the argument and the value, and listing the valid presets.
Preset parse_preset(std::string_view name, std::string_view argument = "preset");

constexpr int kDefaultSinkhornIters = 8;

struct CodecParams {
  Preset preset = Preset::k4v2_g128;
  int head_dim = 128;
  int sinkhorn_iters = kDefaultSinkhornIters;

  int k_bits() const noexcept { return preset_info(preset).k_bits; }
  int v_bits() const noexcept { return preset_info(preset).v_bits; }
  int group() const noexcept { return preset_info(preset).group; }
  // Throws InvalidArgument: a known preset that can run (validate_preset_info), head_dim 64, 128
  // or 256 (a power of two), iterations 0..64.
  void validate() const;
};

// Throws InvalidArgument if head_dim is not one of the supported powers of two.
void validate_head_dim(int head_dim, std::string_view argument = "head_dim");

// Byte offsets of every field of one record (one tile of one KV head), SPEC §2.5.
struct RecordLayout {
  int head_dim = 0;
  int group = 0;
  int k_bits = 0;
  int v_bits = 0;
  std::size_t k_row_bytes = 0;  // G*kb/8: one channel's codes along tokens
  std::size_t v_row_bytes = 0;  // D*vb/8: one token's codes along channels
  std::size_t k_codes = 0;      // offset of K codes (D rows)
  std::size_t s_col_k = 0;      // D fp16
  std::size_t zp_k = 0;         // D fp16
  std::size_t s_row_k = 0;      // G fp16
  std::size_t v_codes = 0;      // G rows
  std::size_t s_col_v = 0;      // D fp16
  std::size_t s_row_v = 0;      // G fp16
  std::size_t zp_v = 0;         // G fp16
  std::size_t bytes = 0;        // whole record

  static RecordLayout make(const CodecParams& params);
  // fp16 bytes of the K and V rows a record replaces (2 * G * D * 2).
  std::size_t fp16_bytes() const noexcept { return std::size_t(4) * group * head_dim; }
  double compression() const noexcept { return double(fp16_bytes()) / double(bytes); }
};

// Largest magnitude of a rotated key or value channel the codec accepts. The normalization
// (SPEC §2.3) bounds column scales below by exp(-0.3), so a folded zero point reaches
// |x|·exp(0.3); below this bound every stored scale product is a finite fp16 (65504·exp(-0.3) is
// 48526). Larger or non-finite rotated rows are refused (NonFiniteInput) wherever rows enter:
// KVCache::append, quantize (both backends), kvarn-cl quantize.
constexpr float kMaxRotatedMagnitude = 48000.0f;

// Checks records that come from outside the library (a file, another process) before they are
// attended or decoded: every scale vector and zero point finite, and the step and column scales
// (s_col_K, s_row_K, s_col_V, s_row_V) not negative. Throws CorruptRecord naming the record, the
// field and the index. Records written by quantize always pass.
void validate_records(const CodecParams& params, const std::uint8_t* records, std::size_t count);

}  // namespace kvarn_cl
