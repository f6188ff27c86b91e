// simba: train, evaluate, inspect and sample Mamba language models, dense or
// pruned with Simba. `simba --help` and `simba <command> --help` list the flags.
//
// main is the program's one error boundary: every exception, whatever threw
// it, ends as one "simba: error: ..." message on stderr and exit status 1
// (--help and --version print and exit 0). Nothing escapes to std::terminate.
#include <filesystem>
#include <iostream>
#include <new>
#include <string>

#include "tensor/blas_core.h"
#include "tensor/error.h"
#include "train/cli.h"

namespace {

int fail(const std::string& message) {
  std::cerr << "simba: error: " << message << "\n";
  return 1;
}

// CLI11 reports an unknown first word as "A subcommand is required" (the word
// counts as an extra argument); name it and the valid commands instead.
void check_command_name(const CLI::App& app, int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') return;
  std::string valid;
  for (const CLI::App* cmd : app.get_subcommands({})) {
    if (cmd->get_name() == argv[1]) return;
    valid += (valid.empty() ? "" : ", ") + cmd->get_name();
  }
  SIMBA_FAIL_HINT("unknown command '" << argv[1] << "'; expected one of: " << valid,
                  "run simba --help for what each command does");
}

int run(int argc, char** argv) {
  CLI::App app{"simba: Mamba language models and Simba token pruning, from scratch in C++"};
  app.require_subcommand(1);
  app.fallthrough(false);
  // Flag errors read like every other error ("--steps: expected ...").
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "simba: error: " + std::string(e.what()) + "\n  hint: run with --help for the flags and their values\n";
  });
  simba::add_all_commands(app);
  try {
    check_command_name(app, argc, argv);
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help/--version are "errors" with exit code 0; CLI11 prints them.
    // Real parse errors keep CLI11's message but exit 1 like every other error.
    const int code = app.exit(e);
    return code == 0 ? 0 : 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  simba::ensure_fast_blas_core(argv);  // may restart the program with OPENBLAS_CORETYPE set
  try {
    return run(argc, argv);
  } catch (const simba::Error& e) {
    return fail(e.what());
  } catch (const std::bad_alloc&) {
    return fail(
        "out of memory\n  hint: the model (config.json), the data or the batch (batch size x sequence length) "
        "is too large for this machine's memory");
  } catch (const std::filesystem::filesystem_error& e) {
    // what() names the operation, the OS's reason and the path(s).
    return fail(e.what());
  } catch (const std::exception& e) {
    return fail(std::string("unexpected error: ") + e.what());
  } catch (...) {
    return fail("unexpected error of unknown type");
  }
}
