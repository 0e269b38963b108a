// One OpenCL backend per test process (PoCL compiles slowly: every program is built once and
// reused by all tests through the device runtime's program cache). Created on first use, torn
// down by a gtest Environment before main returns, so no cl:: object outlives the test run.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "kvarn_cl/backend.hpp"
#include "kvarn_cl/codec.hpp"
#include "opencl/opencl_backend.hpp"

namespace kvarn_cl::test {

// The shared backend; fails the calling test when no OpenCL device is usable (CI has PoCL).
opencl::OpenCLBackend& cl_backend();

// Upload host data into a fresh device buffer of the shared backend.
std::unique_ptr<Buffer> to_device(const void* data, std::size_t bytes);
template <typename T>
std::unique_ptr<Buffer> to_device(const std::vector<T>& v) {
  return to_device(v.data(), v.size() * sizeof(T));
}
template <typename T>
std::vector<T> from_device(const Buffer& b, std::size_t count) {
  std::vector<T> v(count);
  cl_backend().read(b, 0, v.data(), count * sizeof(T));
  return v;
}

// tiles × G rotated fp16 rows for K and V: N(0,1) with outlier channels (×20), rotated on the CPU.
struct RotatedTiles {
  std::vector<half_bits> k, v;
};
RotatedTiles make_rotated_tiles(const CodecParams& params, std::size_t tiles, std::uint32_t seed);

}  // namespace kvarn_cl::test
