// train/cli_curves.cpp: the flags of `simba curves` (the work is in train/curves.h).
#include <iostream>
#include <memory>

#include "train/cli.h"
#include "train/curves.h"

namespace simba {

void add_curves_command(CLI::App& app) {
  auto args = std::make_shared<CurvesArgs>();
  CLI::App* cmd = app.add_subcommand(
      "curves",
      "Training curves of one or more runs from their metrics.jsonl: validation bits/byte (solid) and\n"
      "training loss in bits/token (dashed) against tokens seen, one colour per run. Writes <out>.svg\n"
      "and <out>.csv and prints the last and best values.");
  cmd->add_option("--metrics", args->metrics, "metrics.jsonl files, one per run (simba train writes OUT/metrics.jsonl)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--labels", args->labels, "comma-separated run names, one per --metrics (default: each file's folder)")
      ->delimiter(',');
  cmd->add_option("--out", args->out_prefix, "output path prefix: writes <out>.svg and <out>.csv")->required();
  cmd->add_option("--title", args->title, "the plot's title");
  cmd->callback([args] { run_curves(*args, std::cout); });
}

}  // namespace simba
