// quantize() and dequantize(): the tile codec over arrays, on any backend (SPEC §2). One backend
// launch each for the rotation and for the quantize of every tile of the call.
#include <nanobind/stl/string.h>

#include <cmath>
#include <sstream>

#include "arrays.hpp"
#include "backend.hpp"
#include "kvarn_cl/kvarn_cl.hpp"
#include "module.hpp"

namespace kvarn_cl::py {
namespace {

// "k[2][17]" for flat element i of an array of the given shape.
std::string element_name(const char* name, const std::vector<std::size_t>& shape, std::size_t i) {
  std::vector<std::size_t> idx(shape.size());
  for (std::size_t a = shape.size(); a-- > 0;) {
    idx[a] = i % shape[a];
    i /= shape[a];
  }
  std::string s = name;
  for (std::size_t x : idx) s += "[" + std::to_string(x) + "]";
  return s;
}

// NaN/Inf cannot be quantized: name the first one (the library would only name the tile).
void check_finite(const ArrayIn& a, const char* fn, const char* name) {
  const std::size_t n = a.elements();
  for (std::size_t i = 0; i < n; ++i) {
    const float x = a.dtype == Dtype::f32 ? static_cast<const float*>(a.data)[i]
                                          : half_to_float(static_cast<const half_bits*>(a.data)[i]);
    if (!std::isfinite(x)) {
      std::ostringstream msg;
      msg << fn << ": " << element_name(name, a.shape, i) << " is " << x
          << ": NaN and Inf cannot be quantized";
      throw NonFiniteInput(msg.str());
    }
  }
}

ElementType element_type(Dtype d) { return d == Dtype::f32 ? ElementType::f32 : ElementType::f16; }

// The library's host codec (quantize_host), into out's memory: used in place on the CPU.
void quantize_rows(PyBackend& be, const CodecParams& params, const ArrayIn& k, const ArrayIn& v,
                   std::size_t tiles, const ArrayOut& out) {
  std::lock_guard<std::mutex> lock(*be.mutex);
  Backend& b = *be.impl;
  auto* records = static_cast<std::uint8_t*>(out.data);
  try {
    if (k.dtype == v.dtype) {
      quantize_host(b, params, k.data, v.data, element_type(k.dtype), Frame::original, tiles,
                    records);
    } else {  // one element type per call: rotate each side on its own, then quantize
      const std::size_t rows = tiles * std::size_t(params.group());
      std::vector<half_bits> k_rot(rows * std::size_t(params.head_dim)), v_rot(k_rot.size());
      rotate_host(b, params, k.data, element_type(k.dtype), rows, k_rot.data());
      rotate_host(b, params, v.data, element_type(v.dtype), rows, v_rot.data());
      quantize_host(b, params, k_rot.data(), v_rot.data(), ElementType::f16, Frame::rotated, tiles,
                    records);
    }
  } catch (const NonFiniteInput& e) {
    // The inputs are finite (checked before), so the rotation overflowed fp16 (|x·H| <= ||x||).
    throw NonFiniteInput(
        "quantize: a key or value row overflows fp16 after the Hadamard rotation "
        "(its L2 norm exceeds 65504): " +
        std::string(e.what()));
  }
}

nb::object quantize(nb::handle k_obj, nb::handle v_obj, const std::string& preset,
                    nb::handle backend_obj, int sinkhorn_iters, nb::handle out_obj) {
  const char* fn = "quantize";
  const ArrayIn k = array_in(k_obj, fn, "k", {Dtype::f16, Dtype::f32});
  const ArrayIn v = array_in(v_obj, fn, "v", {Dtype::f16, Dtype::f32});
  if (k.shape.size() < 2)
    throw InvalidArgument(std::string(fn) + ": k has shape " + shape_str(k.shape) +
                          ": expected [T][D] (or [..., T, D]) keys of one KV head");
  if (k.shape != v.shape)
    throw InvalidArgument(std::string(fn) + ": k has shape " + shape_str(k.shape) +
                          " but v has shape " + shape_str(v.shape));
  const std::size_t nd = k.shape.size();
  const int head_dim = int(k.shape[nd - 1]);
  validate_head_dim(head_dim, std::string(fn) + ": head_dim (k.shape[-1])");
  const CodecParams params{parse_preset(preset, std::string(fn) + ": preset"), head_dim,
                           sinkhorn_iters};
  params.validate();
  const RecordLayout layout = RecordLayout::make(params);
  const std::size_t G = std::size_t(layout.group), T = k.shape[nd - 2];
  if (T % G != 0)
    throw InvalidArgument(std::string(fn) + ": k has " + std::to_string(T) +
                          " tokens (k.shape[-2]), not a multiple of the tile size G = " +
                          std::to_string(G) + " of preset " + to_string(params.preset));
  const std::size_t rows = product(k.shape, 0, nd - 1), tiles = rows / G;
  if (rows > 0xffffffffULL)
    throw InvalidArgument(std::string(fn) + ": " + std::to_string(rows) +
                          " rows are too many for one call (at most 2^32 - 1)");
  std::vector<std::size_t> out_shape(k.shape.begin(), k.shape.end() - 2);
  out_shape.push_back(T / G);
  out_shape.push_back(layout.bytes);
  ArrayOut out = array_out(out_obj, fn, out_shape, Dtype::u8, {Dtype::u8});

  nb::object backend_ref = resolve_backend(backend_obj, fn);
  PyBackend& be = nb::cast<PyBackend&>(backend_ref);
  {
    nb::gil_scoped_release release;
    check_finite(k, fn, "k");
    check_finite(v, fn, "v");
    if (tiles != 0) quantize_rows(be, params, k, v, tiles, out);
  }
  return out.object;
}

nb::tuple dequantize(nb::handle records_obj, const std::string& preset, nb::handle head_dim_obj,
                     bool rotated, nb::handle backend_obj, nb::handle dtype_obj) {
  const char* fn = "dequantize";
  const ArrayIn rec = array_in(records_obj, fn, "records", {Dtype::u8});
  const Preset p = parse_preset(preset, std::string(fn) + ": preset");
  const Dtype dtype = parse_dtype(dtype_obj, fn, Dtype::f16);
  int head_dim = 0;
  const std::size_t nd = rec.shape.size();
  if (head_dim_obj.is_none()) {
    // [..., tiles, record_bytes]: the record size names the head dimension.
    if (nd >= 2)
      for (int d : {64, 128, 256})
        if (RecordLayout::make({p, d, kDefaultSinkhornIters}).bytes == rec.shape[nd - 1])
          head_dim = d;
    if (head_dim == 0)
      throw InvalidArgument(std::string(fn) + ": head_dim is required: records of shape " +
                            shape_str(rec.shape) + " do not end in the record size of preset " +
                            preset + " at head_dim 64, 128 or 256");
  } else {
    if (!nb::try_cast(head_dim_obj, head_dim, true))
      throw InvalidArgument(std::string(fn) + ": head_dim must be an int, got " +
                            std::string(nb::repr(head_dim_obj).c_str()));
    validate_head_dim(head_dim, std::string(fn) + ": head_dim");
  }
  const CodecParams params{p, head_dim, kDefaultSinkhornIters};
  const RecordLayout layout = RecordLayout::make(params);
  const std::size_t bytes = rec.bytes();
  if (bytes % layout.bytes != 0)
    throw InvalidArgument(std::string(fn) + ": records hold " + std::to_string(bytes) +
                          " bytes, not a multiple of the record size " +
                          std::to_string(layout.bytes) + " of preset " + preset + " at head_dim " +
                          std::to_string(head_dim));
  const std::size_t tiles = bytes / layout.bytes, G = std::size_t(layout.group);
  if (tiles > 0xffffffffULL)
    throw InvalidArgument(std::string(fn) + ": too many records for one call");
  std::vector<std::size_t> shape;
  if (nd >= 2 && rec.shape[nd - 1] == layout.bytes) {
    shape.assign(rec.shape.begin(), rec.shape.end() - 2);
    shape.push_back(rec.shape[nd - 2] * G);
  } else {
    shape.push_back(tiles * G);
  }
  shape.push_back(std::size_t(head_dim));
  ArrayOut k = array_out(nb::none(), fn, shape, dtype, {dtype}, "k_out");
  ArrayOut v = array_out(nb::none(), fn, shape, dtype, {dtype}, "v_out");

  nb::object backend_ref = resolve_backend(backend_obj, fn);
  PyBackend& be = nb::cast<PyBackend&>(backend_ref);
  {
    nb::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(*be.mutex);
    try {
      dequantize_host(*be.impl, params, static_cast<const std::uint8_t*>(rec.data), tiles,
                      rotated ? Frame::rotated : Frame::original,
                      dtype == Dtype::f16 ? ElementType::f16 : ElementType::f32, k.data, v.data);
    } catch (const CorruptRecord& e) {
      throw CorruptRecord(std::string(fn) + ": records: " + e.what());
    }
  }
  return nb::make_tuple(k.object, v.object);
}

}  // namespace

void bind_codec(nb::module_& m) {
  m.def("quantize", &quantize, nb::arg("k"), nb::arg("v"), nb::kw_only(),
        nb::arg("preset") = "k4v2_g128", nb::arg("backend") = nb::none(),
        nb::arg("sinkhorn_iters") = kDefaultSinkhornIters, nb::arg("out") = nb::none(),
        "Quantizes keys and values of one KV head into KVarN records (SPEC §2).\n\n"
        "k, v: float16 or float32 arrays [T][D] (or [..., T, D], e.g. [Hk][T][D]), C-contiguous, "
        "original frame; T a multiple of the preset's tile size G, D = 64, 128 or 256.\n"
        "Returns uint8 [..., T/G, record_bytes]: records.tobytes() is exactly what `kvarn-cl "
        "quantize` writes. out: an optional uint8 array of that shape to write into.");
  m.def("dequantize", &dequantize, nb::arg("records"), nb::kw_only(),
        nb::arg("preset") = "k4v2_g128", nb::arg("head_dim") = nb::none(),
        nb::arg("rotated") = false, nb::arg("backend") = nb::none(), nb::arg("dtype") = nb::none(),
        "Decodes KVarN records into (k, v).\n\n"
        "records: uint8 [..., tiles, record_bytes] (head_dim then follows from the record size), "
        "or any bytes-like object / 1-D uint8 array of whole records (head_dim required).\n"
        "Returns k, v as float16 (default) or float32 [..., tiles*G, D], in the original frame, "
        "or as stored (rotated) with rotated=True.");
}

}  // namespace kvarn_cl::py
