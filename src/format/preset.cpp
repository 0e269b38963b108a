// Presets of SPEC §2.1 and their names.
#include <sstream>

#include "format/printable.hpp"
#include "kvarn_cl/error.hpp"
#include "kvarn_cl/format.hpp"

namespace kvarn_cl {
namespace {

// Row i describes Preset(i) (static_assert below), so this table alone orders and names them.
constexpr std::array<PresetInfo, kNumPresets> kPresets = {{
    {Preset::k4v2_g128, "k4v2_g128", 4, 2, 128, false},
    {Preset::k4v4_g128, "k4v4_g128", 4, 4, 128, false},
    {Preset::k2v2_g128, "k2v2_g128", 2, 2, 128, true},
    {Preset::k4v2_g64, "k4v2_g64", 4, 2, 64, false},
    {Preset::k4v4_g64, "k4v4_g64", 4, 4, 64, false},
}};

// A preset the codec and the kernels cannot run does not compile (kSupportedCodeBits, format.hpp).
constexpr bool code_widths_supported(const std::array<PresetInfo, kNumPresets>& presets) {
  for (const PresetInfo& p : presets)
    if (!is_supported_code_bits(p.k_bits) || !is_supported_code_bits(p.v_bits)) return false;
  return true;
}
static_assert(code_widths_supported(kPresets),
              "a preset's k_bits and v_bits must be in kSupportedCodeBits (2 or 4): the record "
              "format, the CPU codec and the kernels implement those widths only");

// The table and the enum agree: one row per enumerator, in enum order (a row left out of a
// larger kNumPresets is value-initialized to Preset(0) and fails here).
constexpr bool rows_in_enum_order(const std::array<PresetInfo, kNumPresets>& presets) {
  for (std::size_t i = 0; i < presets.size(); ++i)
    if (presets[i].preset != Preset(i) || presets[i].name == nullptr) return false;
  return true;
}
static_assert(rows_in_enum_order(kPresets),
              "kPresets must hold one row per Preset enumerator, row i describing Preset(i), and "
              "kNumPresets (format.hpp) must count the enumerators");

constexpr std::array<Preset, kNumPresets> presets_of(
    const std::array<PresetInfo, kNumPresets>& presets) {
  std::array<Preset, kNumPresets> out{};
  for (std::size_t i = 0; i < presets.size(); ++i) out[i] = presets[i].preset;
  return out;
}
constexpr std::array<Preset, kNumPresets> kAll = presets_of(kPresets);

}  // namespace

const std::array<Preset, kNumPresets>& all_presets() noexcept { return kAll; }

const PresetInfo& preset_info(Preset p) noexcept {
  for (const auto& info : kPresets)
    if (info.preset == p) return info;
  return kPresets[0];  // unreachable for valid enum values
}

std::string to_string(Preset p) { return preset_info(p).name; }

Preset parse_preset(std::string_view name, std::string_view argument) {
  for (const auto& info : kPresets)
    if (name == info.name) return info.preset;
  std::ostringstream msg;
  // The name may come from a file (a layer-preset file): quoted printable.
  msg << "invalid " << argument << " '" << printable(name) << "': expected one of";
  for (const auto& info : kPresets) msg << ' ' << info.name;
  throw InvalidArgument(msg.str());
}

void validate_head_dim(int head_dim, std::string_view argument) {
  if (head_dim == 64 || head_dim == 128 || head_dim == 256) return;
  std::ostringstream msg;
  msg << "invalid " << argument << ' ' << head_dim << ": ";
  if (head_dim <= 0 || (head_dim & (head_dim - 1)) != 0) msg << "not a power of two; ";
  msg << "supported head dimensions are 64, 128 and 256";
  throw InvalidArgument(msg.str());
}

void validate_code_bits(int bits, std::string_view argument) {
  if (is_supported_code_bits(bits)) return;
  std::ostringstream msg;
  msg << "invalid " << argument << ' ' << bits << ": supported code widths are";
  for (std::size_t i = 0; i < kSupportedCodeBits.size(); ++i)
    msg << (i == 0 ? " " : " and ") << kSupportedCodeBits[i];
  msg << " bits";
  throw InvalidArgument(msg.str());
}

void validate_preset_info(const PresetInfo& info) {
  const std::string name = "preset " + printable(info.name ? info.name : "(unnamed)");
  validate_code_bits(info.k_bits, name + " k_bits");
  validate_code_bits(info.v_bits, name + " v_bits");
  if (info.group != 64 && info.group != 128)
    throw InvalidArgument("invalid " + name + " group " + std::to_string(info.group) +
                          ": supported tile sizes are 64 and 128 tokens");
}

void CodecParams::validate() const {
  bool known = false;
  for (const auto& info : kPresets) known = known || info.preset == preset;
  if (!known) throw InvalidArgument("invalid preset value " + std::to_string(int(preset)));
  validate_preset_info(preset_info(preset));
  validate_head_dim(head_dim);
  if (sinkhorn_iters < 0 || sinkhorn_iters > 64)
    throw InvalidArgument("invalid sinkhorn_iters " + std::to_string(sinkhorn_iters) +
                          ": expected 0..64");
}

}  // namespace kvarn_cl
