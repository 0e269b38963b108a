// Caller arrays as C++ pointers (checked, never copied) and C++ memory as numpy arrays.
#include "arrays.hpp"

#include <nanobind/stl/string.h>

#include <cstdlib>
#include <map>
#include <sstream>

#include "kvarn_cl/error.hpp"

namespace kvarn_cl::py {
namespace {

namespace dl = nb::dlpack;

Dtype from_dlpack(dl::dtype t) noexcept {
  if (t.lanes != 1) return Dtype::other;
  if (t.code == std::uint8_t(dl::dtype_code::Float) && t.bits == 16) return Dtype::f16;
  if (t.code == std::uint8_t(dl::dtype_code::Float) && t.bits == 32) return Dtype::f32;
  if (t.code == std::uint8_t(dl::dtype_code::UInt) && t.bits == 8) return Dtype::u8;
  return Dtype::other;
}

std::string dlpack_name(dl::dtype t) {
  std::string kind;
  switch (dl::dtype_code(t.code)) {
    case dl::dtype_code::Int:
      kind = "int";
      break;
    case dl::dtype_code::UInt:
      kind = "uint";
      break;
    case dl::dtype_code::Float:
      kind = "float";
      break;
    case dl::dtype_code::Bfloat:
      kind = "bfloat";
      break;
    case dl::dtype_code::Complex:
      kind = "complex";
      break;
    case dl::dtype_code::Bool:
      return "bool";
    default:
      kind = "type" + std::to_string(int(t.code)) + "_";
      break;
  }
  std::string s = kind + std::to_string(int(t.bits));
  if (t.lanes != 1) s += "x" + std::to_string(int(t.lanes));
  return s;
}

std::string allowed_str(std::initializer_list<Dtype> allowed) {
  std::string s;
  std::size_t i = 0;
  for (Dtype d : allowed) {
    if (i++) s += i == allowed.size() ? " or " : ", ";
    s += dtype_name(d);
  }
  return s;
}

std::string prefix(const char* fn, const char* name) { return std::string(fn) + ": " + name; }

// Checks device, dtype and C-contiguity of any ndarray view; fills dtype and shape.
template <typename Array>
void check_view(const Array& a, const char* fn, const char* name,
                std::initializer_list<Dtype> allowed, Dtype* dtype,
                std::vector<std::size_t>* shape) {
  if (a.device_type() != nb::device::cpu::value)
    throw InvalidArgument(prefix(fn, name) + ": the array lives on a device (DLPack device type " +
                          std::to_string(a.device_type()) +
                          "); kvarn_cl takes CPU arrays (numpy, buffer protocol, DLPack)");
  const Dtype d = from_dlpack(a.dtype());
  bool ok = false;
  for (Dtype x : allowed) ok = ok || x == d;
  if (!ok)
    throw InvalidArgument(prefix(fn, name) + ": dtype " + dlpack_name(a.dtype()) +
                          " is not supported (expected " + allowed_str(allowed) +
                          "); convert it explicitly, e.g. " + name + ".astype(np." +
                          dtype_name(*allowed.begin()) + ")");
  shape->assign(a.ndim(), 0);
  for (std::size_t i = 0; i < a.ndim(); ++i) (*shape)[i] = a.shape(i);
  // C order, in elements (DLPack); axes of length 1 may carry any stride.
  if (product(*shape) != 0) {
    std::int64_t expected = 1;
    for (std::size_t i = a.ndim(); i-- > 0;) {
      if (a.shape(i) != 1 && a.stride(i) != expected) {
        std::ostringstream msg;
        msg << prefix(fn, name) << ": the array is not C-contiguous (shape " << shape_str(*shape)
            << ", strides in elements (";
        for (std::size_t j = 0; j < a.ndim(); ++j) msg << (j ? ", " : "") << a.stride(j);
        msg << ")); kvarn_cl never copies arrays implicitly: pass np.ascontiguousarray(" << name
            << ")";
        throw InvalidArgument(msg.str());
      }
      expected *= std::int64_t(a.shape(i));
    }
  }
  *dtype = d;
}

// The object nanobind should import: `obj` itself, or a memoryview of it when it exports a buffer
// without strides. PEP 3118 lets an exporter leave Py_buffer::strides NULL for C-contiguous data
// (ctypes arrays do), and nanobind 3.1 reads the strides without checking (SIGSEGV); a
// memoryview fills them in and shares the memory (no copy). Objects with DLPack are imported
// through DLPack and are left alone.
nb::object importable(nb::handle obj) {
  if (obj.is_none() || nb::hasattr(obj, "__dlpack__") || !PyObject_CheckBuffer(obj.ptr()))
    return nb::borrow(obj);
  Py_buffer view;
  if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_RECORDS_RO) != 0) {
    PyErr_Clear();  // not importable either way: nanobind reports it
    return nb::borrow(obj);
  }
  const bool strideless = view.ndim > 0 && view.strides == nullptr;
  PyBuffer_Release(&view);
  if (!strideless) return nb::borrow(obj);
  return nb::steal(PyMemoryView_FromObject(obj.ptr()));
}

std::map<std::string, std::uintptr_t>& addresses() {
  static std::map<std::string, std::uintptr_t> a;
  return a;
}

}  // namespace

const char* dtype_name(Dtype d) noexcept {
  switch (d) {
    case Dtype::f16:
      return "float16";
    case Dtype::f32:
      return "float32";
    case Dtype::u8:
      return "uint8";
    case Dtype::other:
      break;
  }
  return "other";
}

std::size_t itemsize(Dtype d) noexcept {
  switch (d) {
    case Dtype::f16:
      return 2;
    case Dtype::f32:
      return 4;
    case Dtype::u8:
      return 1;
    case Dtype::other:
      break;
  }
  return 0;
}

std::string shape_str(const std::vector<std::size_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

std::size_t product(const std::vector<std::size_t>& shape, std::size_t from, std::size_t to) {
  std::size_t n = 1;
  for (std::size_t i = from; i < shape.size() && i < to; ++i) n *= shape[i];
  return n;
}

nb::dlpack::dtype to_dlpack(Dtype d) noexcept {
  switch (d) {
    case Dtype::f16:
      return dl::dtype{std::uint8_t(dl::dtype_code::Float), 16, 1};
    case Dtype::f32:
      return nb::dtype<float>();
    case Dtype::u8:
      return nb::dtype<std::uint8_t>();
    case Dtype::other:
      break;
  }
  return nb::dtype<std::uint8_t>();
}

ArrayIn array_in(nb::handle obj, const char* fn, const char* name,
                 std::initializer_list<Dtype> allowed) {
  ArrayIn a;
  const nb::object source = importable(obj);
  if (!source.is_valid()) throw nb::python_error();
  if (obj.is_none() || !nb::try_cast(source, a.array, /*convert=*/false))
    throw InvalidArgument(
        prefix(fn, name) + ": expected a CPU array (numpy, buffer protocol or DLPack) of " +
        allowed_str(allowed) + ", got " + std::string(nb::type_name(obj.type()).c_str()));
  check_view(a.array, fn, name, allowed, &a.dtype, &a.shape);
  a.data = a.array.data();
  record_address(fn, name, a.data);
  return a;
}

ArrayOut array_out(nb::handle out, const char* fn, const std::vector<std::size_t>& shape,
                   Dtype dtype, std::initializer_list<Dtype> allowed, const char* name) {
  ArrayOut r;
  if (out.is_none()) {
    r.dtype = dtype;
    r.bytes = product(shape) * itemsize(dtype);
    void* p = std::malloc(r.bytes == 0 ? 1 : r.bytes);
    if (p == nullptr)
      throw OutOfMemory(std::string(fn) + ": cannot allocate " + std::to_string(r.bytes) +
                        " bytes for the result " + shape_str(shape));
    nb::capsule owner(p, [](void* q) noexcept { std::free(q); });
    nb::ndarray<nb::numpy> arr(p, shape.size(), shape.data(), owner, nullptr, to_dlpack(dtype));
    r.object = arr.cast();
    r.data = p;
    record_address(fn, name, p);
    return r;
  }
  nb::ndarray<> view;
  const nb::object source = importable(out);
  if (!source.is_valid()) throw nb::python_error();
  if (!nb::try_cast(source, view, /*convert=*/false)) {
    nb::ndarray<nb::ro> ro;
    if (nb::try_cast(source, ro, false))
      throw InvalidArgument(std::string(fn) + ": out: the array is read-only");
    throw InvalidArgument(std::string(fn) + ": out: expected a writable CPU array of " +
                          allowed_str(allowed) + ", got " +
                          std::string(nb::type_name(out.type()).c_str()));
  }
  std::vector<std::size_t> got;
  check_view(view, fn, "out", allowed, &r.dtype, &got);
  if (got != shape)
    throw InvalidArgument(std::string(fn) + ": out has shape " + shape_str(got) + ", expected " +
                          shape_str(shape));
  r.object = nb::borrow(out);
  r.data = view.data();
  r.bytes = product(shape) * itemsize(r.dtype);
  record_address(fn, name, r.data);
  return r;
}

Dtype parse_dtype(nb::handle dtype, const char* fn, Dtype fallback) {
  if (dtype.is_none()) return fallback;
  nb::object np = nb::module_::import_("numpy");
  std::string n;
  try {
    n = nb::cast<std::string>(np.attr("dtype")(dtype).attr("name"));
  } catch (const nb::python_error&) {
    throw InvalidArgument(std::string(fn) + ": dtype " + std::string(nb::repr(dtype).c_str()) +
                          " is not a numpy dtype");
  }
  if (n == "float16") return Dtype::f16;
  if (n == "float32") return Dtype::f32;
  throw InvalidArgument(std::string(fn) + ": dtype " + n +
                        " is not supported (expected float16 or float32)");
}

void record_address(const char* fn, const char* name, const void* data) {
  addresses()[std::string(fn) + ":" + name] = reinterpret_cast<std::uintptr_t>(data);
}

nb::dict recorded_addresses() {
  nb::dict d;
  for (const auto& [k, v] : addresses()) d[nb::str(k.c_str())] = nb::int_(v);
  return d;
}

}  // namespace kvarn_cl::py
