// Fuzzes the kvarn-cl file readers (parse_f16_rows: sizes, tile multiples, NaN/Inf checks) with the
// row widths and tile sizes the subcommands use. Input: one byte choosing them, then file bytes.
// Only kvarn_cl::Error may escape; accepted data has the promised shape and is finite.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cli.hpp"
#include "kvarn_cl/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kvarn_cl;
  if (size < 1) return 0;
  static const int widths[] = {64, 128, 256, 1, 3, 512};
  static const std::size_t multiples[] = {1, 64, 128, 2};
  const int cols = widths[data[0] % 6];
  const std::size_t multiple = multiples[(data[0] / 6) % 4];
  const std::vector<std::uint8_t> bytes(data + 1, data + size);
  std::size_t rows = 0;
  try {
    const auto h = cli::parse_f16_rows(bytes, "--k 'fuzz'", cols, "--head-dim", multiple, "G =", &rows);
    if (rows == 0 || rows % multiple != 0 || h.size() != rows * std::size_t(cols)) __builtin_trap();
    for (half_bits x : h)
      if ((x & 0x7C00u) == 0x7C00u) __builtin_trap();
  } catch (const Error&) {
  }
  return 0;
}
