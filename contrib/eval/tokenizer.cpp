#include "tokenizer.hpp"

#include <algorithm>
#include <climits>
#include <sstream>

#include "kvarn_cl/error.hpp"

namespace kvarn_eval {
namespace {

std::string utf8(std::uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3F));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

// Decodes one code point at text[i]; invalid bytes decode as themselves (one byte each).
std::uint32_t next_cp(const std::string& text, std::size_t i, std::size_t& len) {
  const auto b0 = static_cast<unsigned char>(text[i]);
  auto cont = [&](std::size_t k) {
    return i + k < text.size() && (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
  };
  auto byte = [&](std::size_t k) { return std::uint32_t(static_cast<unsigned char>(text[i + k]) & 0x3F); };
  if (b0 < 0x80) { len = 1; return b0; }
  if ((b0 & 0xE0) == 0xC0 && cont(1)) { len = 2; return ((b0 & 0x1Fu) << 6) | byte(1); }
  if ((b0 & 0xF0) == 0xE0 && cont(1) && cont(2)) {
    len = 3;
    return ((b0 & 0x0Fu) << 12) | (byte(1) << 6) | byte(2);
  }
  if ((b0 & 0xF8) == 0xF0 && cont(1) && cont(2) && cont(3)) {
    len = 4;
    return ((b0 & 0x07u) << 18) | (byte(1) << 12) | (byte(2) << 6) | byte(3);
  }
  len = 1;
  return b0;
}

enum class CharClass { letter, digit, space, other };

CharClass classify(std::uint32_t cp) {
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CharClass::letter;
    if (cp >= '0' && cp <= '9') return CharClass::digit;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CharClass::space;
    return CharClass::other;
  }
  if (cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
      cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000)
    return CharClass::space;
  // Latin-1 punctuation and symbols, General Punctuation, currency, arrows, math, box drawing,
  // CJK punctuation: \p{P} or \p{S} in Unicode, so "other" for the pattern.
  if ((cp >= 0xA1 && cp <= 0xBF && cp != 0xAA && cp != 0xB5 && cp != 0xBA) || cp == 0xD7 ||
      cp == 0xF7 || (cp >= 0x2010 && cp <= 0x2BFF) || (cp >= 0x3001 && cp <= 0x303F) ||
      (cp >= 0xFF01 && cp <= 0xFF0F))
    return CharClass::other;
  return CharClass::letter;
}

struct Cp {
  std::size_t pos, len;
  CharClass cls;
  std::uint32_t cp;
};

// Splits text into pre-tokens with the SmolLM2 rules (see tokenizer.hpp).
std::vector<std::string> pre_tokenize(const std::string& text) {
  std::vector<Cp> cps;
  for (std::size_t i = 0; i < text.size();) {
    std::size_t len;
    const std::uint32_t cp = next_cp(text, i, len);
    cps.push_back({i, len, classify(cp), cp});
    i += len;
  }
  std::vector<std::string> out;
  const std::size_t n = cps.size();
  auto emit = [&](std::size_t a, std::size_t b) {  // code points [a, b)
    out.push_back(text.substr(cps[a].pos, cps[b - 1].pos + cps[b - 1].len - cps[a].pos));
  };
  auto is = [&](std::size_t k, CharClass c) { return k < n && cps[k].cls == c; };
  std::size_t i = 0;
  while (i < n) {
    // Digits are isolated first (the Digits(individual_digits) pre-tokenizer).
    if (cps[i].cls == CharClass::digit) {
      emit(i, i + 1);
      ++i;
      continue;
    }
    // Contractions: 's 't 're 've 'm 'll 'd (case-sensitive, as in GPT-2).
    if (cps[i].cp == '\'' && i + 1 < n) {
      auto c1 = cps[i + 1].cp;
      auto c2 = i + 2 < n ? cps[i + 2].cp : 0;
      std::size_t l = 0;
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') l = 2;
      else if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) l = 3;
      if (l) {
        emit(i, i + l);
        i += l;
        continue;
      }
    }
    const bool space_prefix = cps[i].cp == ' ';
    const std::size_t body = space_prefix ? i + 1 : i;
    // ' ?\p{L}+'
    if (is(body, CharClass::letter)) {
      std::size_t j = body;
      while (is(j, CharClass::letter)) ++j;
      emit(i, j);
      i = j;
      continue;
    }
    // ' ?\p{N}+' can only match a lone space before a digit here (digits are isolated), and
    // that space then falls to the whitespace rules below, as in the reference.
    // ' ?[^\s\p{L}\p{N}]+'
    if (is(body, CharClass::other)) {
      std::size_t j = body;
      while (is(j, CharClass::other)) ++j;
      emit(i, j);
      i = j;
      continue;
    }
    // '\s+(?!\S)|\s+': a run of whitespace; if more follows, leave its last character to prefix
    // the next word.
    if (cps[i].cls == CharClass::space) {
      std::size_t j = i;
      while (is(j, CharClass::space)) ++j;
      // A digit ends the pre-split piece, so the run is not "followed by \S" within it.
      if (j < n && j - i > 1 && cps[j].cls != CharClass::digit) --j;
      emit(i, j);
      i = j;
      continue;
    }
    emit(i, i + 1);  // unreachable in practice; keeps the loop total
    ++i;
  }
  return out;
}

}  // namespace

Tokenizer::Tokenizer(const GgufFile& file) {
  const std::string model = file.string("tokenizer.ggml.model");
  if (model != "gpt2")
    throw kvarn_cl::Unsupported("tokenizer.ggml.model is '" + model +
                                "'; kvarn-eval implements byte-level BPE ('gpt2') only");
  tokens_ = file.strings("tokenizer.ggml.tokens");
  for (std::size_t i = 0; i < tokens_.size(); ++i) ids_.emplace(tokens_[i], std::int32_t(i));
  const auto& merges = file.strings("tokenizer.ggml.merges");
  for (std::size_t r = 0; r < merges.size(); ++r) merge_rank_.emplace(merges[r], int(r));
  if (file.has("tokenizer.ggml.token_type")) {
    const auto& types = file.numbers("tokenizer.ggml.token_type");
    for (std::size_t i = 0; i < types.size() && i < tokens_.size(); ++i)
      if (types[i] == 3 && !tokens_[i].empty()) control_tokens_.push_back(tokens_[i]);
    std::sort(control_tokens_.begin(), control_tokens_.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  }
  if (file.has("tokenizer.ggml.bos_token_id")) bos_ = std::int32_t(file.integer("tokenizer.ggml.bos_token_id"));
  if (file.has("tokenizer.ggml.eos_token_id")) eos_ = std::int32_t(file.integer("tokenizer.ggml.eos_token_id"));

  // GPT-2 bytes_to_unicode: printable bytes map to themselves, the rest to 256, 257, ...
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const std::uint32_t cp = printable ? std::uint32_t(b) : std::uint32_t(256 + extra++);
    byte_to_unicode_[b] = utf8(cp);
    unicode_to_byte_[byte_to_unicode_[b]] = std::uint8_t(b);
  }
}

void Tokenizer::encode_word(const std::string& word, std::vector<std::int32_t>& out) const {
  std::vector<std::string> sym;
  for (unsigned char b : word) sym.push_back(byte_to_unicode_[b]);
  // Standard BPE: repeatedly merge the adjacent pair of lowest rank.
  while (sym.size() > 1) {
    int best = INT_MAX;
    std::size_t at = 0;
    for (std::size_t k = 0; k + 1 < sym.size(); ++k) {
      auto it = merge_rank_.find(sym[k] + " " + sym[k + 1]);
      if (it != merge_rank_.end() && it->second < best) {
        best = it->second;
        at = k;
      }
    }
    if (best == INT_MAX) break;
    sym[at] += sym[at + 1];
    sym.erase(sym.begin() + std::ptrdiff_t(at) + 1);
  }
  for (const auto& s : sym) {
    auto it = ids_.find(s);
    if (it != ids_.end()) {
      out.push_back(it->second);
    } else {  // cannot happen with a complete byte vocabulary; fall back to single bytes
      for (std::size_t k = 0; k < s.size();) {
        std::size_t len;
        next_cp(s, k, len);
        auto jt = ids_.find(s.substr(k, len));
        if (jt != ids_.end()) out.push_back(jt->second);
        k += len;
      }
    }
  }
}

void Tokenizer::encode_plain(const std::string& text, std::vector<std::int32_t>& out) const {
  for (const auto& w : pre_tokenize(text)) encode_word(w, out);
}

std::vector<std::int32_t> Tokenizer::encode(const std::string& text) const {
  std::vector<std::int32_t> out;
  std::size_t start = 0, i = 0;
  while (i < text.size()) {
    const std::string* hit = nullptr;
    if (text[i] == '<')
      for (const auto& c : control_tokens_)
        if (text.compare(i, c.size(), c) == 0) {
          hit = &c;
          break;
        }
    if (!hit) {
      ++i;
      continue;
    }
    encode_plain(text.substr(start, i - start), out);
    out.push_back(ids_.at(*hit));
    i += hit->size();
    start = i;
  }
  encode_plain(text.substr(start), out);
  return out;
}

std::string Tokenizer::token_text(std::int32_t id) const {
  if (id < 0 || std::size_t(id) >= tokens_.size()) return "";
  const std::string& s = tokens_[std::size_t(id)];
  std::string bytes;
  for (std::size_t k = 0; k < s.size();) {
    std::size_t len;
    next_cp(s, k, len);
    auto it = unicode_to_byte_.find(s.substr(k, len));
    if (it != unicode_to_byte_.end()) bytes += char(it->second);
    else bytes += s.substr(k, len);  // control tokens are spelled literally
    k += len;
  }
  return bytes;
}

std::string Tokenizer::decode(const std::vector<std::int32_t>& ids) const {
  std::string s;
  for (auto id : ids) s += token_text(id);
  return s;
}

}  // namespace kvarn_eval
