// train/byte_level_split.h: the ByteLevel pre-tokenizer's split of text into
// words, with the GPT-2 pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// through PCRE2 (UTF + UCP, JIT-compiled where the platform has a JIT).
//
// Every match is a word and so is every stretch between matches (Hugging
// Face's "Isolated" split; the pattern covers every character, so there are
// none in practice). BPE then runs on each word on its own, so a token never
// spans two words: a space sticks to the word after it, and of a run of spaces
// before a word all but the last stay a word of their own.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

struct pcre2_real_code_8;
struct pcre2_real_match_data_8;

namespace simba {

class ByteLevelSplit {
 public:
  ByteLevelSplit();
  ~ByteLevelSplit();
  ByteLevelSplit(ByteLevelSplit&&) noexcept;
  ByteLevelSplit& operator=(ByteLevelSplit&&) noexcept;

  // PCRE2's per-match scratch: one per thread.
  class Scratch {
   public:
    explicit Scratch(const ByteLevelSplit& split);
    ~Scratch();
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;

   private:
    friend class ByteLevelSplit;
    pcre2_real_match_data_8* data_;
  };

  // Replaces `words` by the (offset, length) of each word of s[0..n), in
  // order. s must be valid UTF-8 (not checked again here).
  void split(const char* s, size_t n, Scratch& scratch, std::vector<std::pair<size_t, size_t>>& words) const;

 private:
  pcre2_real_code_8* code_ = nullptr;
  bool jit_ = false;
};

}  // namespace simba
