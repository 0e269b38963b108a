// Fuzzes kvarn-eval's GGUF reader and the model's header checks on arbitrary bytes: parsing the
// metadata and tensor directory, dequantizing every tensor the directory accepts, and building
// the model configuration. Only std::exception (kvarn_cl::Error, or bad_alloc for a tensor too
// large for this process) may escape; nothing may crash or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <vector>

#include "gguf.hpp"
#include "kvarn_cl/error.hpp"
#include "model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    kvarn_eval::GgufFile f(std::vector<std::uint8_t>(data, data + size), "fuzz.gguf");
    for (const auto& t : f.tensors())
      if (t.elements() <= (std::uint64_t(1) << 20)) {
        try {
          (void)f.dequantize(t);
        } catch (const kvarn_cl::Error&) {
        }
      }
    kvarn_eval::Model m(f);
  } catch (const kvarn_cl::Error&) {
  } catch (const std::bad_alloc&) {
  }
  return 0;
}
