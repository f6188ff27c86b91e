// train/cli_score.cpp: `simba score`, multiple-choice scoring of a model on
// lm-evaluation-harness style requests, dense or with Simba pruning the
// context (train/lm_score.h).
#include <iostream>
#include <memory>

#include "train/cli.h"
#include "train/lm_score.h"

namespace simba {

void add_score_command(CLI::App& app) {
  auto args = std::make_shared<ScoreArgs>();
  CLI::App* cmd = app.add_subcommand(
      "score",
      "Multiple-choice scoring as lm-evaluation-harness does it: for every request of a JSONL task file\n"
      "({\"context\": str, \"choices\": [str, ...], \"gold\": int, \"task\": str (optional)}), each choice's\n"
      "summed log-likelihood given the context and whether it is the greedy continuation; per task,\n"
      "accuracy (acc) and accuracy with log-likelihoods divided by the choice's length in characters\n"
      "(acc_norm), with standard errors. --simba prunes the context only; the choices are never pruned\n"
      "and cannot change which context tokens are kept. Example: docs/score_example.jsonl.");
  cmd->add_option("--model", args->model_dir, "model directory (config.json + model.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--tasks", args->tasks_path, "JSONL task file (format above)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--simba", args->simba, "prune the context with these Simba options, e.g. keep=0.1 (default: dense)");
  cmd->add_option("--output", args->output_path,
                  "write one JSON line per request: its choices' loglik, greedy, tokens and chars, pred, pred_norm");
  cmd->add_option("--json", args->json_path, "write the per-task summary as JSON");
  cmd->callback([args] { run_score(*args, std::cout); });
}

}  // namespace simba
