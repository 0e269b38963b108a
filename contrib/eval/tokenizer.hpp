// Byte-level BPE tokenizer (GPT-2 style) built from a GGUF file's tokenizer.ggml.* metadata.
//
// Pre-tokenization follows SmolLM2 (tokenizer.ggml.pre = "smollm", llama.cpp's STARCODER group):
// digits are split off one by one, then the GPT-2 pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// is applied. Unicode classes are approximated without ICU: ASCII is classified exactly; other
// code points count as letters except the common Unicode spaces (whitespace) and the General
// Punctuation / symbol blocks (punctuation). The English test texts are ASCII, so this matters
// only for unusual prompts. Control tokens (token_type 3, e.g. <|im_start|>) written literally
// in the text are recognized as single tokens.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "gguf.hpp"

namespace kvarn_eval {

class Tokenizer {
 public:
  // Throws kvarn_cl::Unsupported if the file's tokenizer is not byte-level BPE ("gpt2").
  explicit Tokenizer(const GgufFile& file);

  std::vector<std::int32_t> encode(const std::string& text) const;
  std::string decode(const std::vector<std::int32_t>& ids) const;
  std::string token_text(std::int32_t id) const;  // one token, bytes restored
  std::size_t vocab_size() const { return tokens_.size(); }
  std::int32_t bos() const { return bos_; }
  std::int32_t eos() const { return eos_; }

 private:
  void encode_word(const std::string& word, std::vector<std::int32_t>& out) const;
  void encode_plain(const std::string& text, std::vector<std::int32_t>& out) const;

  std::vector<std::string> tokens_;                    // GPT-2 unicode spelling
  std::unordered_map<std::string, std::int32_t> ids_;  // spelling -> id
  std::unordered_map<std::string, int> merge_rank_;    // "left right" -> rank
  std::vector<std::string> control_tokens_;            // literal control tokens, longest first
  std::string byte_to_unicode_[256];                   // GPT-2 bytes_to_unicode as UTF-8
  std::unordered_map<std::string, std::uint8_t> unicode_to_byte_;
  std::int32_t bos_ = -1, eos_ = -1;
};

}  // namespace kvarn_eval
