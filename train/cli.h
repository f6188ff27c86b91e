// train/cli.h: the subcommands of the `simba` program.
//
// Each subcommand lives in its own train/cli_<name>.cpp and registers itself
// on the CLI11 app: its flags (with help text, defaults and checks) and the
// callback that runs it. train/main/simba_main.cpp only collects them and is
// the one error boundary: a simba::Error inside a command, a flag CLI11
// rejects, or any other exception is printed as "simba: error: ..." and exits
// with 1. Numeric flags are checked by the shared validators of
// train/cli_options.h.
#pragma once

#include <CLI/CLI.hpp>

namespace simba {

void add_train_command(CLI::App& app);     // train (dense or Simba-aware), resume
void add_eval_command(CLI::App& app);      // validation loss / bits per byte; Simba comparison
void add_generate_command(CLI::App& app);  // sample text from a checkpoint
void add_info_command(CLI::App& app);      // describe a checkpoint directory
void add_tokenize_command(CLI::App& app);  // token ids of text with a tokenizer.json
void add_forward_command(CLI::App& app);   // logits, loss and gradients of given ids
void add_inspect_command(CLI::App& app);   // Simba kept sets, scores and logits of given ids
void add_highway_command(CLI::App& app);   // Simba: |Δy_T(t)| against distance, per layer
void add_recall_command(CLI::App& app);    // Simba: loss on a span repeated from distance d
void add_curves_command(CLI::App& app);    // training curves of runs, SVG + CSV
void add_frontier_command(CLI::App& app);  // Simba RQ1: loss against FLOPs of a model family
void add_compare_command(CLI::App& app);   // rows of eval files of several models, paired
void add_contexts_command(CLI::App& app);  // Simba RQ2/RQ3: each model vs its dense, by context
void add_score_command(CLI::App& app);     // multiple-choice task scoring (lm-eval style), dense or Simba
void add_init_command(CLI::App& app);      // a seeded random-init model directory

// Every subcommand above, in the order `simba --help` lists them: what the
// program registers (train/main/simba_main.cpp) and what the CLI fuzzer parses.
void add_all_commands(CLI::App& app);

}  // namespace simba
