// tests/test_bpe_training.cpp: training, evaluation and generation on the
// GPT-NeoX BPE tokens of tests/fixtures/gpt-neox-tokenizer/tokenizer.json
// (simba train --tokenizer; train/corpus_tokens.h; generate and eval reading
// the checkpoint's tokenizer.json).
//
// A few steps of a tiny model through the simba binary: the checkpoint
// carries the tokenizer and a vocabulary padded to a multiple of 8, a resumed
// run reuses the token cache, generate writes decodable text, eval's bits per
// byte divide by the bytes the scored tokens spell. The chunked parallel
// encoding equals encoding the whole text; the cache is keyed by the corpus
// and the tokenizer; bad --tokenizer files are refused naming the flag.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "nn/safetensors.h"
#include "ssm/mamba_model.h"
#include "tensor/file_io.h"
#include "tests/test_util.h"
#include "train/commands.h"
#include "train/corpus_tokens.h"
#include "train/train_state.h"

using namespace simba;
namespace fs = std::filesystem;

namespace {

const TempDir g_tmp("test_bpe_training");
const std::string kTokenizer = "tests/fixtures/gpt-neox-tokenizer/tokenizer.json";

// About `bytes` of English-like text in lines, with some non-ASCII and blank lines.
std::string corpus(size_t bytes) {
  const char* lines[] = {"In the beginning the model knew nothing of words.\n",
                         "Then it read, and read again, until the patterns stood out.\n",
                         "\n",
                         "Café, naïve, 東京 and emoji 🙂 are text too; so are  two  spaces.\n",
                         "42 is a number, and 3.14159 another.\n",
                         "    indented code: return x * 2;\n"};
  std::string text;
  for (size_t i = 0; text.size() < bytes; ++i) text += lines[(i * 7 + i / 6) % 6];
  return text;
}

std::string write_corpus(const std::string& name, size_t bytes) {
  const std::string path = g_tmp.file(name);
  write_file_atomic(path, corpus(bytes));
  return path;
}

const std::string kTrainFlags =
    " --hidden-size 16 --layers 1 --state-size 4 --batch-size 2 --seq-len 32 --eval-every 0 --eval-batches 1"
    " --log-every 1 --save-every 0";

}  // namespace

TEST_CASE("encode_corpus: chunked parallel encoding equals encoding the whole text") {
  const BpeTokenizer tokenizer = BpeTokenizer::from_file(kTokenizer);
  const std::string text = corpus(300000);  // several 64 KiB chunks
  std::ostringstream progress;
  CHECK(encode_corpus(tokenizer, text, "corpus", &progress) == tokenizer.encode(text));
  CHECK(contains(progress.str(), "tokenizing corpus: 100%"));
  CHECK(contains(progress.str(), "tokenized corpus: "));
  CHECK(encode_corpus(tokenizer, "short\nline", "s", nullptr) == tokenizer.encode("short\nline"));
  CHECK(padded_vocab_size(50277) == 50280);
  CHECK(padded_vocab_size(256) == 256);
}

TEST_CASE("the token cache is reused while the corpus and tokenizer are unchanged") {
  const BpeTokenizer tokenizer = BpeTokenizer::from_file(kTokenizer);
  const std::string data = write_corpus("cache.txt", 5000), cache = g_tmp.file("cache.safetensors");
  std::ostringstream first, second, third, fourth;
  const std::vector<int64_t> ids = cached_corpus_tokens(data, kTokenizer, tokenizer, cache, first);
  CHECK(ids == tokenizer.encode(read_file(data)));
  CHECK(contains(first.str(), "tokenized " + data));
  CHECK(cached_corpus_tokens(data, kTokenizer, tokenizer, cache, second) == ids);
  CHECK(contains(second.str(), "from the cache " + cache));

  // A changed corpus (size and mtime) is encoded again.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  write_file_atomic(data, corpus(6000));
  CHECK(cached_corpus_tokens(data, kTokenizer, tokenizer, cache, third) == tokenizer.encode(corpus(6000)));
  CHECK(contains(third.str(), "tokenized " + data));

  // Another tokenizer file (same merges, one added token more) changes the key too.
  nlohmann::json j = nlohmann::json::parse(read_file(kTokenizer));
  j["added_tokens"].push_back({{"id", 50277}, {"content", "<|extra|>"}, {"single_word", false}, {"lstrip", false},
                               {"rstrip", false}, {"normalized", false}, {"special", true}});
  const std::string other = g_tmp.file("other_tokenizer.json");
  write_file_atomic(other, j.dump());
  cached_corpus_tokens(data, other, BpeTokenizer::from_file(other), cache, fourth);
  CHECK(contains(fourth.str(), "tokenized " + data));
}

TEST_CASE("simba train --tokenizer: checkpoint with tokenizer.json, cache reuse, generate and eval") {
  const std::string data = write_corpus("train.txt", 40000), out = g_tmp.file("run");
  auto [code, text] = run_simba("train --data " + data + " --out " + out + " --steps 3 --tokenizer " + kTokenizer + kTrainFlags);
  INFO(text);
  REQUIRE(code == 0);
  CHECK(contains(text, "tokenized " + data));
  const std::string ckpt = checkpoint_dir(out);
  CHECK(read_file(ckpt + "/tokenizer.json") == read_file(kTokenizer));
  CHECK(MambaConfig::from_json_file(ckpt + "/config.json").vocab_size == 50280);
  CHECK(file_exists(out + "/tokens.safetensors"));

  // --resume continues on the checkpoint's tokenizer, from the cached tokens.
  std::tie(code, text) = run_simba("train --data " + data + " --out " + out + " --steps 4 --resume");
  CHECK(code == 0);
  CHECK(contains(text, "from the cache " + out + "/tokens.safetensors"));
  CHECK(read_file(ckpt + "/tokenizer.json") == read_file(kTokenizer));

  // generate: the prompt encoded with the checkpoint's tokenizer, the new tokens decoded.
  std::ostringstream gen;
  GenerateArgs g;
  g.model_dir = ckpt;
  g.prompt = "In the beginning";
  g.tokens = 12;
  const std::string generated = run_generate(g, gen);
  CHECK(!generated.empty());
  CHECK(gen.str() == g.prompt + generated);
  std::tie(code, text) = run_simba("generate --model " + ckpt + " --prompt 'Then it' --tokens 5 --temperature 0");
  CHECK(code == 0);
  CHECK(text.rfind("Then it", 0) == 0);

  // eval: bits per byte = Σ nats / ln 2 / bytes of the scored targets' text.
  EvalArgs e;
  e.model_dir = ckpt;
  e.data_path = data;
  e.batch = 2;
  e.len = 32;
  std::ostringstream ev;
  const EvalResult r = run_eval(e, ev);
  const BpeTokenizer tokenizer = BpeTokenizer::from_file(kTokenizer);
  const TextData td = TextData::from_file(data, tokenizer, e.val_fraction);
  const std::vector<int64_t> counts = tokenizer.token_byte_counts();
  int64_t bytes = 0, tokens = 0;
  for (const Batch& b : td.validation_batches(e.batch, e.len, TextData::kAllBatches))
    for (int64_t id : b.targets.to_ints()) {
      bytes += counts[static_cast<size_t>(id)];
      ++tokens;
    }
  REQUIRE(tokens == r.tokens);
  CHECK(bytes > 2 * tokens);  // BPE tokens spell several bytes each
  const double expected = r.loss * static_cast<double>(tokens) / std::log(2.0) / static_cast<double>(bytes);
  CHECK(std::abs(r.bits_per_byte - expected) <= 1e-12 * expected);
  CHECK(contains(ev.str(), "bits/byte"));
}

TEST_CASE("simba train --tokenizer: a missing or malformed file, or a model too small, is refused naming the flag") {
  const std::string data = write_corpus("bad.txt", 4000);
  auto [code, text] = run_simba("train --data " + data + " --out " + g_tmp.file("bad1") + " --steps 1 --tokenizer " +
                                g_tmp.file("missing.json") + kTrainFlags);
  CHECK(code != 0);
  CHECK(contains(text, "--tokenizer: tokenizer file '" + g_tmp.file("missing.json") + "' does not exist"));

  const std::string malformed = g_tmp.file("malformed.json");
  write_file_atomic(malformed, "{\"model\": {\"type\": \"WordPiece\"}}");
  std::tie(code, text) = run_simba("train --data " + data + " --out " + g_tmp.file("bad2") + " --steps 1 --tokenizer " +
                                   malformed + kTrainFlags);
  CHECK(code != 0);
  CHECK(contains(text, "--tokenizer: tokenizer '" + malformed + "'"));

  const std::string config = g_tmp.file("byte_config.json");
  MambaConfig c;
  c.vocab_size = 256;
  c.hidden_size = 16;
  c.num_hidden_layers = 1;
  c.time_step_rank = 1;
  c.save(config);
  std::tie(code, text) = run_simba("train --data " + data + " --out " + g_tmp.file("bad3") + " --steps 1 --config " +
                                   config + " --tokenizer " + kTokenizer + " --batch-size 2 --seq-len 16");
  CHECK(code != 0);
  CHECK(contains(text, "--tokenizer: tokenizer '" + kTokenizer + "' has 50277 ids, but the model of --config"));
  CHECK(contains(text, "vocab_size >= 50280"));
}
