// train/cli_eval.cpp: `simba eval`, in two modes.
//
// Dense validation (no --context): the validation loss of a model on a text file, in nats per
// token and bits per byte of the scored text (with the model directory's tokenizer.json, Σ nats /
// ln 2 over the targets divided by the UTF-8 bytes they spell). The file is tokenized with that
// tokenizer, or as bytes, and split exactly as `simba train` splits it (TextData with the same
// --val-fraction), so the number is the held-out loss the training run reported; the windows are
// TextData's deterministic validation tiling, so two models evaluated with the same flags score
// the same tokens.
//
// Simba comparison (--context C1,C2,...): for each context length, the continuation loss and
// FLOPs of the dense model and of Simba pruning (--simba, one row per --criteria entry) on the
// same windows (run_simba_eval, train/simba_eval.h). The flags of one mode are refused in the
// other (CLI11 needs/excludes), so a flag never silently does nothing.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "nn/cross_entropy.h"
#include "tensor/checked_math.h"
#include "tensor/error.h"
#include "tensor/file_io.h"
#include "tensor/reduce.h"
#include "train/byte_tokenizer.h"
#include "train/cli.h"
#include "train/cli_options.h"
#include "train/commands.h"
#include "train/model_dir.h"
#include "train/trainer.h"
#include "train/metrics_log.h"
#include "train/simba_eval.h"

namespace simba {

EvalResult run_eval(const EvalArgs& args, std::ostream& out) {
  SIMBA_CHECK(args.batch >= 1, "--batch: expected a batch size >= 1, got " << args.batch);
  SIMBA_CHECK(args.len >= 1, "--len: expected a window length >= 1, got " << args.len);
  SIMBA_CHECK(args.max_batches >= 1 || args.max_batches == TextData::kAllBatches,
              "--max-batches: expected a number of batches >= 1, got " << args.max_batches);
  check_eval_val_fraction(args.val_fraction);
  check_device(args.device);
  std::shared_ptr<MambaLM> model = load_model_dir(args.model_dir);
  model->to(args.device);
  const std::shared_ptr<const Tokenizer> tokenizer = model_tokenizer(args.model_dir, *model, "eval");
  const TextData data = TextData::from_file(args.data_path, *tokenizer, args.val_fraction);
  const EvalResult r = evaluate(*model, data, args.batch, args.len, args.max_batches);
  // Finite weights can still overflow to an infinite or NaN loss; that is no
  // measurement, so it is an error rather than a printed "nan".
  SIMBA_CHECK_HINT(std::isfinite(r.loss), "eval: the validation loss of the model in '"
                                              << args.model_dir << "' is " << r.loss << ", not a finite number",
                   "the weights are finite but overflow float32 in the forward pass; the checkpoint comes from "
                   "a diverged run, use an earlier one");

  char line[160];
  std::snprintf(line, sizeof line, "validation loss %.4f nats/token | %.4f bits/byte | %lld tokens in %lld batches\n",
                r.loss, r.bits_per_byte, static_cast<long long>(r.tokens), static_cast<long long>(r.batches));
  out << line << std::flush;
  if (!args.json_path.empty()) {
    nlohmann::json j = {{"model", args.model_dir},   {"data", args.data_path},
                        {"split", split_name(Split::Validation)},
                        {"val_fraction", args.val_fraction}, {"batch", args.batch},
                        {"len", args.len},           {"batches", r.batches},
                        {"tokens", r.tokens},        {"loss", r.loss},
                        {"bits_per_byte", r.bits_per_byte}};
    write_file_atomic(args.json_path, j.dump(2) + "\n");
  }
  return r;
}

void add_eval_command(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  auto simba = std::make_shared<SimbaEvalArgs>();
  CLI::App* cmd = app.add_subcommand(
      "eval",
      "Validation loss (nats/token) and bits per byte of a model on a text file (bytes, or the BPE\n"
      "tokens of the model directory's tokenizer.json when it has one).\n"
      "The validation split is the last --val-fraction of the file, as in simba train (1: the whole\n"
      "file, for a held-out test file).\n"
      "With --context: dense vs Simba continuation loss and FLOPs per context length, on windows of\n"
      "context + continuation validation tokens (docs/simba.md).");
  cmd->add_option("--model", args->model_dir, "model directory (config.json + model.safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--data", args->data_path, "text file (read as bytes)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--batch", args->batch, "windows per batch (forward pass)")
      ->check(integer_in(1))
      ->capture_default_str();
  CLI::Option* len =
      cmd->add_option("--len", args->len, "dense mode: window length L (tokens)")->check(integer_in(1))->capture_default_str();
  CLI::Option* max_batches =
      cmd->add_option("--max-batches", args->max_batches, "dense mode: evaluate at most this many batches (default: all)")
          ->check(integer_in(1));
  cmd->add_option("--val-fraction", args->val_fraction,
                  "fraction of the file (its tail) held out for validation; 1: the whole file (a held-out test file)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--json", args->json_path, "also write the result to this JSON file");
  add_device_option(cmd, args->device);
  CLI::Option* context =
      cmd->add_option("--context", simba->contexts,
                      "Simba mode: comma-separated context lengths, e.g. 256,512,1024 (each window is context +\n"
                      "continuation validation tokens)")
          ->delimiter(',')
          ->check(integer_in(1))
          ->excludes(len)
          ->excludes(max_batches);
  cmd->add_option("--continuation", simba->continuation, "Simba mode: continuation length m (the scored tokens)")
      ->check(integer_in(1))
      ->capture_default_str()
      ->needs(context);
  cmd->add_option("--max-windows", simba->max_windows, "Simba mode: windows per context length (at most)")
      ->check(integer_in(1))
      ->capture_default_str()
      ->needs(context);
  cmd->add_option("--simba", simba->simba,
                  "Simba mode: pruning options, e.g. keep=0.1,schedule=linear,criterion=simba,start=0\n"
                  "(all optional; ssm/simba.h lists every key)")
      ->needs(context);
  cmd->add_option("--criteria", simba->criteria,
                  "Simba mode: comma-separated criteria, one row each at --simba's schedule (replaces --simba's\n"
                  "criterion): simba, simba-abs, simba-l2, random, stride, norm, clip, delta")
      ->delimiter(',')
      ->needs(context);
  cmd->add_option("--bootstrap", simba->bootstrap,
                  "Simba mode: resamples of the paired bootstrap 95% interval of each row's difference from dense\n"
                  "(over the windows, which every row shares; docs/experiments.md, Statistics)")
      ->check(integer_in(1))
      ->capture_default_str()
      ->needs(context);
  cmd->add_option("--flops-ratio", simba->flops_ratio,
                  "Simba mode: equal FLOPs instead of equal keep: each row's keep is chosen, per context, so that\n"
                  "its FLOPs ratio to dense is nearest this number in (0, 1] (for comparing criteria and schedules)")
      ->check(CLI::PositiveNumber)
      ->check(CLI::Range(0.0, 1.0))
      ->needs(context);
  cmd->add_option("--csv", simba->csv_path, "Simba mode: also write the table to this CSV file")->needs(context);
  cmd->callback([args, simba, context] {
    if (context->count() == 0) {
      check_batch_budget(args->batch, "--batch", args->len, "--len",
                         MambaConfig::from_json_file(locate_model_dir(args->model_dir).config_path).vocab_size);
      run_eval(*args, std::cout);
      return;
    }
    const int64_t vocab = ByteTokenizer().vocab_size();
    for (int64_t c : simba->contexts)
      check_batch_budget(args->batch, "--batch", checked_add(c, simba->continuation, "--context + --continuation"),
                         "--context + --continuation", vocab);
    simba->model_dir = args->model_dir;
    simba->data_path = args->data_path;
    simba->batch = args->batch;
    simba->val_fraction = args->val_fraction;
    simba->json_path = args->json_path;
    simba->device = args->device;
    run_simba_eval(*simba, std::cout);
  });
}

}  // namespace simba
