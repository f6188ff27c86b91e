// train/byte_tokenizer.cpp: the byte <-> id mapping of ByteTokenizer.
#include "train/byte_tokenizer.h"

#include "tensor/error.h"

namespace simba {

std::vector<int64_t> ByteTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids(text.size());
  // Through unsigned char: plain char is signed on x86, and byte 0xE2 must be id 226, not -30.
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string text(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    SIMBA_CHECK_HINT(ids[i] >= 0 && ids[i] < 256,
                     "ByteTokenizer::decode: token id " << ids[i] << " at position " << i
                                                        << " is outside the byte vocabulary [0, 256)",
                     "ids from a model with a vocabulary larger than 256 need that model's tokenizer");
    text[i] = static_cast<char>(static_cast<unsigned char>(ids[i]));
  }
  return text;
}

}  // namespace simba
