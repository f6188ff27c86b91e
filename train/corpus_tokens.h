// train/corpus_tokens.h: a text corpus as the token ids of a tokenizer.json
// (GPT-NeoX byte-level BPE), encoded in parallel and cached for training.
//
// encode_corpus cuts the text into chunks of about 64 KiB just after a
// newline that a visible ASCII character precedes and an ASCII letter or
// digit follows ("x\nT"). The ByteLevel pre-tokenizer splits on both sides of
// that newline in the whole text and in the chunk alike: no alternative of its
// pattern matches across "\n" into a word, and the newline is a whitespace run
// of one, so the lookahead of "\s+(?!\S)" (which at a chunk's end sees the end
// instead of the letter) cannot merge it with a longer run. No added token
// contains such a triple, and NFC never joins a newline with its neighbours,
// so the chunks' ids concatenated are exactly the ids of the whole text. The chunks are encoded with BpeTokenizer::encode_batch
// (parallel over chunks), a group at a time, with a progress bar.
//
// cached_corpus_tokens keeps the ids in a safetensors file: "ids", int64 (n),
// and __metadata__ {"format": "simba-token-cache", "version": "1",
// "data_bytes", "data_mtime_ns" (the corpus file's size and modification
// time), "tokenizer_fnv1a64", "tokenizer_bytes" (a hash and the size of the
// tokenizer.json)}. When a later call finds the same key it reads the ids
// instead of encoding again; otherwise it encodes and replaces the file
// (atomically). Editing the corpus in place changes its mtime; editing the
// tokenizer changes its hash.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "train/bpe_tokenizer.h"
#include "train/text_data.h"

namespace simba {

// The ids of `text`, as tokenizer.encode(text) gives them. With `progress`,
// draws "\rtokenizing <what>: 42% ..." there as chunks finish, then a summary line.
std::vector<int64_t> encode_corpus(const BpeTokenizer& tokenizer, const std::string& text, const std::string& what,
                                   std::ostream* progress);

// The ids of the file at data_path, from the cache file at cache_path when its
// key matches data_path and the tokenizer file's bytes, else encoded and
// cached there. `out` gets the progress bar or a line saying the cache was used.
std::vector<int64_t> cached_corpus_tokens(const std::string& data_path, const std::string& tokenizer_path,
                                          const BpeTokenizer& tokenizer, const std::string& cache_path,
                                          std::ostream& out);

// The vocab_size a model needs for a tokenizer of `vocab` ids: rounded up to a
// multiple of 8, as Mamba's configs pad the embedding (GPT-NeoX 50277 -> 50280).
int64_t padded_vocab_size(int64_t vocab);

}  // namespace simba
