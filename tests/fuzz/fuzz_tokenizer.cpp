// tests/fuzz/fuzz_tokenizer.cpp: encoding and decoding with the GPT-NeoX
// tokenizer.json (train/bpe_tokenizer.h) of tests/fixtures.
//
// Any input either encodes or, being ill-formed UTF-8, throws simba::Error.
// Encoded ids must lie in [0, vocab_size); encoding the same text again must
// give the same ids (the word cache must not change a result); decoding must
// not throw, and for ASCII text (which NFC leaves as it is) it must give the
// text back.
#include <string>
#include <vector>

#include "tensor/error.h"
#include "tests/fuzz/fuzz_util.h"
#include "train/bpe_tokenizer.h"

using namespace simba;

namespace {
const BpeTokenizer* g_tokenizer = nullptr;
}  // namespace

// Loading the 2.4 MB tokenizer.json takes longer than the 1 s an input may take
// under the fuzzer's instrumentation, so it is loaded once, before the first
// input. Run from the repository root (run_fuzzers.sh, ctest's working directory).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  static const BpeTokenizer tokenizer = BpeTokenizer::from_file("tests/fixtures/gpt-neox-tokenizer/tokenizer.json");
  g_tokenizer = &tokenizer;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const BpeTokenizer& tokenizer = *g_tokenizer;
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<int64_t> ids;
  try {
    ids = tokenizer.encode(text);
  } catch (const Error&) {
    return 0;  // rejected with a message (not UTF-8)
  }
  for (int64_t id : ids) fuzz_require(id >= 0 && id < tokenizer.vocab_size(), "every id is in the vocabulary");
  fuzz_require(tokenizer.encode(text) == ids, "encoding is a function of the text alone");
  const std::string decoded = tokenizer.decode(ids);
  bool ascii = true;
  for (unsigned char c : text) ascii = ascii && c < 0x80;
  if (ascii) fuzz_require(decoded == text, "ASCII text decodes back to itself");
  return 0;
}
