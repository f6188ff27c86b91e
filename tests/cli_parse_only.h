// tests/cli_parse_only.h: a CLI11 app that parses and checks a command line
// but runs no command (tests/test_trainer.cpp, tests/fuzz/fuzz_cli.cpp).
#pragma once

#include <CLI/CLI.hpp>

namespace simba {

struct ParsedOnly {};  // thrown by ParseOnlyApp once a command line has parsed

// CLI11 calls the top-level app's pre_callback() after every flag has been
// parsed and checked (validators, requirements, leftover arguments) and before
// any command's callback, so throwing there stops a command line that parses
// fine from running its command. Replacing the commands' callbacks instead
// would free the flag values while CLI11 still writes them: each
// train/cli_<name>.cpp keeps them in a shared_ptr owned by its callback.
class ParseOnlyApp : public CLI::App {
 public:
  using CLI::App::App;
  void pre_callback() override { throw ParsedOnly{}; }
};

}  // namespace simba
