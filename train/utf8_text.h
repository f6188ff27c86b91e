// train/utf8_text.h: UTF-8 checks, NFC, and the byte-level alphabet of the
// GPT-2 / GPT-NeoX tokenizers.
//
// A tokenizer.json tokenizer works on Unicode text: its input must be valid
// UTF-8, its normalizer is NFC, and its byte-level BPE spells every byte as one
// printable character so that a vocabulary of strings can hold any byte
// sequence. Its decoder turns ids back into bytes that need not be valid UTF-8
// (a character can be split across tokens); they are made into text the way
// Hugging Face tokenizers does (Rust's String::from_utf8_lossy).
#pragma once

#include <cstddef>
#include <string>

namespace simba {

// The byte offset of the first byte that does not start a well-formed UTF-8
// sequence (Unicode Table 3-7: no overlong forms, no surrogates, nothing above
// U+10FFFF), or std::string::npos when `text` is valid UTF-8.
size_t first_invalid_utf8(const std::string& text);

// `bytes` with every ill-formed sequence replaced by U+FFFD, one per maximal
// subpart (Unicode §3.9 "U+FFFD Substitution of Maximal Subparts", the policy
// of String::from_utf8_lossy).
std::string utf8_lossy(const std::string& bytes);

// Unicode Normalization Form C of valid UTF-8 (utf8proc). Text whose code
// points are all below U+0300 is returned as it is without calling utf8proc:
// it holds no combining marks and no characters that NFC changes.
std::string nfc(const std::string& text);

// GPT-2's bytes_to_unicode: byte b as a code point. The printable bytes
// '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves; the other 68 bytes
// (controls, space, 0x7F..0xA0, 0xAD) take U+0100, U+0101, ... in byte order.
char32_t byte_level_char(unsigned char b);

// The inverse: the byte that code point c stands for, or -1 if c is not in the
// byte-level alphabet.
int byte_level_byte(char32_t c);

// The bytes that a token string (valid UTF-8) stands for under the ByteLevel
// decoder: each character's byte when every character is in the byte-level
// alphabet, else the string's own UTF-8 (an added token such as a run of plain
// spaces). `in_alphabet`, if given, says which case it was.
std::string byte_level_decode(const std::string& token, bool* in_alphabet = nullptr);

// Appends code point c as UTF-8.
void append_utf8(std::string& out, char32_t c);

}  // namespace simba
