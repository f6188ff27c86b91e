// train/byte_level_split.cpp: the GPT-2 split pattern on PCRE2.
//
// Hugging Face tokenizers runs the pattern on Oniguruma, whose \s in Unicode
// mode is U+0009..U+000D, U+0085 and the separators Zs, Zl, Zp. PCRE2's \s
// under UCP leaves out U+0085, so the pattern spells the class out; \S becomes
// the negated class, and the lookahead "\s+(?!\S)" a negative lookahead on it.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "train/byte_level_split.h"

#include <pcre2.h>

#include "tensor/error.h"

namespace simba {

namespace {

#define SIMBA_WS "\\t-\\r\\x{85}\\p{Z}"
const char kPattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d"
    "| ?\\p{L}+| ?\\p{N}+| ?[^" SIMBA_WS "\\p{L}\\p{N}]+"
    "|[" SIMBA_WS "]+(?![^" SIMBA_WS "])|[" SIMBA_WS "]+";
#undef SIMBA_WS

}  // namespace

ByteLevelSplit::ByteLevelSplit() {
  int code = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code,
                        &offset, nullptr);
  if (!code_) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(code, message, sizeof message);
    SIMBA_FAIL("ByteLevel pre-tokenizer: PCRE2 cannot compile the split pattern at offset "
               << offset << ": " << reinterpret_cast<const char*>(message));
  }
  // Without a JIT (an unsupported CPU, or a build without it) the interpreter gives the same matches.
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

ByteLevelSplit::~ByteLevelSplit() { pcre2_code_free(code_); }

ByteLevelSplit::ByteLevelSplit(ByteLevelSplit&& other) noexcept : code_(other.code_), jit_(other.jit_) {
  other.code_ = nullptr;
}

ByteLevelSplit& ByteLevelSplit::operator=(ByteLevelSplit&& other) noexcept {
  std::swap(code_, other.code_);
  std::swap(jit_, other.jit_);
  return *this;
}

ByteLevelSplit::Scratch::Scratch(const ByteLevelSplit& split)
    : data_(pcre2_match_data_create_from_pattern(split.code_, nullptr)) {
  SIMBA_CHECK(data_, "ByteLevel pre-tokenizer: out of memory for PCRE2 match data");
}

ByteLevelSplit::Scratch::~Scratch() { pcre2_match_data_free(data_); }

void ByteLevelSplit::split(const char* s, size_t n, Scratch& scratch,
                           std::vector<std::pair<size_t, size_t>>& words) const {
  words.clear();
  const auto subject = reinterpret_cast<PCRE2_SPTR>(s);
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.data_);
  size_t pos = 0;
  while (pos < n) {
    const int rc = jit_ ? pcre2_jit_match(code_, subject, n, pos, PCRE2_NO_UTF_CHECK, scratch.data_, nullptr)
                        : pcre2_match(code_, subject, n, pos, PCRE2_NO_UTF_CHECK, scratch.data_, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    SIMBA_CHECK(rc > 0, "ByteLevel pre-tokenizer: PCRE2 match failed with code " << rc);
    const size_t begin = ovector[0], end = ovector[1];
    if (begin > pos) words.emplace_back(pos, begin - pos);
    // The pattern has no empty match; the guard keeps the loop finite regardless.
    SIMBA_CHECK(end > begin, "ByteLevel pre-tokenizer: empty match at byte " << begin);
    words.emplace_back(begin, end - begin);
    pos = end;
  }
  if (pos < n) words.emplace_back(pos, n - pos);
}

}  // namespace simba
