// train/cli_tokenize.cpp: `simba tokenize`, token ids of text with a Hugging
// Face tokenizer.json (the GPT-NeoX BPE of the Mamba checkpoints).
//
// JSONL in, JSONL out, so that any record format carrying a "text" field can
// be tokenized without losing its other fields; the texts are encoded in
// parallel (BpeTokenizer::encode_batch). Each output line also carries the
// decoded ids, so a reader can see at once what NFC or a lossy decode changed.
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tensor/error.h"
#include "tensor/json.h"
#include "tensor/file_io.h"
#include "train/bpe_tokenizer.h"
#include "train/cli.h"
#include "train/commands.h"
#include "train/utf8_text.h"

namespace simba {

namespace {

using ojson = nlohmann::ordered_json;  // keeps each record's keys in their input order

// The records of a JSONL file: one object with a string "text" per line; a
// final newline is allowed, empty lines elsewhere are not.
std::vector<ojson> read_records(const std::string& path) {
  const std::string content = read_file(path);
  std::vector<ojson> records;
  size_t begin = 0, line = 1;
  while (begin < content.size()) {
    size_t end = content.find('\n', begin);
    if (end == std::string::npos) end = content.size();
    const std::string where = "--input '" + path + "' line " + std::to_string(line);
    ojson record = parse_json_bounded<ojson>(content.substr(begin, end - begin), where);
    SIMBA_CHECK(record.is_object() && record.contains("text") && record["text"].is_string(),
                where << ": expected an object with a string \"text\", got " << record.dump().substr(0, 80));
    records.push_back(std::move(record));
    begin = end + 1;
    ++line;
  }
  return records;
}

}  // namespace

void run_tokenize(const TokenizeArgs& args, std::istream& in, std::ostream& out) {
  SIMBA_CHECK_HINT(args.input_path.empty() == args.output_path.empty(),
                   "--input and --output go together; got only " << (args.input_path.empty() ? "--output" : "--input"),
                   "give both for JSONL files, or neither to read text on stdin and write ids on stdout");
  const BpeTokenizer tokenizer = BpeTokenizer::from_file(args.tokenizer_path);

  if (args.input_path.empty()) {
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const size_t bad = first_invalid_utf8(text);
    SIMBA_CHECK(bad == std::string::npos, "standard input: not valid UTF-8 (ill-formed sequence at byte " << bad << ")");
    const std::vector<int64_t> ids = tokenizer.encode(text);
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
    out << line << "\n";
    return;
  }

  std::vector<ojson> records = read_records(args.input_path);
  std::vector<std::string> texts;
  texts.reserve(records.size());
  for (const ojson& r : records) texts.push_back(r["text"].get<std::string>());
  const std::vector<std::vector<int64_t>> ids = tokenizer.encode_batch(texts);
  std::string output;
  size_t tokens = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    records[i]["ids"] = ids[i];
    records[i]["decoded"] = tokenizer.decode(ids[i]);
    output += records[i].dump() + "\n";
    tokens += ids[i].size();
  }
  write_file_atomic(args.output_path, output);
  out << "tokenize: " << records.size() << " texts, " << tokens << " tokens -> " << args.output_path << "\n";
}

void add_tokenize_command(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize",
      "Token ids of text with a Hugging Face tokenizer.json (GPT-NeoX byte-level BPE, as the\n"
      "state-spaces/mamba-*-hf checkpoints ship it).\n"
      "With --input IN.jsonl --output OUT.jsonl: every line of IN is a JSON object with a string\n"
      "\"text\"; the matching line of OUT is the same object (same keys, same order) plus \"ids\"\n"
      "(array of token ids) and \"decoded\" (the ids decoded back, special tokens kept).\n"
      "Without them: all of stdin (newlines included) is one text, which must be UTF-8, and stdout\n"
      "gets one line: its ids in decimal, separated by single spaces.");
  cmd->add_option("--tokenizer", args->tokenizer_path, "tokenizer.json file")->required()->check(CLI::ExistingFile);
  cmd->add_option("--input", args->input_path, "JSONL file of {\"text\": ...} objects (needs --output)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--output", args->output_path, "JSONL file to write, atomically (needs --input)");
  cmd->callback([args] { run_tokenize(*args, std::cin, std::cout); });
}

}  // namespace simba
