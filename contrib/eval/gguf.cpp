#include "gguf.hpp"

#include <cstdint>
#include <cstring>
#include <sstream>

#include "format/printable.hpp"
#include "io/bounded_file.hpp"
#include "kvarn_cl/error.hpp"
#include "kvarn_cl/half.hpp"

namespace kvarn_eval {
namespace {

// GGUF value types (gguf.h, enum gguf_type).
enum : std::uint32_t {
  kU8 = 0, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kString, kArray, kU64, kI64, kF64
};

// Bounds-checked little-endian cursor over the file bytes: a truncated file becomes an IoError.
class Cursor {
 public:
  Cursor(const std::vector<std::uint8_t>& b, const std::string& path) : b_(b), path_(path) {}
  template <typename T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str() {
    const auto n = get<std::uint64_t>();
    need(n);
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  std::uint64_t pos() const { return pos_; }

 private:
  void need(std::uint64_t n) const {
    if (n > b_.size() || pos_ > b_.size() - n) {
      std::ostringstream m;
      m << "GGUF file '" << path_ << "' is truncated: need " << n << " bytes at offset " << pos_
        << " of " << b_.size();
      throw kvarn_cl::IoError(m.str());
    }
  }
  const std::vector<std::uint8_t>& b_;
  const std::string& path_;
  std::uint64_t pos_ = 0;
};

double scalar(Cursor& c, std::uint32_t type, const std::string& path, const std::string& key) {
  switch (type) {
    case kU8: return c.get<std::uint8_t>();
    case kI8: return c.get<std::int8_t>();
    case kU16: return c.get<std::uint16_t>();
    case kI16: return c.get<std::int16_t>();
    case kU32: return c.get<std::uint32_t>();
    case kI32: return c.get<std::int32_t>();
    case kF32: return c.get<float>();
    case kBool: return c.get<std::uint8_t>() != 0;
    case kU64: return double(c.get<std::uint64_t>());
    case kI64: return double(c.get<std::int64_t>());
    case kF64: return c.get<double>();
    default: {
      std::ostringstream m;
      m << "GGUF file '" << path << "': metadata key '" << kvarn_cl::printable(key) << "' has unknown value type "
        << type;
      throw kvarn_cl::IoError(m.str());
    }
  }
}

GgufValue read_value(Cursor& c, std::uint32_t type, const std::string& path,
                     const std::string& key) {
  GgufValue v;
  if (type == kString) {
    v.kind = GgufValue::Kind::string;
    v.s = c.str();
  } else if (type == kArray) {
    const auto elem = c.get<std::uint32_t>();
    const auto n = c.get<std::uint64_t>();
    if (elem == kString) {
      v.kind = GgufValue::Kind::string_array;
      for (std::uint64_t i = 0; i < n; ++i) v.strings.push_back(c.str());
    } else {
      v.kind = GgufValue::Kind::number_array;
      for (std::uint64_t i = 0; i < n; ++i) v.numbers.push_back(scalar(c, elem, path, key));
    }
  } else if (type == kF32 || type == kF64) {
    v.kind = GgufValue::Kind::floating;
    v.f = scalar(c, type, path, key);
  } else if (type == kBool) {
    v.kind = GgufValue::Kind::boolean;
    v.i = std::int64_t(scalar(c, type, path, key));
    v.f = double(v.i);
  } else if (type == kU64 || type == kI64) {
    v.kind = GgufValue::Kind::integer;
    v.i = type == kU64 ? std::int64_t(c.get<std::uint64_t>()) : c.get<std::int64_t>();
    v.f = double(v.i);
  } else {
    v.kind = GgufValue::Kind::integer;
    v.f = scalar(c, type, path, key);
    v.i = std::int64_t(v.f);
  }
  return v;
}

// Bytes per block and elements per block of each supported type.
struct TypeGeometry {
  std::uint64_t block_elems;
  std::uint64_t block_bytes;
};
bool geometry(std::uint32_t type, TypeGeometry& g) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::f32: g = {1, 4}; return true;
    case GgmlType::f16: g = {1, 2}; return true;
    case GgmlType::bf16: g = {1, 2}; return true;
    case GgmlType::q4_0: g = {32, 18}; return true;
    case GgmlType::q4_1: g = {32, 20}; return true;
    case GgmlType::q8_0: g = {32, 34}; return true;
  }
  return false;
}

float half_at(const std::uint8_t* p) {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return kvarn_cl::half_to_float(h);
}

}  // namespace

const char* ggml_type_name(std::uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::f32: return "F32";
    case GgmlType::f16: return "F16";
    case GgmlType::bf16: return "BF16";
    case GgmlType::q4_0: return "Q4_0";
    case GgmlType::q4_1: return "Q4_1";
    case GgmlType::q8_0: return "Q8_0";
  }
  return "unsupported";
}

std::uint64_t GgufTensor::elements() const {
  std::uint64_t n = 1;
  for (auto d : dims) n *= d;  // the constructor checked that this product does not wrap
  return n;
}

GgufFile::GgufFile(const std::string& path) : path_(path) {
  // The library's bounded reader: a regular file of at most kMaxModelBytes (a FIFO or a device
  // is refused, not read without end).
  bytes_ = kvarn_cl::io::read_file(path, {kMaxModelBytes, false, true}, "GGUF model file '" + path + "'");
  parse();
}

GgufFile::GgufFile(std::vector<std::uint8_t> bytes, const std::string& name)
    : path_(name), bytes_(std::move(bytes)) {
  parse();
}

void GgufFile::parse() {
  const std::string& path = path_;

  // Every count, offset and size below comes from the file: each is checked before it is used in
  // arithmetic, so a crafted file gives an IoError instead of a wrapped bounds check.
  auto corrupt = [&](const std::string& what) {
    return kvarn_cl::IoError("GGUF file '" + path + "' is corrupt: " + what);
  };
  Cursor c(bytes_, path_);
  const auto magic = c.get<std::uint32_t>();
  if (magic != 0x46554747u)  // "GGUF" read little-endian
    throw kvarn_cl::IoError("'" + path + "' is not a GGUF file (bad magic)");
  version_ = c.get<std::uint32_t>();
  if (version_ != 2 && version_ != 3) {
    std::ostringstream m;
    m << "GGUF file '" << path << "' has version " << version_
      << " (big-endian files read as a huge number); only little-endian versions 2 and 3 are "
         "supported";
    throw kvarn_cl::IoError(m.str());
  }
  const auto n_tensors = c.get<std::uint64_t>();
  const auto n_kv = c.get<std::uint64_t>();
  for (std::uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.str();
    const auto type = c.get<std::uint32_t>();
    metadata_[key] = read_value(c, type, path_, key);
  }
  constexpr std::uint32_t kMaxDims = 4;  // GGML_MAX_DIMS
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    t.name = c.str();
    const auto nd = c.get<std::uint32_t>();
    if (nd > kMaxDims)
      throw corrupt("tensor '" + kvarn_cl::printable(t.name) + "' has " + std::to_string(nd) + " dimensions (at most 4)");
    std::uint64_t elements = 1;
    for (std::uint32_t d = 0; d < nd; ++d) {
      const auto n = c.get<std::uint64_t>();
      if (n != 0 && elements > UINT64_MAX / n)
        throw corrupt("tensor '" + kvarn_cl::printable(t.name) + "' has more elements than fit in 64 bits");
      elements *= n;
      t.dims.push_back(n);
    }
    t.type = c.get<std::uint32_t>();
    t.offset = c.get<std::uint64_t>();
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }
  // The data section starts at the next multiple of general.alignment (default 32), a power of
  // two in ggml.
  std::uint64_t align = 32;
  if (has("general.alignment")) {
    const std::int64_t a = integer("general.alignment");
    if (a <= 0 || a > (std::int64_t(1) << 30) || (a & (a - 1)) != 0)
      throw corrupt("general.alignment = " + std::to_string(a) +
                    " (expected a power of two from 1 to 2^30)");
    align = std::uint64_t(a);
  }
  data_offset_ = (c.pos() + align - 1) / align * align;  // pos <= file size: no wrap
  const std::uint64_t file_size = bytes_.size();
  for (const auto& t : tensors_) {
    TypeGeometry g{};
    if (!geometry(t.type, g)) continue;  // reported when someone asks to dequantize it
    const std::uint64_t blocks = t.elements() / g.block_elems;
    const std::uint64_t room =
        data_offset_ <= file_size && t.offset <= file_size - data_offset_
            ? file_size - data_offset_ - t.offset
            : 0;
    if (data_offset_ > file_size || t.offset > file_size - data_offset_ ||
        blocks > room / g.block_bytes) {
      std::ostringstream m;
      m << "GGUF file '" << path << "' is truncated: tensor '" << kvarn_cl::printable(t.name) << "' at offset "
        << t.offset << " (data section at byte " << data_offset_ << ") needs " << blocks
        << " blocks of " << g.block_bytes << " bytes, the file has " << file_size << " bytes";
      throw kvarn_cl::IoError(m.str());
    }
  }
}

const GgufValue& GgufFile::value(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end())
    throw kvarn_cl::InvalidArgument("GGUF file '" + path_ + "' has no metadata key '" + key + "'");
  return it->second;
}

std::int64_t GgufFile::integer(const std::string& key) const {
  const auto& v = value(key);
  if (v.kind != GgufValue::Kind::integer && v.kind != GgufValue::Kind::boolean)
    throw kvarn_cl::InvalidArgument("GGUF metadata '" + key + "' is not an integer");
  return v.i;
}

double GgufFile::number(const std::string& key) const {
  const auto& v = value(key);
  if (v.kind != GgufValue::Kind::integer && v.kind != GgufValue::Kind::floating)
    throw kvarn_cl::InvalidArgument("GGUF metadata '" + key + "' is not a number");
  return v.f;
}

const std::string& GgufFile::string(const std::string& key) const {
  const auto& v = value(key);
  if (v.kind != GgufValue::Kind::string)
    throw kvarn_cl::InvalidArgument("GGUF metadata '" + key + "' is not a string");
  return v.s;
}

const std::vector<std::string>& GgufFile::strings(const std::string& key) const {
  const auto& v = value(key);
  if (v.kind != GgufValue::Kind::string_array)
    throw kvarn_cl::InvalidArgument("GGUF metadata '" + key + "' is not an array of strings");
  return v.strings;
}

const std::vector<double>& GgufFile::numbers(const std::string& key) const {
  const auto& v = value(key);
  if (v.kind != GgufValue::Kind::number_array)
    throw kvarn_cl::InvalidArgument("GGUF metadata '" + key + "' is not an array of numbers");
  return v.numbers;
}

bool GgufFile::has_tensor(const std::string& name) const { return tensor_index_.count(name) != 0; }

const GgufTensor& GgufFile::tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  if (it == tensor_index_.end())
    throw kvarn_cl::InvalidArgument("GGUF file '" + path_ + "' has no tensor '" + name + "'");
  return tensors_[it->second];
}

std::vector<float> GgufFile::dequantize(const GgufTensor& t) const {
  TypeGeometry g{};
  if (!geometry(t.type, g)) {
    std::ostringstream m;
    m << "tensor '" << kvarn_cl::printable(t.name) << "' has ggml type " << t.type
      << ", which kvarn-eval cannot dequantize (supported: F32, F16, BF16, Q4_0, Q4_1, Q8_0)";
    throw kvarn_cl::Unsupported(m.str());
  }
  const std::uint64_t n = t.elements();
  if (n % g.block_elems != 0)
    throw kvarn_cl::IoError("tensor '" + kvarn_cl::printable(t.name) + "' has a size that is not a whole number of blocks");
  std::vector<float> out(n);
  const std::uint8_t* p = bytes_.data() + data_offset_ + t.offset;
  const std::uint64_t blocks = n / g.block_elems;
  for (std::uint64_t b = 0; b < blocks; ++b, p += g.block_bytes) {
    float* y = out.data() + b * g.block_elems;
    switch (static_cast<GgmlType>(t.type)) {
      case GgmlType::f32: std::memcpy(y, p, 4); break;
      case GgmlType::f16: *y = half_at(p); break;
      case GgmlType::bf16: {
        std::uint16_t h;
        std::memcpy(&h, p, 2);
        const std::uint32_t bits = std::uint32_t(h) << 16;
        std::memcpy(y, &bits, 4);
        break;
      }
      case GgmlType::q4_0: {  // d, 16 bytes: element j low nibble of byte j, j+16 high nibble
        const float d = half_at(p);
        for (int j = 0; j < 16; ++j) {
          y[j] = float(int(p[2 + j] & 0x0F) - 8) * d;
          y[j + 16] = float(int(p[2 + j] >> 4) - 8) * d;
        }
        break;
      }
      case GgmlType::q4_1: {  // d, m, 16 bytes of nibbles: x = q*d + m
        const float d = half_at(p), m = half_at(p + 2);
        for (int j = 0; j < 16; ++j) {
          y[j] = float(p[4 + j] & 0x0F) * d + m;
          y[j + 16] = float(p[4 + j] >> 4) * d + m;
        }
        break;
      }
      case GgmlType::q8_0: {  // d, 32 int8: x = q*d
        const float d = half_at(p);
        for (int j = 0; j < 32; ++j) y[j] = float(static_cast<std::int8_t>(p[2 + j])) * d;
        break;
      }
    }
  }
  return out;
}

}  // namespace kvarn_eval
