// train/cli_train.cpp: `simba train`, training a Mamba language model on a
// text file with the byte tokenizer (train/trainer.h does the work).
//
// Three ways to start:
//   from scratch   the model of --hidden-size/--layers/... (default: the demo
//                  config) or of --config config.json, freshly initialised
//   --init DIR     the weights of a model directory (config.json +
//                  model.safetensors), with a fresh optimiser and schedule
//   --resume       the run in --out, continued from OUT/checkpoint exactly
//                  where it stopped. It reuses the checkpoint's model and
//                  options; flags typed with --resume override the reporting
//                  ones (--steps, --eval-every, ...), and an optimisation flag
//                  that differs from the checkpoint is an error.
// Any of them with --tokenizer FILE trains on that tokenizer.json's BPE
// tokens instead of bytes (see the --tokenizer help); --resume picks the
// tokenizer up from the checkpoint.
// Any of them with --simba trains with Simba pruning active (see
// train/trainer.h): fine-tuning a dense model is --init DIR --simba ....
// Any of them with --device trains there: the model is built or loaded on the
// host and then moved, and a checkpoint does not record the device, so a run
// may resume on another device than it started on.
// A new run refuses an --out that already holds a checkpoint, so a typo
// cannot overwrite a finished run. Both first finish or discard what a killed
// run left in --out (train/train_state.h recover_checkpoint): a run killed at
// any instant is continued with --resume from its last complete checkpoint,
// and one killed before its first checkpoint completed has none, so it is
// started again without --resume (and --resume says there is nothing to resume).
// Any of them with --gpus N trains data-parallel on N GPUs of this machine:
// the command starts one worker per GPU and waits (train/launcher.h); the
// global batch is the same as without --gpus (train/trainer.h, "Data
// parallelism"), so a run may resume on another number of GPUs. In a worker,
// rank 0 prepares --out (recovering a killed run's checkpoint, caching the
// tokens) before the others look at it.
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "tensor/checked_math.h"
#include "tensor/error.h"
#include "tensor/file_io.h"
#include "train/byte_tokenizer.h"
#include "train/cli.h"
#include "train/cli_options.h"
#include "train/corpus_tokens.h"
#include "train/launcher.h"
#include "train/model_dir.h"
#include "train/nccl_communicator.h"
#include "train/trainer.h"

namespace simba {

namespace {

struct TrainArgs {
  std::string data_path;
  std::string val_data_path;  // --val-data; empty: the tail of --data (--val-fraction)
  TrainOptions options;
  MambaConfig model = demo_model_config();
  std::optional<int64_t> dt_rank;  // default: auto, ceil(hidden_size / 16)
  std::string config_path;
  std::string init_dir;
  std::string simba;  // --simba as typed; parsed into options.simba
  std::string dtype = "float32";  // --dtype as typed, aliases resolved; options.dtype
  std::string tokenizer_path;  // --tokenizer; empty: bytes
  bool resume = false;
  Device device;
  int gpus = 0;  // --gpus; 0: this process trains alone (or is a worker of a launcher, train/launcher.h)
};

const double kInf = std::numeric_limits<double>::infinity();

// The run's training text: bytes, or with a tokenizer its ids, cached in
// OUT/tokens.safetensors (OUT/val_tokens.safetensors for --val-data;
// train/corpus_tokens.h) so a resumed or restarted run does not encode the
// corpus again. Without --val-data the validation split is the tail of
// --data; with it, the whole of --data trains and the whole of --val-data
// validates.
TextData training_data(const TrainArgs& a, const TrainOptions& o, const std::optional<BpeTokenizer>& bpe,
                       const std::string& tokenizer_path, std::ostream& out) {
  auto tokens = [&](const std::string& path, const char* purpose, const std::string& cache) {
    std::error_code ec;
    SIMBA_CHECK_HINT(std::filesystem::file_size(path, ec) != 0 || ec,
                     "text data file '" << path << "' is empty: there is nothing to " << purpose,
                     "pass a UTF-8 text file with at least a few kilobytes of text");
    if (!bpe) return ByteTokenizer().encode(read_file(path));  // read_file names an unreadable file
    make_dirs(o.out_dir);
    return cached_corpus_tokens(path, tokenizer_path, *bpe, o.out_dir + "/" + cache, out);
  };
  std::vector<int64_t> token_bytes = bpe ? bpe->token_byte_counts() : std::vector<int64_t>{};
  std::vector<int64_t> train = tokens(a.data_path, "train on", "tokens.safetensors");
  if (a.val_data_path.empty()) return TextData(std::move(train), o.val_fraction, o.seed, a.data_path, token_bytes);
  return TextData(std::move(train), tokens(a.val_data_path, "validate on (--val-data)", "val_tokens.safetensors"),
                  o.seed, a.data_path + " (validation: " + a.val_data_path + ")", token_bytes);
}

// A BPE run's model needs an embedding row for every token id.
void check_vocab_covers(const MambaLM& model, const BpeTokenizer& bpe, const std::string& tokenizer_path,
                        const std::string& model_source) {
  const int64_t V = model.config().vocab_size;
  SIMBA_CHECK_HINT(V >= bpe.vocab_size(), "--tokenizer: tokenizer '" << tokenizer_path << "' has " << bpe.vocab_size()
                                                                     << " ids, but the model of " << model_source
                                                                     << " has vocab_size " << V,
                   "use a model with vocab_size >= " << padded_vocab_size(bpe.vocab_size())
                                                     << " (the tokenizer's ids rounded up to a multiple of 8)");
}

void check_budget(const TrainOptions& o, const MambaLM& model) {
  check_batch_budget(o.batch_size, "--batch-size", o.seq_len, "--seq-len", model.config().vocab_size);
}

// comm: the worker's communicator under --gpus, else null.
void run_train(const TrainArgs& a, const std::set<std::string>& given, std::ostream& out,
               const std::shared_ptr<Communicator>& comm) {
  const std::string dir = checkpoint_dir(a.options.out_dir);
  check_device(a.device);
  if (!a.resume) a.options.validate();  // before anything in --out changes
  // What writes to --out runs on rank 0 first; the others follow once it is done and find it ready.
  const bool lead = !comm || comm->rank() == 0;
  auto in_turn = [&](const auto& prepare) {
    if (comm && !lead) comm->barrier();
    auto result = prepare();
    if (comm && lead) comm->barrier();
    return result;
  };
  in_turn([&] {
    recover_checkpoint(dir);  // what a killed run left: afterwards dir is complete or absent
    return true;
  });
  if (a.resume) {
    if (!file_exists(dir)) {
      const std::string missing = "--resume: there is no checkpoint to resume at '" + dir + "'";
      SIMBA_CHECK_HINT(!file_exists(a.options.out_dir),
                       missing << ": the run stopped before it completed its first checkpoint, so there is nothing "
                                  "to resume",
                       "start the run again without --resume, with the flags it was started with");
      SIMBA_FAIL_HINT(missing, "--out must be the directory of the run to continue; leave out --resume to start a "
                               "new run");
    }
    const Checkpoint checkpoint = load_checkpoint(dir);
    TrainOptions options =
        TrainOptions::from_json(checkpoint.state.options, "'" + checkpoint.state_path + "' metadata 'options'")
            .overridden_by(a.options, given);
    options.shard_bytes = a.options.shard_bytes;  // not recorded in the checkpoint: this invocation's
    auto model = MambaLM::unset(checkpoint.config);  // restore() fills every parameter
    check_budget(options, *model);
    // The run continues on the tokens it started on: the checkpoint's tokenizer, if it has one.
    std::optional<BpeTokenizer> bpe = load_model_tokenizer(dir);
    const std::string tokenizer_path = dir + "/tokenizer.json";
    TextData data = in_turn([&] { return training_data(a, options, bpe, tokenizer_path, out); });
    Trainer trainer(options, model, std::move(data), a.device, comm);
    trainer.restore(checkpoint);
    trainer.run(out);
    return;
  }
  SIMBA_CHECK_HINT(!std::filesystem::exists(dir),
                   "--out '" << a.options.out_dir << "' already holds a checkpoint ('" << dir << "')",
                   "pass --resume to continue that run, or choose another --out to start a new one");
  std::optional<BpeTokenizer> bpe;
  if (!a.tokenizer_path.empty()) bpe = load_tokenizer_flag(a.tokenizer_path, "--tokenizer");
  std::shared_ptr<MambaLM> model;
  std::string model_source;
  if (!a.init_dir.empty()) {
    model = load_model_dir(a.init_dir, DType::F32, "--init");
    model_source = "--init '" + a.init_dir + "'";
  } else {
    MambaConfig cfg = a.model;
    if (!a.config_path.empty()) {
      cfg = MambaConfig::from_json_file(a.config_path);
      model_source = "--config '" + a.config_path + "'";
    } else {
      cfg.time_step_rank = a.dt_rank.value_or(MambaConfig::auto_time_step_rank(cfg.hidden_size));
      if (bpe) cfg.vocab_size = padded_vocab_size(bpe->vocab_size());
      cfg.validate("the model flags of simba train");
    }
    model = std::make_shared<MambaLM>(cfg, a.options.seed);
  }
  if (bpe) check_vocab_covers(*model, *bpe, a.tokenizer_path, model_source);
  check_budget(a.options, *model);
  TextData data = in_turn([&] { return training_data(a, a.options, bpe, a.tokenizer_path, out); });
  Trainer trainer(a.options, model, std::move(data), a.device, comm);
  if (bpe) trainer.set_tokenizer_json(read_file(a.tokenizer_path));
  trainer.run(out);
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  TrainOptions& o = a->options;
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Train a Mamba language model on a text file (byte tokenizer, vocab 256; or --tokenizer).\n"
      "Writes OUT/checkpoint (config.json + model.safetensors in Hugging Face layout, plus\n"
      "training_state.safetensors for --resume) and OUT/metrics.jsonl.\n"
      "Each checkpoint replaces the previous one as a unit: a run killed at any moment (even\n"
      "kill -9) keeps its last complete checkpoint, and --resume continues from it (the\n"
      "metrics log is cut back to its step). A run killed before its first checkpoint\n"
      "completed is started again without --resume. A checkpoint is written only if the\n"
      "model has not diverged (loss finite and at most 2 ln V nats/token, V the vocabulary\n"
      "size); otherwise the run stops, naming the last good checkpoint.");

  cmd->add_option("--data", a->data_path, "text file to train on (read as bytes)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", o.out_dir, "run directory: OUT/checkpoint, OUT/metrics.jsonl")->required();
  cmd->add_option("--steps", o.steps, "optimiser steps of the whole run")->check(integer_in(1))->capture_default_str();
  cmd->add_option("--batch-size", o.batch_size, "windows per micro-batch (B)")->check(integer_in(1))->capture_default_str();
  cmd->add_option("--seq-len", o.seq_len, "tokens per window (L)")->check(integer_in(1))->capture_default_str();
  cmd->add_option("--grad-accum", o.grad_accum, "micro-batches per optimiser step")
      ->check(integer_in(1))
      ->capture_default_str();
  cmd->add_option("--lr", o.lr, "peak learning rate")
      ->check(number_in(0.0, false, kInf, false, "a finite number > 0", ">0"))
      ->capture_default_str();
  cmd->add_option("--min-lr", o.min_lr, "final learning rate of the cosine decay [default: lr / 10]")
      ->check(number_in(0.0, true, kInf, false, "a finite number >= 0", ">=0"));
  cmd->add_option("--warmup", o.warmup_steps, "linear warmup steps [default: steps / 10]")->check(integer_in(0));
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW weight decay of matrices (never norms, biases, A_log, D)")
      ->check(number_in(0.0, true, kInf, false, "a finite number >= 0", ">=0"))
      ->capture_default_str();
  cmd->add_option("--beta1", o.beta1, "AdamW first-moment decay")
      ->check(number_in(0.0, true, 1.0, false, "a number in [0, 1)", "[0,1)"))
      ->capture_default_str();
  cmd->add_option("--beta2", o.beta2, "AdamW second-moment decay")
      ->check(number_in(0.0, true, 1.0, false, "a number in [0, 1)", "[0,1)"))
      ->capture_default_str();
  cmd->add_option("--grad-clip", o.grad_clip, "max global gradient norm; 0 = no clipping")
      ->check(number_in(0.0, true, kInf, false, "a finite number >= 0", ">=0"))
      ->capture_default_str();
  cmd->add_option("--seed", o.seed, "seed of the model initialisation and the data order")
      ->check(seed_value())
      ->capture_default_str();
  CLI::Option* val_fraction =
      cmd->add_option("--val-fraction", o.val_fraction, "tail of the file held out for validation")
          ->check(number_in(0.0, false, 1.0, false, "a number in (0, 1)", "(0,1)"))
          ->capture_default_str();
  cmd->add_option("--val-data", a->val_data_path,
                  "validate on this text file instead of the tail of --data (which then trains whole)")
      ->check(CLI::ExistingFile)
      ->excludes(val_fraction);
  cmd->add_option("--eval-every", o.eval_every, "steps between validations; 0 = at the start and end only")
      ->check(integer_in(0))
      ->capture_default_str();
  cmd->add_option("--eval-batches", o.eval_batches, "validation batches (of --batch-size windows) per validation")
      ->check(integer_in(1))
      ->capture_default_str();
  cmd->add_option("--save-every", o.save_every, "steps between checkpoints; 0 = at the end only")
      ->check(integer_in(0))
      ->capture_default_str();
  cmd->add_option("--dtype", a->dtype,
                  "float32, or bfloat16 (bf16): mixed precision, forward and backward in bfloat16 on a copy of the "
                  "float32 master weights, which AdamW updates and checkpoints hold")
      ->transform(CLI::CheckedTransformer(std::map<std::string, std::string>{{"float32", "float32"},
                                                                             {"fp32", "float32"},
                                                                             {"bfloat16", "bfloat16"},
                                                                             {"bf16", "bfloat16"}}))
      ->option_text("TEXT:{float32,fp32,bfloat16,bf16}=float32");
  cmd->add_option("--simba", a->simba,
                  "train with Simba pruning: each micro-batch's windows split at a random c into context and "
                  "continuation, loss on the continuation (validation stays dense); keep=0.1,schedule=linear,... "
                  "as for simba eval (docs/simba.md)");
  cmd->add_option("--simba-min-context", o.simba_min_context,
                  "with --simba: smallest context c; c is uniform in [this, seq-len - 1] [default: seq-len / 2]")
      ->check(integer_in(1));
  cmd->add_option("--log-every", o.log_every, "steps between progress lines")->check(integer_in(1))->capture_default_str();
  cmd->add_option("--log-file", o.log_file, "JSONL metrics log [default: OUT/metrics.jsonl]");
  cmd->add_option("--shard-size", o.shard_bytes,
                  "most bytes of tensor data per weights file of a checkpoint; a larger model is saved as "
                  "model-0000k-of-0000n.safetensors shards + model.safetensors.index.json [default: 2GB]; "
                  "applies to this invocation (with --resume too)")
      ->transform(byte_size());
  CLI::Option* device = add_device_option(cmd, a->device);
  cmd->add_option("--gpus", a->gpus,
                  "train data-parallel on this many GPUs of this machine, one worker process each (cuda:0 ..); "
                  "--batch-size stays the global batch and must be a multiple of it; a run may resume on another "
                  "number of GPUs")
      ->check(integer_in(1))
      ->excludes(device);

  CLI::Option* resume = cmd->add_flag(
      "--resume", a->resume,
      "continue the run in --out from its last complete checkpoint, OUT/checkpoint (an error if it has none)");
  CLI::Option* init =
      cmd->add_option("--init", a->init_dir, "start from the weights of this model directory")->check(CLI::ExistingDirectory);
  CLI::Option* config = cmd->add_option("--config", a->config_path, "model config.json (Hugging Face MambaConfig)")
                            ->check(CLI::ExistingFile);
  CLI::Option* tokenizer = cmd->add_option(
      "--tokenizer", a->tokenizer_path,
      "train on the tokens of this Hugging Face tokenizer.json (GPT-NeoX BPE) instead of bytes: the corpus is "
      "tokenized once into OUT/tokens.safetensors (reused while the corpus and tokenizer are unchanged), the "
      "vocabulary is the tokenizer's padded to a multiple of 8, and each checkpoint carries tokenizer.json "
      "(--resume continues with it)");
  tokenizer->excludes(resume);
  init->excludes(resume);
  config->excludes(resume)->excludes(init);
  MambaConfig& m = a->model;
  for (CLI::Option* flag :
       {cmd->add_option("--hidden-size", m.hidden_size, "model width D")
            ->check(integer_in(1, MambaConfig::kMaxHiddenSize))
            ->capture_default_str(),
        cmd->add_option("--layers", m.num_hidden_layers, "Mamba blocks")
            ->check(integer_in(1, MambaConfig::kMaxLayers))
            ->capture_default_str(),
        cmd->add_option("--state-size", m.state_size, "SSM state size N")
            ->check(integer_in(1, MambaConfig::kMaxStateSize))
            ->capture_default_str(),
        cmd->add_option("--expand", m.expand, "inner width factor E")
            ->check(integer_in(1, MambaConfig::kMaxExpand))
            ->capture_default_str(),
        cmd->add_option("--conv-kernel", m.conv_kernel, "causal conv width K")
            ->check(integer_in(1, MambaConfig::kMaxConvKernel))
            ->capture_default_str(),
        cmd->add_option("--dt-rank", a->dt_rank, "rank R of the dt projection [default: ceil(D / 16)]")
            ->check(integer_in(1, MambaConfig::kMaxTimeStepRank))}) {
    flag->group("Model (new runs without --config or --init)");
    flag->excludes(resume)->excludes(init)->excludes(config);
  }

  cmd->callback([a, cmd] {
    std::set<std::string> given;
    for (const CLI::Option* opt : cmd->get_options())
      if (opt->count() > 0) given.insert(opt->get_name());
    if (given.count("--simba")) a->options.simba = parse_simba_options(a->simba, "--simba");
    a->options.dtype = a->dtype == "bfloat16" ? DType::BF16 : DType::F32;
    const TrainOptions& o = a->options;
    // The trainer counts tokens per step as this product (the batch budget, which needs the
    // model's vocabulary, is checked once the model is known).
    const int64_t window_tokens = checked_mul(o.batch_size, o.seq_len, "--batch-size x --seq-len");
    checked_mul(o.grad_accum, window_tokens, "the tokens per optimiser step, --grad-accum x --batch-size x --seq-len");
    if (a->gpus > 0) {
      SIMBA_CHECK_HINT(cuda_compiled_in() && nccl_compiled_in(),
                       "--gpus " << a->gpus << ": this simba was built without the CUDA backend or without NCCL",
                       "rebuild with the CUDA toolkit and NCCL (cmake -DSIMBA_CUDA=ON), or leave out --gpus");
      const int available = cuda_device_count();
      SIMBA_CHECK_HINT(a->gpus <= available,
                       "--gpus " << a->gpus << " is more than the " << available << " CUDA devices of this machine"
                                 << (available == 0 ? " (" + cuda_unavailable_reason() + ")" : ""),
                       "pass --gpus " << (available > 0 ? available : 1) << " or fewer");
      SIMBA_CHECK_HINT(a->options.batch_size % a->gpus == 0 || (a->resume && !given.count("--batch-size")),
                       "--batch-size " << a->options.batch_size << " is not a multiple of --gpus " << a->gpus,
                       "--batch-size counts the windows of a micro-batch over all GPUs, each taking an equal share");
      launch_workers(a->gpus, args_without(own_command_line(), "--gpus"));
      return;
    }
    const std::optional<WorkerEnv> worker = worker_env();
    if (!worker) {
      run_train(*a, given, std::cout, nullptr);
      return;
    }
    a->device = Device{DeviceType::CUDA, worker->local_rank};
    auto comm = std::make_shared<NcclCommunicator>(worker->rank, worker->world_size, worker->nccl_id,
                                                   worker->local_rank);
    std::ostream discard(nullptr);  // workers other than rank 0 print nothing
    run_train(*a, given, worker->rank == 0 ? std::cout : discard, comm);
  });
}

}  // namespace simba
