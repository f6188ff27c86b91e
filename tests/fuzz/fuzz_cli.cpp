// tests/fuzz/fuzz_cli.cpp: the `simba` option parser, built as
// train/main/simba_main.cpp builds it, fed argv split from the input.
//
// The input is split into arguments at whitespace and NUL bytes (argv cannot
// hold a NUL), after a program name, so a seed reads like a command line.
// The app parses only (tests/cli_parse_only.h): the target covers CLI11's
// parsing and every flag's validator, help and error output (App::exit, as
// main prints them), but never trains, reads a model or writes a file, which a
// fuzzer-chosen --out or --model must not do on the host. The commands' own
// argument checks (run_* in train/) are tested through their library functions
// in tests/test_cli.cpp and tests/test_trainer.cpp.
//
// A command line must either parse or raise CLI::ParseError (or simba::Error
// from a flag's check); anything else escaping the parser is a finding.
#include <cctype>
#include <sstream>
#include <string>
#include <vector>

#include "tensor/error.h"
#include "tests/cli_parse_only.h"
#include "tests/fuzz/fuzz_util.h"
#include "train/cli.h"

using namespace simba;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args{"simba"};
  std::string current;
  for (size_t i = 0; i <= size; ++i) {
    if (i == size || data[i] == 0 || std::isspace(data[i])) {
      if (!current.empty()) args.push_back(current);
      current.clear();
    } else {
      current.push_back(static_cast<char>(data[i]));
    }
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());

  ParseOnlyApp app{"simba: Mamba language models and Simba token pruning, from scratch in C++"};
  app.require_subcommand(1);
  app.fallthrough(false);
  add_all_commands(app);
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    std::ostringstream out, err;  // the help or error text main would print
    const int code = app.exit(e, out, err);
    fuzz_require(code != 0 || !out.str().empty(), "a parse error exits non-zero, or prints help or a version");
  } catch (const ParsedOnly&) {
  } catch (const Error&) {
  }
  return 0;
}
