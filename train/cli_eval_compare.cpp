// train/cli_eval_compare.cpp: the flags of `simba frontier`, `simba compare` and `simba contexts`
// (the work is in train/eval_compare.h).
#include <iostream>
#include <memory>

#include "train/cli.h"
#include "train/eval_compare.h"

namespace simba {

void add_frontier_command(CLI::App& app) {
  auto args = std::make_shared<FrontierArgs>();
  CLI::App* cmd = app.add_subcommand(
      "frontier",
      "RQ1, equal FLOPs: continuation loss against forward FLOPs per window of several models' simba eval\n"
      "--json files (same data, --continuation and --max-windows). Compares every pruned point with the\n"
      "dense frontier (dense models joined in log FLOPs) and with the smallest dense model of at least its\n"
      "FLOPs, each with a paired bootstrap 95% interval. Writes <out>.svg and <out>.csv, prints the table.");
  cmd->add_option("--json", args->json, "simba eval --json files, any number per model")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--context", args->context, "the context length whose rows are compared")
      ->required()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--out", args->out_prefix, "output path prefix: writes <out>.svg and <out>.csv")->required();
  cmd->add_option("--title", args->title, "the plot's title");
  cmd->add_option("--bootstrap", args->bootstrap, "resamples of each paired bootstrap interval")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->callback([args] { run_frontier(*args, std::cout); });
}

void add_compare_command(CLI::App& app) {
  auto args = std::make_shared<CompareArgs>();
  CLI::App* cmd = app.add_subcommand(
      "compare",
      "Rows of simba eval --json files compared pairwise on their shared windows: each --a FILE:METHOD\n"
      "against the --b FILE:METHOD in the same position (e.g. a fine-tuned model's simba row against its\n"
      "base model's), the mean difference in bits per token with a paired bootstrap 95% interval.");
  cmd->add_option("--a", args->a, "FILE:METHOD rows (METHOD: dense or a criterion name)")->required();
  cmd->add_option("--b", args->b, "FILE:METHOD rows, one per --a")->required();
  cmd->add_option("--context", args->context, "the context length of the rows")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--csv", args->csv_path, "also write the table to this CSV file");
  cmd->add_option("--bootstrap", args->bootstrap, "resamples of each paired bootstrap interval")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->callback([args] { run_compare(*args, std::cout); });
}

void add_contexts_command(CLI::App& app) {
  auto args = std::make_shared<ContextsArgs>();
  CLI::App* cmd = app.add_subcommand(
      "contexts",
      "RQ2/RQ3 over a family: for each simba eval --context --json file (one model), every row minus that\n"
      "model's dense row at the same context, with a paired bootstrap 95% interval. Writes <out>.svg (the\n"
      "differences against the context length) and <out>.csv, prints the table.");
  cmd->add_option("--json", args->json, "simba eval --context --json files, one per model")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", args->out_prefix, "output path prefix: writes <out>.svg and <out>.csv")->required();
  cmd->add_option("--title", args->title, "the plot's title");
  cmd->add_option("--bootstrap", args->bootstrap, "resamples of each paired bootstrap interval")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->callback([args] { run_contexts(*args, std::cout); });
}

}  // namespace simba
