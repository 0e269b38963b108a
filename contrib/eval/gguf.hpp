// A reader for GGUF model files (versions 2 and 3, little-endian), as written by llama.cpp's
// converters: the metadata key/value table, the tensor directory, and dequantization of the
// weight types this evaluation meets (F32, F16, BF16, Q4_0, Q4_1, Q8_0) into fp32.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kvarn_eval {

// ggml's type numbering (ggml.h, enum ggml_type); only the ones we can dequantize get names.
enum class GgmlType : std::uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q8_0 = 8,
  bf16 = 30,
};
const char* ggml_type_name(std::uint32_t type);

// One metadata value. Arrays hold either strings or numbers (ints and floats widened).
struct GgufValue {
  enum class Kind { integer, floating, boolean, string, string_array, number_array };
  Kind kind = Kind::integer;
  std::int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<std::string> strings;
  std::vector<double> numbers;
};

struct GgufTensor {
  std::string name;
  std::vector<std::uint64_t> dims;  // ne[0] is the contiguous (innermost) dimension
  std::uint32_t type = 0;
  std::uint64_t offset = 0;         // from the start of the data section
  std::uint64_t elements() const;
};

class GgufFile {
 public:
  // The largest model file read (64 GiB); a larger one is refused before it is read.
  static constexpr std::uint64_t kMaxModelBytes = std::uint64_t(64) << 30;
  // Reads the whole file. Throws kvarn_cl::IoError (unreadable, truncated, not GGUF, version 1 or
  // big-endian) naming the path and what is wrong.
  explicit GgufFile(const std::string& path);
  // The same from bytes already in memory (fuzzing, tests); `name` stands for the path in messages.
  GgufFile(std::vector<std::uint8_t> bytes, const std::string& name);

  std::uint32_t version() const { return version_; }
  const std::string& path() const { return path_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }

  bool has(const std::string& key) const { return metadata_.count(key) != 0; }
  // Typed access; throws kvarn_cl::InvalidArgument naming the key when missing or of another kind.
  std::int64_t integer(const std::string& key) const;
  double number(const std::string& key) const;  // integer or float
  const std::string& string(const std::string& key) const;
  const std::vector<std::string>& strings(const std::string& key) const;
  const std::vector<double>& numbers(const std::string& key) const;

  bool has_tensor(const std::string& name) const;
  const GgufTensor& tensor(const std::string& name) const;
  // All elements of a tensor as fp32, in ggml order (ne[0] fastest). Throws kvarn_cl::Unsupported
  // for a type we cannot dequantize, naming the tensor and the type.
  std::vector<float> dequantize(const GgufTensor& t) const;

 private:
  const GgufValue& value(const std::string& key) const;
  void parse();
  std::string path_;
  std::vector<std::uint8_t> bytes_;
  std::uint32_t version_ = 0;
  std::uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, std::size_t> tensor_index_;
};

}  // namespace kvarn_eval
