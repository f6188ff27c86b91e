// train/cli.cpp: the list of the `simba` subcommands (train/cli.h).
#include "train/cli.h"

namespace simba {

void add_all_commands(CLI::App& app) {
  add_train_command(app);
  add_eval_command(app);
  add_generate_command(app);
  add_info_command(app);
  add_forward_command(app);
  add_inspect_command(app);
  add_highway_command(app);
  add_recall_command(app);
  add_curves_command(app);
  add_frontier_command(app);
  add_compare_command(app);
  add_contexts_command(app);
  add_score_command(app);
  add_tokenize_command(app);
  add_init_command(app);
}

}  // namespace simba
