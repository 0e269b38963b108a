#include "opencl_fixture.hpp"

#include "common/test_support.hpp"
#include "kvarn_cl/device.hpp"
#include "kvarn_cl/error.hpp"

namespace kvarn_cl::test {
namespace {

struct Shared {
  std::unique_ptr<opencl::OpenCLBackend> backend;
  std::string unavailable;  // why no backend, once tried
  bool tried = false;
};
Shared& shared() {
  static Shared s;
  return s;
}

class ReleaseBackend : public ::testing::Environment {
 public:
  void TearDown() override { shared().backend.reset(); }
};
const auto* const kRelease = ::testing::AddGlobalTestEnvironment(new ReleaseBackend);

}  // namespace

opencl::OpenCLBackend& cl_backend() {
  Shared& s = shared();
  if (!s.tried) {
    s.tried = true;
    try {
      std::unique_ptr<Backend> b = make_opencl_backend();
      s.backend.reset(static_cast<opencl::OpenCLBackend*>(b.release()));
    } catch (const Unsupported& e) {
      s.unavailable = e.what();
    }
  }
  if (!s.backend) {
    throw std::runtime_error("no OpenCL device: " + s.unavailable);
  }
  return *s.backend;
}

std::unique_ptr<Buffer> to_device(const void* data, std::size_t bytes) {
  auto b = cl_backend().allocate(bytes);
  cl_backend().write(*b, 0, data, bytes);
  return b;
}

RotatedTiles make_rotated_tiles(const CodecParams& params, std::size_t tiles, std::uint32_t seed) {
  const std::size_t rows = tiles * std::size_t(params.group());
  const int D = params.head_dim;
  RotatedTiles t;
  t.k.resize(rows * D);
  t.v.resize(rows * D);
  const std::vector<float> k = gaussian_rows(rows, D, seed, {1, D / 3, D - 2}, 20.0f);
  const std::vector<float> v = gaussian_rows(rows, D, seed + 1000, {0, D / 2}, 8.0f);
  rotate_rows(k.data(), t.k.data(), rows, D);
  rotate_rows(v.data(), t.v.data(), rows, D);
  return t;
}

}  // namespace kvarn_cl::test
