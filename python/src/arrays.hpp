// Arrays between Python and the C++ API without copies: views of caller arrays (numpy, anything
// with the buffer protocol or DLPack on the CPU) checked for dtype, layout and shape with errors
// that name the argument, and new numpy arrays that own C++ memory.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstddef>
#include <initializer_list>
#include <string>
#include <vector>

namespace kvarn_cl::py {

namespace nb = nanobind;

enum class Dtype { f16, f32, u8, other };

const char* dtype_name(Dtype d) noexcept;
std::size_t itemsize(Dtype d) noexcept;
// "(2, 128, 64)"
std::string shape_str(const std::vector<std::size_t>& shape);
std::size_t product(const std::vector<std::size_t>& shape, std::size_t from = 0,
                    std::size_t to = std::size_t(-1));

// A read-only view of a caller's array. `array` keeps the caller's object alive; `data` points
// into its memory (never a copy).
struct ArrayIn {
  nb::ndarray<nb::ro> array;
  const void* data = nullptr;
  Dtype dtype = Dtype::other;
  std::vector<std::size_t> shape;
  std::size_t elements() const noexcept { return product(shape); }
  std::size_t bytes() const noexcept { return elements() * itemsize(dtype); }
};

// Accepts a C-contiguous CPU array of one of the allowed dtypes; anything else (another dtype, a
// strided view, a device array, an object that is no array) raises InvalidArgument naming
// `fn` and `name`. Never converts or copies.
ArrayIn array_in(nb::handle obj, const char* fn, const char* name,
                 std::initializer_list<Dtype> allowed);

// A writable destination: the caller's `out` array (checked like array_in, plus writable and
// exactly `shape`; its dtype must be one of `allowed`) or, when `out` is None, a new numpy array
// of `dtype`.
struct ArrayOut {
  nb::object object;
  void* data = nullptr;
  Dtype dtype = Dtype::other;
  std::size_t bytes = 0;
};
// `name` labels the recorded address (record_address).
ArrayOut array_out(nb::handle out, const char* fn, const std::vector<std::size_t>& shape,
                   Dtype dtype, std::initializer_list<Dtype> allowed, const char* name = "out");

// A new numpy array that owns the vector's memory (moved, not copied).
template <typename T>
nb::object array_from_vector(std::vector<T>&& values, Dtype dtype,
                             const std::vector<std::size_t>& shape);

// numpy dtype-like (None, "float16", np.float32, np.dtype(...)) -> Dtype; None gives `fallback`.
Dtype parse_dtype(nb::handle dtype, const char* fn, Dtype fallback);

// Testing hook for the no-copy promise: the address each argument's data had when the C++ code
// read or wrote it, keyed "function:argument". kvarn_cl._kvarn_cl._addresses() returns it.
void record_address(const char* fn, const char* name, const void* data);
nb::dict recorded_addresses();

nb::dlpack::dtype to_dlpack(Dtype d) noexcept;

template <typename T>
nb::object array_from_vector(std::vector<T>&& values, Dtype dtype,
                             const std::vector<std::size_t>& shape) {
  auto* owned = new std::vector<T>(std::move(values));
  void* data = owned->data();
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  nb::ndarray<nb::numpy> arr(data, shape.size(), shape.data(), owner, nullptr, to_dlpack(dtype));
  return arr.cast();
}

}  // namespace kvarn_cl::py
