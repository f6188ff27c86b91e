// train/utf8_text.cpp: UTF-8 validation and lossy decoding (Unicode Table
// 3-7), NFC through utf8proc, GPT-2's byte-level alphabet.
#include "train/utf8_text.h"

#include <utf8proc.h>

#include <array>
#include <cstdlib>
#include <memory>

#include "tensor/error.h"

namespace simba {

namespace {

// The length (1..4) of the well-formed sequence at s[0..n), or minus the
// length of its maximal ill-formed subpart: the lead byte plus the
// continuation bytes that Table 3-7 allows after it, before the first one it
// does not.
int utf8_step(const unsigned char* s, size_t n) {
  const unsigned char b = s[0];
  if (b < 0x80) return 1;
  int need;                           // bytes in the whole sequence
  unsigned char lo = 0x80, hi = 0xBF;  // the range allowed for the second byte
  if (b >= 0xC2 && b <= 0xDF) {
    need = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 3;
    if (b == 0xE0) lo = 0xA0;  // below: overlong
    if (b == 0xED) hi = 0x9F;  // above: surrogates U+D800..U+DFFF
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 4;
    if (b == 0xF0) lo = 0x90;  // below: overlong
    if (b == 0xF4) hi = 0x8F;  // above: beyond U+10FFFF
  } else {
    return -1;  // a continuation byte, C0/C1 (always overlong) or F5..FF
  }
  for (int i = 1; i < need; ++i) {
    if (static_cast<size_t>(i) >= n) return -i;
    const unsigned char c = s[i];
    if (c < (i == 1 ? lo : 0x80) || c > (i == 1 ? hi : 0xBF)) return -i;
  }
  return need;
}

struct ByteLevelTables {
  std::array<char32_t, 256> to_char{};
  std::array<int, 324> to_byte{};  // the alphabet lies in U+0021..U+0143
  ByteLevelTables() {
    to_byte.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_char[b] = printable ? static_cast<char32_t>(b) : next++;
      to_byte[to_char[b]] = b;
    }
  }
};

const ByteLevelTables& byte_level_tables() {
  static const ByteLevelTables tables;
  return tables;
}

}  // namespace

size_t first_invalid_utf8(const std::string& text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {  // ASCII runs, the common case, one byte at a time without the table
      ++i;
      continue;
    }
    const int step = utf8_step(s + i, n - i);
    if (step < 0) return i;
    i += static_cast<size_t>(step);
  }
  return std::string::npos;
}

std::string utf8_lossy(const std::string& bytes) {
  if (first_invalid_utf8(bytes) == std::string::npos) return bytes;
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  std::string out;
  out.reserve(n + 8);
  size_t i = 0;
  while (i < n) {
    const int step = utf8_step(s + i, n - i);
    if (step > 0) {
      out.append(bytes, i, static_cast<size_t>(step));
      i += static_cast<size_t>(step);
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD
      i += static_cast<size_t>(-step);
    }
  }
  return out;
}

std::string nfc(const std::string& text) {
  bool below_u0300 = true;  // lead bytes of U+0300 and above are >= 0xCC; continuation bytes are < 0xC0
  for (unsigned char c : text) below_u0300 &= c < 0xCC;
  if (below_u0300) return text;
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
                   &out, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(out, &std::free);
  SIMBA_CHECK(n >= 0, "NFC normalization failed: " << utf8proc_errmsg(n));
  return std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
}

char32_t byte_level_char(unsigned char b) { return byte_level_tables().to_char[b]; }

int byte_level_byte(char32_t c) {
  const auto& to_byte = byte_level_tables().to_byte;
  return c < to_byte.size() ? to_byte[c] : -1;
}

std::string byte_level_decode(const std::string& token, bool* in_alphabet) {
  std::string bytes;
  const auto* s = reinterpret_cast<const utf8proc_uint8_t*>(token.data());
  utf8proc_ssize_t i = 0, n = static_cast<utf8proc_ssize_t>(token.size());
  while (i < n) {
    utf8proc_int32_t c;
    const utf8proc_ssize_t len = utf8proc_iterate(s + i, n - i, &c);
    SIMBA_CHECK(len > 0, "byte_level_decode: token is not valid UTF-8 at byte " << i);
    const int b = byte_level_byte(static_cast<char32_t>(c));
    if (b < 0) {
      if (in_alphabet) *in_alphabet = false;
      return token;
    }
    bytes += static_cast<char>(b);
    i += len;
  }
  if (in_alphabet) *in_alphabet = true;
  return bytes;
}

void append_utf8(std::string& out, char32_t c) {
  utf8proc_uint8_t buf[4];
  const utf8proc_ssize_t n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(c), buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

}  // namespace simba
