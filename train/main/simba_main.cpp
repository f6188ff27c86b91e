// simba: train, evaluate, inspect and sample Mamba language models, dense or
// pruned with Simba. `simba --help` and `simba <command> --help` list the flags.
#include <iostream>

#include "tensor/blas_core.h"
#include "train/cli.h"
#include "tensor/error.h"

int main(int argc, char** argv) {
  simba::ensure_fast_blas_core(argv);  // may restart the program with OPENBLAS_CORETYPE set
  CLI::App app{"simba: Mamba language models and Simba token pruning, from scratch in C++"};
  app.require_subcommand(1);
  app.fallthrough(false);
  simba::add_train_command(app);
  simba::add_eval_command(app);
  simba::add_generate_command(app);
  simba::add_info_command(app);
  simba::add_tokenize_command(app);
  simba::add_forward_command(app);
  simba::add_inspect_command(app);
  simba::add_highway_command(app);
  simba::add_score_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const simba::Error& e) {
    std::cerr << "simba: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
