// train/bpe_tokenizer.h: the byte-level BPE tokenizer of a Hugging Face
// tokenizer.json, as the GPT-NeoX family (and so the state-spaces/mamba-*-hf
// checkpoints) ship it.
//
// Encoding, in the order Hugging Face tokenizers applies it:
//   1. added tokens with "normalized": false (the special ones, <|endoftext|>)
//      are cut out of the raw text, leftmost-longest, and become their ids;
//   2. every stretch between them is normalized (NFC, or nothing);
//   3. added tokens with "normalized": true (the NeoX whitespace runs of 2-24
//      spaces) are cut out of the normalized text the same way;
//   4. what remains is split into words by the ByteLevel pattern
//      (train/byte_level_split.h) and each word's bytes are merged by BPE:
//      repeatedly the adjacent pair with the lowest merge rank, the leftmost
//      one among equals, until no pair of the word has a merge.
// Decoding concatenates each id's bytes and reads them as UTF-8, an ill-formed
// sequence becoming U+FFFD (special tokens are kept, as decode(ids,
// skip_special_tokens=False)).
//
// Supported tokenizer.json components: model BPE (merges as "a b" strings or
// ["a", "b"] pairs; ignore_merges), normalizer NFC or none, pre_tokenizer and
// decoder ByteLevel (add_prefix_space false), post_processor ByteLevel or none,
// added tokens without lstrip/rstrip/single_word. Anything else is rejected
// when the file is loaded, naming the component, rather than encoded
// differently from the reference.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "train/byte_tokenizer.h"

namespace simba {

class BpeTokenizer : public Tokenizer {
 public:
  // Errors name the file and the offending field.
  static BpeTokenizer from_file(const std::string& path);
  // `source` names the text in errors.
  static BpeTokenizer from_json_text(const std::string& json_text, const std::string& source);

  std::string name() const override { return "bpe"; }
  int64_t vocab_size() const override;  // 1 + the largest id of the vocabulary and the added tokens
  // Throws an Error if text is not valid UTF-8.
  std::vector<int64_t> encode(const std::string& text) const override;
  // encode() of every text, in parallel over the texts (OpenMP); the error of
  // the first failing text names its index.
  std::vector<std::vector<int64_t>> encode_batch(const std::vector<std::string>& texts) const;
  std::string decode(const std::vector<int64_t>& ids) const override;
  std::vector<int64_t> token_byte_counts() const override;

 private:
  struct Impl;
  explicit BpeTokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;  // immutable, so copies share it
};

}  // namespace simba
