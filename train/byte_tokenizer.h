// train/byte_tokenizer.h: text <-> token ids, and the byte-level tokenizer.
//
// Tokenizer is the small interface the data pipeline and the CLI program
// against, so that the GPT-NeoX BPE tokenizer of the pretrained Mamba
// checkpoints can later be dropped in next to ByteTokenizer without touching
// TextData. ByteTokenizer is simba's default for training from scratch: each
// UTF-8 byte is one token (vocab 256), so any file can be trained on with no
// vocabulary file, no unknown tokens, and a loss that converts directly to
// bits per byte.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace simba {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string name() const = 0;  // recorded in checkpoints and logs
  virtual int64_t vocab_size() const = 0;  // every id is in [0, vocab_size)
  virtual std::vector<int64_t> encode(const std::string& text) const = 0;
  // Throws an Error naming the first id outside [0, vocab_size).
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  // Entry id: how many bytes of text token `id` stands for (0 for an id no
  // token has), so that a loss per token converts to bits per byte of the
  // text scored (bits/byte = Σ nats / ln 2 / Σ bytes over the targets).
  virtual std::vector<int64_t> token_byte_counts() const = 0;
};

// id = the byte's unsigned value; decode(encode(s)) == s for every byte string,
// valid UTF-8 or not.
class ByteTokenizer : public Tokenizer {
 public:
  std::string name() const override { return "byte"; }
  int64_t vocab_size() const override { return 256; }
  std::vector<int64_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  std::vector<int64_t> token_byte_counts() const override { return std::vector<int64_t>(256, 1); }
};

}  // namespace simba
