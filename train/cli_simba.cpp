// train/cli_simba.cpp: `simba inspect`, `simba highway` and `simba recall`, the commands that look
// inside a Simba-pruned forward pass (the comparison of losses is `simba eval --context`).
//
//   inspect  which context tokens each layer keeps, their scores, and the continuation logits,
//            for given ids, written to a safetensors file (run_inspect)
//   highway  how strongly tokens at each distance reach the anchor's SSM output, per layer,
//            dense vs Simba, as a CSV and an SVG plot (run_highway)
//   recall   the continuation loss on a span repeated from distance d, dense vs Simba vs other
//            criteria, as a table, CSV, JSON and an SVG plot (run_recall)
// All parse --simba with the syntax of ssm/simba.h; the work and the checks live in
// train/simba_eval.h.
#include <iostream>
#include <memory>

#include "tensor/checked_math.h"
#include "train/byte_tokenizer.h"
#include "train/cli.h"
#include "train/cli_options.h"
#include "train/simba_eval.h"

namespace simba {

void add_inspect_command(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* cmd = app.add_subcommand(
      "inspect",
      "The kept sets, scores and continuation logits of a Simba-pruned forward on given ids.\n"
      "Writes 'kept.<l>' (int64 (B, n_l): original positions of the context tokens layer l processes),\n"
      "'scores.<l>' (float32 (B, n_l): their scores under the criterion) and 'logits' (float32\n"
      "(B, L - C, V): position C - 1 + j predicting token C + j).");
  cmd->add_option("--model", args->model_dir, "model directory (config.json + model.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--ids", args->ids_path, "safetensors file holding int64 'input_ids' of shape (B, L)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--context", args->context,
                  "context length C, 1 <= C <= L: the anchor is token C - 1, the continuation the last L - C tokens")
      ->required()
      ->check(integer_in(1));
  cmd->add_option("--simba", args->simba,
                  "pruning options, e.g. keep=0.1,schedule=linear,criterion=simba,start=0 (all optional;\n"
                  "ssm/simba.h lists every key)");
  cmd->add_option("--out", args->out_path, "output safetensors file (written atomically)")->required();
  add_device_option(cmd, args->device);
  cmd->callback([args] { run_inspect(*args); });
}

void add_highway_command(CLI::App& app) {
  auto args = std::make_shared<HighwayArgs>();
  CLI::App* cmd = app.add_subcommand(
      "highway",
      "Per layer, the mean magnitude of Δy_T(t) (what token t contributes to the anchor's SSM output)\n"
      "against the distance T - t, in the dense and the Simba-pruned model, over validation windows.\n"
      "Writes <out>.csv and <out>.svg (log-log plot: dense solid, Simba dashed).");
  cmd->add_option("--model", args->model_dir, "model directory (config.json + model.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--data", args->data_path, "text file (read as bytes)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", args->out_prefix, "output path prefix: writes <out>.csv and <out>.svg")->required();
  cmd->add_option("--context", args->context, "window length T (the anchor is its last token)")
      ->check(integer_in(1))
      ->capture_default_str();
  cmd->add_option("--windows", args->windows, "validation windows to average over (at most)")
      ->check(integer_in(1))
      ->capture_default_str();
  cmd->add_option("--batch", args->batch, "windows per forward pass")->check(integer_in(1))->capture_default_str();
  cmd->add_option("--val-fraction", args->val_fraction,
                  "fraction of the file (its tail) held out for validation; 1: the whole file (a held-out test file)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--simba", args->simba, "the pruned run's options (ssm/simba.h syntax; default keep=0.1 linear)");
  add_device_option(cmd, args->device);
  cmd->callback([args] {
    check_batch_budget(args->batch, "--batch", args->context, "--context", ByteTokenizer().vocab_size());
    run_highway(*args, std::cout);
  });
}

void add_recall_command(CLI::App& app) {
  auto args = std::make_shared<RecallArgs>();
  CLI::App* cmd = app.add_subcommand(
      "recall",
      "Long-range recall probe: windows of --context validation tokens followed by a continuation that\n"
      "repeats the context's --continuation tokens starting d tokens back, for each d of --distances;\n"
      "continuation loss per d, dense vs Simba vs --criteria (random pruning by default), with paired\n"
      "bootstrap 95% intervals. Writes <out>.csv, <out>.json and <out>.svg (loss against d).");
  cmd->add_option("--model", args->model_dir, "model directory (config.json + model.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--data", args->data_path, "text file (read as bytes)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", args->out_prefix, "output path prefix: writes <out>.csv, <out>.json and <out>.svg")
      ->required();
  cmd->add_option("--context", args->context, "context length c (tokens before the repeat)")
      ->check(integer_in(1))
      ->capture_default_str();
  cmd->add_option("--distances", args->distances,
                  "comma-separated increasing distances d, each --continuation <= d <= --context, e.g.\n"
                  "64,256,1024,4096")
      ->required()
      ->delimiter(',')
      ->check(integer_in(1));
  cmd->add_option("--continuation", args->continuation, "length m of the repeated span (the scored tokens)")
      ->check(integer_in(1))
      ->capture_default_str();
  cmd->add_option("--max-windows", args->max_windows, "contexts to probe (at most)")
      ->check(integer_in(1))
      ->capture_default_str();
  cmd->add_option("--batch", args->batch, "windows per forward pass")->check(integer_in(1))->capture_default_str();
  cmd->add_option("--val-fraction", args->val_fraction,
                  "fraction of the file (its tail) held out for validation; 1: the whole file (a held-out test file)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--simba", args->simba, "the pruned runs' options (ssm/simba.h syntax; default keep=0.1 linear)");
  cmd->add_option("--criteria", args->criteria,
                  "comma-separated criteria, one row each at --simba's schedule (default: simba,random)")
      ->delimiter(',');
  cmd->add_option("--bootstrap", args->bootstrap, "resamples of each paired bootstrap interval")
      ->check(integer_in(1))
      ->capture_default_str();
  add_device_option(cmd, args->device);
  cmd->callback([args] {
    check_batch_budget(args->batch, "--batch",
                       checked_add(args->context, args->continuation, "--context + --continuation"),
                       "--context + --continuation", ByteTokenizer().vocab_size());
    run_recall(*args, std::cout);
  });
}

}  // namespace simba
