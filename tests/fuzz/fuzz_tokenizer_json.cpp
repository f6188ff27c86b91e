// tests/fuzz/fuzz_tokenizer_json.cpp: the tokenizer.json reader
// (train/bpe_tokenizer.h).
//
// Any input either loads as a tokenizer or throws simba::Error. A tokenizer
// that loads has every byte in its vocabulary, so it must encode any UTF-8
// text into ids in [0, vocab_size) and decode them without throwing.
#include <string>
#include <vector>

#include "tensor/error.h"
#include "tests/fuzz/fuzz_util.h"
#include "train/bpe_tokenizer.h"

using namespace simba;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string json_text(reinterpret_cast<const char*>(data), size);
  std::vector<int64_t> ids;
  try {
    const BpeTokenizer tokenizer = BpeTokenizer::from_json_text(json_text, "fuzz tokenizer.json");
    ids = tokenizer.encode("Hello, wörld!  It's 2026\n\tcafé <|endoftext|>");
    for (int64_t id : ids) fuzz_require(id >= 0 && id < tokenizer.vocab_size(), "every id is in the vocabulary");
    tokenizer.decode(ids);
  } catch (const Error&) {
    return 0;  // rejected with a message
  }
  return 0;
}
