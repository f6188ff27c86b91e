// tests/test_tokenize_cli.cpp: `simba tokenize` through run_tokenize
// (train/commands.h) and, when it has been built, through the simba binary:
// JSONL records keep their fields and gain "ids" and "decoded", stdin text
// becomes one line of ids, and bad input is reported by file, line and flag.
#include <doctest/doctest.h>

#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tensor/file_io.h"
#include "tests/test_util.h"
#include "train/bpe_tokenizer.h"
#include "train/commands.h"

using namespace simba;
namespace fs = std::filesystem;

namespace {

const TempDir g_tmp("test_tokenize_cli");
const std::string kTokenizer = "tests/fixtures/gpt-neox-tokenizer/tokenizer.json";

std::string text_file(const std::string& name, const std::string& text) {
  const std::string path = g_tmp.file(name);
  write_file_atomic(path, text);
  return path;
}

std::string tokenize_error(const TokenizeArgs& args, const std::string& stdin_text = "") {
  std::istringstream in(stdin_text);
  std::ostringstream out;
  return error_of([&] { run_tokenize(args, in, out); });
}

}  // namespace

TEST_CASE("tokenize JSONL: each record keeps its fields, in order, and gains ids and decoded") {
  const BpeTokenizer tok = BpeTokenizer::from_file(kTokenizer);
  const std::string in = text_file("in.jsonl",
                                   "{\"id\": 7, \"text\": \"Hello world<|endoftext|>\", \"lang\": \"en\"}\n"
                                   "{\"text\": \"caf\\u0065\\u0301   \\u00fcber\"}\n"
                                   "{\"text\": \"\"}\n");
  const std::string outp = g_tmp.file("out.jsonl");
  std::istringstream no_stdin;
  std::ostringstream printed;
  run_tokenize({kTokenizer, in, outp}, no_stdin, printed);
  std::istringstream lines(read_file(outp));
  std::vector<nlohmann::ordered_json> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(nlohmann::ordered_json::parse(line));
  REQUIRE(rows.size() == 3);
  std::vector<std::string> keys;
  for (const auto& [k, v] : rows[0].items()) keys.push_back(k);
  CHECK(keys == std::vector<std::string>{"id", "text", "lang", "ids", "decoded"});
  CHECK(rows[0]["id"] == 7);
  CHECK(rows[0]["ids"].get<std::vector<int64_t>>() == tok.encode("Hello world<|endoftext|>"));
  CHECK(rows[0]["ids"].back() == 0);
  CHECK(rows[0]["decoded"] == "Hello world<|endoftext|>");
  // The decoded string is the NFC form: e + U+0301 came back as U+00E9.
  CHECK(rows[1]["decoded"] == "caf\xC3\xA9   \xC3\xBC" "ber");
  CHECK(rows[2]["ids"].empty());
  CHECK(rows[2]["decoded"] == "");
  CHECK(printed.str() == "tokenize: 3 texts, " +
                             std::to_string(rows[0]["ids"].size() + rows[1]["ids"].size()) + " tokens -> " + outp +
                             "\n");
}

TEST_CASE("tokenize stdin: the whole input is one text, its ids on one line") {
  const BpeTokenizer tok = BpeTokenizer::from_file(kTokenizer);
  const std::string text = "line one\nline two  <|padding|>\n";
  std::istringstream in(text);
  std::ostringstream out;
  run_tokenize({kTokenizer, "", ""}, in, out);
  std::string expected;
  for (int64_t id : tok.encode(text)) expected += (expected.empty() ? "" : " ") + std::to_string(id);
  CHECK(out.str() == expected + "\n");
  CHECK(contains(out.str(), " 1 "));  // <|padding|>
}

TEST_CASE("tokenize errors name the flag, the file and the line") {
  const std::string in = text_file("ok.jsonl", "{\"text\": \"a\"}\n");
  CHECK(contains(tokenize_error({kTokenizer, in, ""}), "--input and --output go together; got only --input"));
  CHECK(contains(tokenize_error({kTokenizer, "", g_tmp.file("o.jsonl")}), "got only --output"));
  CHECK(contains(tokenize_error({g_tmp.file("none.json"), "", ""}), "none.json"));

  const std::string bad_json = text_file("bad.jsonl", "{\"text\": \"a\"}\n{\"text\": \n");
  CHECK(contains(tokenize_error({kTokenizer, bad_json, g_tmp.file("o.jsonl")}),
                 "--input '" + bad_json + "' line 2: not valid JSON"));
  const std::string no_text = text_file("no_text.jsonl", "{\"text\": \"a\"}\n\n");
  CHECK(contains(tokenize_error({kTokenizer, no_text, g_tmp.file("o.jsonl")}), "line 2: not valid JSON"));
  const std::string number = text_file("number.jsonl", "{\"text\": 5}\n");
  CHECK(contains(tokenize_error({kTokenizer, number, g_tmp.file("o.jsonl")}),
                 "line 1: expected an object with a string \"text\", got {\"text\":5}"));
  CHECK(!fs::exists(g_tmp.file("o.jsonl")));  // nothing is written on error

  CHECK(contains(tokenize_error({kTokenizer, "", ""}, "ab\xFF"),
                 "standard input: not valid UTF-8 (ill-formed sequence at byte 2)"));
}

TEST_CASE("the simba binary: tokenize (skipped if not built)") {
  const fs::path exe = simba_binary();
  if (!fs::exists(exe)) {
    MESSAGE("skipped: " << exe.string() << " is not built (build the 'simba' target to run this test)");
    return;
  }
  auto [hcode, help] = run_simba("tokenize --help");
  CHECK(hcode == 0);
  CHECK(contains(help, "--tokenizer"));
  CHECK(contains(help, "separated by single spaces"));

  const std::string text = text_file("stdin.txt", "Hello world<|endoftext|>");
  auto [code, out] = run_simba("tokenize --tokenizer " + kTokenizer + " < " + text);
  CHECK(code == 0);
  std::string expected;
  for (int64_t id : BpeTokenizer::from_file(kTokenizer).encode("Hello world<|endoftext|>"))
    expected += (expected.empty() ? "" : " ") + std::to_string(id);
  CHECK(out == expected + "\n");

  auto [ecode, eout] = run_simba("tokenize --tokenizer " + kTokenizer + " --input " + text);
  CHECK(ecode == 1);
  CHECK(contains(eout, "simba: error: "));
  CHECK(contains(eout, "--input and --output go together"));
}
