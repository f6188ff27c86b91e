// tests/test_bpe_tokenizer.cpp: the tokenizer.json BPE tokenizer
// (train/bpe_tokenizer.h) against Hugging Face tokenizers 0.23.2 on the
// GPT-NeoX-20B tokenizer (tests/fixtures/gpt-neox-tokenizer: every case's ids
// and decoded string exactly), the merge loop on small hand-made vocabularies,
// the UTF-8 helpers, and the error of each kind of malformed tokenizer.json.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tensor/file_io.h"
#include "tests/test_util.h"
#include "train/bpe_tokenizer.h"
#include "train/utf8_text.h"

using namespace simba;
using json = nlohmann::json;

namespace {

const std::string kNeoxDir = "tests/fixtures/gpt-neox-tokenizer/";

const BpeTokenizer& neox() {
  static const BpeTokenizer t = BpeTokenizer::from_file(kNeoxDir + "tokenizer.json");
  return t;
}

struct Case {
  std::string text, decoded;
  std::vector<int64_t> ids;
};

std::vector<Case> neox_cases() {
  std::ifstream in(kNeoxDir + "cases.jsonl");
  REQUIRE(in);
  std::vector<Case> cases;
  std::string line;
  while (std::getline(in, line)) {
    const json j = json::parse(line);
    cases.push_back({j["text"], j["decoded"], j["ids"].get<std::vector<int64_t>>()});
  }
  return cases;
}

std::string byte_char(unsigned char b) {
  std::string s;
  append_utf8(s, byte_level_char(b));
  return s;
}

// A byte-level BPE tokenizer.json: the 256 byte tokens (id = byte), then
// "ab" 256, "bc" 257, "abc" 258, "aa" 259, and the given merges.
json tiny_tokenizer(const json& merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(static_cast<unsigned char>(b))] = b;
  vocab["ab"] = 256;
  vocab["bc"] = 257;
  vocab["abc"] = 258;
  vocab["aa"] = 259;
  return {{"version", "1.0"},
          {"added_tokens", json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

std::vector<int64_t> encode_with(const json& tokenizer, const std::string& text) {
  return BpeTokenizer::from_json_text(tokenizer.dump(), "tiny").encode(text);
}

std::string load_error(const json& tokenizer) {
  return error_of([&] { BpeTokenizer::from_json_text(tokenizer.dump(), "tokenizer 'bad.json'"); });
}

}  // namespace

// ---------------------------------------------------------------- GPT-NeoX vs Hugging Face

TEST_CASE("GPT-NeoX tokenizer.json: every case's ids and decoded string equal Hugging Face tokenizers'") {
  const std::vector<Case> cases = neox_cases();
  REQUIRE(cases.size() == 344);
  CHECK(neox().vocab_size() == 50277);
  int mismatched = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::vector<int64_t> ids = neox().encode(cases[i].text);
    const std::string decoded = neox().decode(cases[i].ids);
    if (ids != cases[i].ids || decoded != cases[i].decoded) {
      if (++mismatched <= 5) {
        INFO("case " << i << ": " << json(cases[i].text).dump());
        CHECK(ids == cases[i].ids);
        CHECK(decoded == cases[i].decoded);
      }
    }
  }
  CHECK(mismatched == 0);

  // The batch encoder (OpenMP over texts) gives the same ids in the same order.
  std::vector<std::string> texts;
  for (const Case& c : cases) texts.push_back(c.text);
  const std::vector<std::vector<int64_t>> batch = neox().encode_batch(texts);
  REQUIRE(batch.size() == cases.size());
  for (size_t i = 0; i < cases.size(); ++i) CHECK(batch[i] == cases[i].ids);
}

TEST_CASE("GPT-NeoX: special tokens inside text, whitespace-run tokens, NFC") {
  const BpeTokenizer& t = neox();
  // <|endoftext|> is cut out of the raw text whole, even glued to words; "<|endoftext" alone is not.
  const std::vector<int64_t> glued = t.encode("a<|endoftext|>b");
  REQUIRE(glued.size() == 3);
  CHECK(glued[1] == 0);
  CHECK(glued == std::vector<int64_t>{t.encode("a")[0], 0, t.encode("b")[0]});
  CHECK(t.encode("<|padding|><|endoftext|>") == std::vector<int64_t>{1, 0});
  for (int64_t id : t.encode("<|endoftext")) CHECK(id != 0);
  CHECK(t.decode(t.encode("x <|endoftext|> y")) == "x <|endoftext|> y");
  // Runs of 2..24 spaces are added tokens 50276..50254, matched longest first.
  CHECK(t.encode("  ") == std::vector<int64_t>{50276});
  CHECK(t.encode(std::string(24, ' ')) == std::vector<int64_t>{50254});
  CHECK(t.encode(std::string(30, ' ')) == std::vector<int64_t>{50254, 50272});
  CHECK(t.decode({50254, 50272}) == std::string(30, ' '));
  // "e" + U+0301 (combining acute) is encoded as its NFC form U+00E9.
  CHECK(t.encode("caf\x65\xCC\x81") == t.encode("caf\xC3\xA9"));
  // A character split across tokens decodes to U+FFFD until it is whole.
  const std::vector<int64_t> emoji = t.encode("\xF0\x9F\x98\x80");
  REQUIRE(emoji.size() > 1);
  CHECK(contains(t.decode({emoji[0]}), "\xEF\xBF\xBD"));
  CHECK(t.decode(emoji) == "\xF0\x9F\x98\x80");
  CHECK(t.encode("").empty());
}

// ---------------------------------------------------------------- the merge loop

TEST_CASE("BPE merges: \"a b\" strings and [\"a\", \"b\"] pairs mean the same, ranks decide the order") {
  // "b c" before "a b": "abc" becomes a + bc; then "a bc" joins them.
  const json strings = tiny_tokenizer({"b c", "a b", "a bc"});
  const json pairs = tiny_tokenizer(json::array({json::array({"b", "c"}), json::array({"a", "b"}), json::array({"a", "bc"})}));
  CHECK(encode_with(strings, "abc") == std::vector<int64_t>{258});
  CHECK(encode_with(pairs, "abc") == std::vector<int64_t>{258});
  CHECK(encode_with(tiny_tokenizer({"b c", "a b"}), "abc") == std::vector<int64_t>{'a', 257});
  CHECK(encode_with(tiny_tokenizer({"a b", "b c"}), "abc") == std::vector<int64_t>{256, 'c'});
  CHECK(encode_with(tiny_tokenizer(json::array({json::array({"a", "b"}), "b c"})), "abc") ==
        std::vector<int64_t>{256, 'c'});
  // Equal ranks: the leftmost pair first, so "aaa" is aa + a, "aaaa" aa + aa.
  CHECK(encode_with(tiny_tokenizer({"a a"}), "aaa") == std::vector<int64_t>{259, 'a'});
  CHECK(encode_with(tiny_tokenizer({"a a"}), "aaaa") == std::vector<int64_t>{259, 259});
  // Words are merged on their own: " abc" is one word (the space is Ġ, which has no merge here).
  CHECK(encode_with(strings, "abc abc") == std::vector<int64_t>{258, ' ', 258});
  // ignore_merges: a word that is a token is that token, whatever the merges say.
  json whole = tiny_tokenizer({"a b"});
  CHECK(encode_with(whole, "abc") == std::vector<int64_t>{256, 'c'});
  whole["model"]["ignore_merges"] = true;
  CHECK(encode_with(whole, "abc") == std::vector<int64_t>{258});
}

TEST_CASE("added tokens: leftmost-longest, normalized ones matched after NFC, special ones before") {
  json t = tiny_tokenizer({"a b"});
  t["normalizer"] = {{"type", "NFC"}};
  t["added_tokens"] = {
      {{"id", 300}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
      {{"id", 301}, {"content", "<s>x"}, {"special", true}, {"normalized", false}},
      {{"id", 302}, {"content", "\xC3\xA9"}, {"special", false}, {"normalized", true}},  // é, NFC form
      {{"id", 303}, {"content", "e\xCC\x81!"}, {"special", false}, {"normalized", false}},  // e + U+0301 + !
  };
  const BpeTokenizer tok = BpeTokenizer::from_json_text(t.dump(), "tiny");
  CHECK(tok.vocab_size() == 304);
  CHECK(tok.encode("ab<s>ab") == std::vector<int64_t>{256, 300, 256});
  CHECK(tok.encode("<s>xab") == std::vector<int64_t>{301, 256});
  // e + U+0301 normalizes to é, which the normalized added token then matches.
  CHECK(tok.encode("e\xCC\x81") == std::vector<int64_t>{302});
  // The non-normalized token is matched on the raw text, before NFC could change it.
  CHECK(tok.encode("e\xCC\x81!") == std::vector<int64_t>{303});
  CHECK(tok.decode({300, 256, 301}) == "<s>ab<s>x");
}

// ---------------------------------------------------------------- UTF-8

TEST_CASE("utf8 helpers: validation, lossy decoding by maximal subparts, byte-level alphabet") {
  CHECK(first_invalid_utf8("plain \xC3\xA9 \xF0\x9F\x98\x80") == std::string::npos);
  CHECK(first_invalid_utf8("ab\xC0\x80") == 2);        // overlong
  CHECK(first_invalid_utf8("\xED\xA0\x80") == 0);      // surrogate
  CHECK(first_invalid_utf8("x\xF4\x90\x80\x80") == 1);  // above U+10FFFF
  CHECK(first_invalid_utf8("\xE2\x82") == 0);          // truncated
  const std::string fffd = "\xEF\xBF\xBD";
  CHECK(utf8_lossy("\xF0\x9F\x98" "A") == fffd + "A");                 // one maximal subpart
  CHECK(utf8_lossy("\xE0\x80") == fffd + fffd);                          // E0 needs A0..BF next
  CHECK(utf8_lossy("\xED\xA0\x80") == fffd + fffd + fffd);               // surrogates: every byte
  CHECK(utf8_lossy("\xC3\xA9\xFF") == "\xC3\xA9" + fffd);
  CHECK(nfc("e\xCC\x81") == "\xC3\xA9");
  CHECK(nfc("plain ascii") == "plain ascii");
  CHECK(byte_level_char(' ') == 0x120);  // "Ġ"
  CHECK(byte_level_char('a') == 'a');
  for (int b = 0; b < 256; ++b) CHECK(byte_level_byte(byte_level_char(static_cast<unsigned char>(b))) == b);
  CHECK(byte_level_byte(' ') == -1);
  bool in_alphabet = false;
  CHECK(byte_level_decode("\xC4\xA0hi\xC4\x8A", &in_alphabet) == " hi\n");  // "Ġhi" + "Ċ"
  CHECK(in_alphabet);
  CHECK(byte_level_decode("  x", &in_alphabet) == "  x");  // plain spaces: not byte-level, kept as they are
  CHECK(!in_alphabet);
}

// ---------------------------------------------------------------- errors

TEST_CASE("malformed tokenizer.json: each error names the file and what is wrong") {
  const json good = tiny_tokenizer({"a b"});
  CHECK(load_error(good).empty());
  CHECK(contains(error_of([] { BpeTokenizer::from_json_text("{\"model\": ", "tokenizer 'bad.json'"); }),
                 "tokenizer 'bad.json': not valid JSON"));
  CHECK(contains(error_of([] { BpeTokenizer::from_file("no/such/tokenizer.json"); }), "no/such/tokenizer.json"));

  json t = good;
  t.erase("model");
  CHECK(contains(load_error(t), "tokenizer 'bad.json': no \"model\""));

  t = good;
  t["model"]["type"] = "WordPiece";
  CHECK(contains(load_error(t), "model type 'WordPiece' is not supported"));
  CHECK(contains(load_error(t), "supported model: BPE"));
  t = good;
  t["model"]["type"] = "Unigram";
  CHECK(contains(load_error(t), "'Unigram' is not supported"));
  t = good;
  t["normalizer"] = {{"type", "NFKC"}};
  CHECK(contains(load_error(t), "normalizer 'NFKC' is not supported"));
  CHECK(contains(load_error(t), "supported normalizers: NFC"));
  t = good;
  t["pre_tokenizer"] = {{"type", "Metaspace"}};
  CHECK(contains(load_error(t), "pre_tokenizer 'Metaspace' is not supported"));
  t = good;
  t["pre_tokenizer"]["add_prefix_space"] = true;
  CHECK(contains(load_error(t), "add_prefix_space true is not supported"));
  t = good;
  t["decoder"] = nullptr;
  CHECK(contains(load_error(t), "decoder 'none' is not supported"));
  t = good;
  t["post_processor"] = {{"type", "TemplateProcessing"}};
  CHECK(contains(load_error(t), "post_processor 'TemplateProcessing' is not supported"));
  t = good;
  t["model"]["dropout"] = 0.1;
  CHECK(contains(load_error(t), "model.dropout 0.1 is not supported"));

  t = tiny_tokenizer({"a b", "a q"});  // "aq" is no token
  CHECK(contains(load_error(t), "model.merges[1] \"a q\": result \"aq\" is not in the vocabulary"));
  t = tiny_tokenizer(json::array({json::array({"a", "zz"})}));
  CHECK(contains(load_error(t), "model.merges[0] [\"a\",\"zz\"]: part \"zz\" is not in the vocabulary"));
  t = tiny_tokenizer({"a b c"});
  CHECK(contains(load_error(t), "model.merges[0]: expected \"left right\""));
  t = tiny_tokenizer({42});
  CHECK(contains(load_error(t), "model.merges[0]: expected \"left right\" or [\"left\", \"right\"], got 42"));

  t = good;
  t["model"]["vocab"]["zz"] = 256;  // "ab" has 256 already
  CHECK(contains(load_error(t), "model.vocab: id 256 is given to both"));
  t = good;
  t["model"]["vocab"].erase(byte_char(0x0A));
  CHECK(contains(load_error(t), "model.vocab: no token for byte 10"));
  t = good;
  t["added_tokens"] = {{{"id", 256}, {"content", "<s>"}, {"special", true}}};
  CHECK(contains(load_error(t), "added_tokens[0]: id 256 is \"<s>\" here but \"ab\" in model.vocab"));
  t = good;
  t["added_tokens"] = {{{"id", 300}, {"content", "<s>"}, {"lstrip", true}}};
  CHECK(contains(load_error(t), "added_tokens[0] \"<s>\": lstrip true is not supported"));
  // One large id would size the id tables (the fuzzer's find): ids stay below twice the
  // token count plus 1024 (here 2 x 261 + 1024 = 1546).
  t = good;
  t["model"]["vocab"]["zz"] = 2147483000;
  CHECK(contains(load_error(t), "model.vocab[\"zz\"]: expected an id in [0, 1546) (twice the 261 vocabulary "
                                "entries and added tokens, plus 1024), got 2147483000"));
  t = good;
  t["added_tokens"] = {{{"id", 1546}, {"content", "<s>"}, {"special", true}}};
  CHECK(contains(load_error(t), "added_tokens[0]: expected an id in [0, 1546)"));
  t = good;
  t["padding"] = {{"strategy", "BatchLongest"}};
  CHECK(contains(load_error(t), "\"padding\" is set"));
}

TEST_CASE("encode rejects text that is not UTF-8; decode rejects unknown ids") {
  const std::string e = error_of([] { neox().encode("ok \xFF bad"); });
  CHECK(contains(e, "tokenizer '" + kNeoxDir + "tokenizer.json': cannot encode text that is not valid UTF-8"));
  CHECK(contains(e, "at byte 3"));
  CHECK(contains(error_of([] { neox().encode_batch({"fine", "\xC3"}); }), "text 1 (0-based) of the batch"));
  CHECK(contains(error_of([] { neox().decode({5, 50277}); }),
                 "cannot decode token id 50277 at position 1: outside the vocabulary [0, 50277)"));
  CHECK(contains(error_of([] { neox().decode({-1}); }), "cannot decode token id -1"));
}
