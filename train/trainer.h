// train/trainer.h: training a Mamba language model on a text stream.
//
// One optimiser step (Trainer::train_step):
//   1. lr = warmup-cosine schedule at this step (nn/lr_schedule.h)
//   2. grad_accum micro-batches of batch_size random windows of seq_len
//      tokens, each contributing (mean cross-entropy) / grad_accum to the
//      gradient, so the step follows the mean loss over all
//      grad_accum·batch_size windows, as one batch of that size would
//   3. global gradient norm clipped to grad_clip (measured before clipping)
//   4. AdamW with weight decay on the matrices only: norms, biases, A_log and
//      D are not decayed (is_no_decay_parameter)
// If the gradient norm is not finite, no parameter changes: the update itself
// skips (the norm and the clipping factor are computed on the model's device,
// and a non-finite norm makes the factor NaN, on which the optimiser's kernels
// write nothing), and the host stops the run with an error naming that step.
//
// Devices. The model trains where its parameters are (Trainer's `device`):
// the model is built (or loaded) on the host and moved there, so CPU and GPU
// runs start from the same numbers. A step reads one number on the host, the
// gradient norm (it tells whether the step was sound), and reads it one step
// late: train_step queues the copy of step s's norm and checks it in step s+1
// after queuing that step's forward and backward (Trainer::check_step), so
// the device goes from one step to the next without waiting for the host. A
// failed step is reported there, or where the run's state is read first
// (save_checkpoint, Trainer::run's progress lines, validations and its end).
// Everything else stays on the device. The training losses stay there too,
// one float64 per micro-batch (StepStats::losses), until Trainer::run reads
// the steps' losses in one copy (mean_losses) for a progress line, a
// validation or a checkpoint, and checks them then: a step whose loss is not
// finite has a non-finite gradient as well (the cross-entropy of finite
// logits is finite, and its gradient softmax − onehot is NaN wherever a logit
// is not), so it is stopped by the norm before it updates anything, and a
// checkpoint is written only after the losses since the last one were read
// and found finite. On a CUDA device each micro-batch goes up through a
// pinned staging buffer (tensor/cuda_device.h cuda_upload_staged) without the
// host waiting for the copy. Checkpoints hold host copies (save_safetensors copies
// device tensors to the host), so they do not depend on the device: a run
// saved on a GPU resumes on the CPU and the other way round.
//
// A good checkpoint: Trainer::save_checkpoint writes the checkpoint of step s
// only if
//   1. the training loss of every step since the last checkpoint was finite
//      (a step whose gradient norm is not updates nothing and check_step,
//      which save_checkpoint calls first, stops the run there; Trainer::run
//      reads and checks the losses themselves before it saves),
//   2. every parameter is finite, and
//   3. the loss of the weights being saved, the mean cross-entropy of the
//      first validation batch, is finite and at most 2 ln V: twice the loss
//      of a uniform guess over the vocabulary of V tokens (11.09 nats for
//      bytes). A fresh model starts near ln V and a learning one goes below
//      it; a diverged one is far above the bound, or NaN.
// Rule 3 is needed because a step's training loss is taken before its
// update: after one update with an absurd learning rate every training loss
// so far is fine but the weights are not. The bound depends on V only, so a
// resumed run judges each checkpoint exactly as the run that never stopped.
// Otherwise training stops with an error that names the last good checkpoint
// and its step, which stays on disk unchanged: every checkpoint on disk has
// passed the rule, so it loads and evaluates to a finite loss.
//
// Trainer::run adds the rest of a run: validation at the start, every
// eval_every steps and at the end (loss and bits per byte), a progress line
// every log_every steps, a JSONL record per step and per validation (the log
// first cut back to the run's starting step, train/metrics_log.h; the step
// records are written when their losses are read, before each progress line,
// validation and checkpoint, so the file is in step order), and a
// checkpoint every save_every steps and at the end (train/train_state.h).
//
// Simba-aware training (--simba): each micro-batch's windows are split at
// one point c into a context (the first c tokens, pruned as docs/simba.md §3
// describes) and a continuation (the other L − c tokens); the loss is the
// mean cross-entropy of the continuation given the pruned context
// (continuation_loss of simba_forward, differentiable in every parameter; the
// kept sets are constants of the step). c is uniform in
// [simba_min_context, L − 1] and a pure function of (seed, step, micro-batch)
// (simba_split_point), so it needs no state in the checkpoint. Validation
// stays dense, so its numbers compare with dense runs.
//
// Mixed precision (--dtype bfloat16): the model given to the Trainer stays
// float32 and is the master copy: the optimiser updates it, clipping measures
// its gradients, validation and checkpoints use it. Forward and backward run
// on a bfloat16 copy of it (every activation and weight gradient bfloat16,
// accumulating in float32 inside the kernels); after backward the copy's
// gradients are widened into the master's, and each update rounds the new
// master values into the copy in the same pass (Optimizer::set_bfloat16_copies:
// one launch for the model, not a copy a tensor). So an update smaller than a
// weight's bfloat16 step still accumulates, the AdamW state stays float32, a
// checkpoint is the same float32 model whatever --dtype was, and a resumed
// bfloat16 run is bit-identical to one that never stopped (the copy is a
// function of the master). float32 is the default: on the CPU the bfloat16
// kernels widen their operands and gain nothing; on a GPU bfloat16 GEMMs run
// on the tensor cores.
//
// Data parallelism: a Trainer given a Communicator (train/communicator.h)
// of world size W is rank r of a data-parallel run: every rank holds the whole
// model and optimiser state and takes the same steps, each on its share of the
// batch. The batch is global: --batch-size B counts the windows of a
// micro-batch over all ranks (B must be a multiple of W), and every rank draws
// the whole micro-batch of B windows from the data cursor, as a single process
// would, then keeps rows [r·B/W, (r+1)·B/W). So a step sees the same windows
// whatever W is, the data cursor is the same on every rank and equal to the
// single-process one, and a checkpoint saved by W ranks resumes on any W' that
// divides B (the options, the cursor and the checkpoint files do not depend on
// W). The gradients are averaged over the ranks in buckets, each bucket as soon
// as the last micro-batch's backward has finished its gradients, while that
// backward goes on (train/gradient_buckets.h); the mean of the ranks' mean losses over equal
// shares is the mean over the whole batch, so the averaged gradient is that of
// the single-process step up to the order of the float additions. Clipping
// measures the averaged gradient, so every rank clips and updates alike, and
// the micro-batch losses are averaged the same way (StepStats::losses is the
// global loss). At construction rank 0's parameters are broadcast, so the
// ranks start equal even if their models were built apart. Rank 0 alone
// prints, writes the metrics log and writes checkpoints; every rank runs the
// validations and the checkpoint checks on its identical weights, so all take
// the same decisions (stop, diverged) without exchanging them, and the other
// ranks wait for rank 0's checkpoint write and stop if it failed. A Trainer
// without a Communicator is the plain single-process one (world size 1, all
// of the above a no-op); W = 1 gives bit-identical results.
//
// Determinism: the kernels are deterministic, so the same options, model and
// data give bit-identical parameters. A checkpoint holds every piece of state
// a step reads (parameters, AdamW moments and step counts, the step, which
// fixes the schedule position, and the data cursor with its generator), so a
// run stopped at step K and resumed reaches step N with the same bits as a run
// that never stopped.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "nn/lr_schedule.h"
#include "nn/optim.h"
#include "ssm/mamba_model.h"
#include "ssm/simba.h"
#include "tensor/cuda_device.h"
#include "tensor/readback.h"
#include "train/communicator.h"
#include "train/metrics_log.h"
#include "train/text_data.h"
#include "train/train_state.h"

namespace simba {

// The model `simba train` builds when given no --config or --init: small
// enough to learn visibly in a few minutes on two CPU cores. V 256 (bytes),
// D 128, 4 layers, N 16, E 2, K 4, R = auto (ceil(D/16) = 8), tied head.
MambaConfig demo_model_config();

// Every knob of a training run. Field comments give the default and the
// `simba train` flag; validate() names the flag in its errors.
struct TrainOptions {
  // --- optimisation ---
  int64_t batch_size = 16;   // --batch-size: windows per micro-batch (B)
  int64_t seq_len = 256;     // --seq-len: tokens per window (L)
  int64_t grad_accum = 1;    // --grad-accum: micro-batches per optimiser step
  int64_t steps = 1000;      // --steps: optimiser steps of the whole run
  // --lr: peak learning rate. Tuned on the demo config and the KJV text:
  // validation bits/byte after 200 steps was 2.14 at 2e-3, 2.05 at 4e-3 and
  // 2.03 from 6e-3 to 1.2e-2; after 800 steps 1.796 at 4e-3, 1.787 at 6e-3 and
  // 1.782 at 1e-2: 6e-3 is on the plateau, and going higher gains little.
  double lr = 6e-3;
  std::optional<double> min_lr;          // --min-lr: final learning rate; default lr / 10
  std::optional<int64_t> warmup_steps;   // --warmup: linear warmup steps; default steps / 10
  double weight_decay = 0.1; // --weight-decay: AdamW decay of the decay group
  double beta1 = 0.9;        // --beta1: AdamW first-moment decay
  double beta2 = 0.95;       // --beta2: AdamW second-moment decay
  double grad_clip = 1.0;    // --grad-clip: max global gradient norm; 0 = no clipping
  uint64_t seed = 1337;      // --seed: model initialisation and data order
  double val_fraction = 0.1; // --val-fraction: tail of the data held out for validation
  std::optional<SimbaOptions> simba;          // --simba: train with pruning active; default dense
  // --dtype: float32, or bfloat16 for mixed precision (see "Mixed precision" above).
  DType dtype = DType::F32;
  std::optional<int64_t> simba_min_context;   // --simba-min-context: smallest context c; default seq_len / 2

  // --- reporting and checkpoints (a resumed run may change these) ---
  int64_t eval_every = 100;  // --eval-every: steps between validations; 0 = start and end only
  int64_t eval_batches = 16; // --eval-batches: validation batches of batch_size windows
  int64_t save_every = 100;  // --save-every: steps between checkpoints; 0 = at the end only
  int64_t log_every = 10;    // --log-every: steps between progress lines
  std::string out_dir = "runs/train";  // --out: OUT/checkpoint and OUT/metrics.jsonl
  std::string log_file;      // --log-file: the JSONL metrics log; default OUT/metrics.jsonl
  // --shard-size: most bytes of tensor data per weights file of a checkpoint
  // (nn/model_weights.h). Not recorded in the checkpoint, so not in to_json:
  // it says how files are cut, not what they hold, and each invocation's applies.
  uint64_t shard_bytes = kDefaultShardBytes;

  double resolved_min_lr() const { return min_lr.value_or(lr / 10.0); }
  int64_t resolved_warmup() const { return warmup_steps.value_or(steps / 10); }
  int64_t resolved_simba_min_context() const { return simba_min_context.value_or(seq_len / 2); }
  std::string resolved_log_file() const { return log_file.empty() ? out_dir + "/metrics.jsonl" : log_file; }

  // Throws on any value out of range, naming the flag, its value and the
  // allowed range (e.g. "--min-lr must be in [0, --lr] = [0, 0.01], got 0.1").
  void validate() const;

  // Every field under its flag name without dashes (batch_size, ...), with
  // min_lr, warmup_steps and simba_min_context resolved and simba as its
  // canonical string (null when dense), so that a checkpoint records the exact
  // schedule the run followed.
  nlohmann::json to_json() const;
  // Reads to_json's output; `source` names it in errors (missing key, wrong type).
  static TrainOptions from_json(const nlohmann::json& j, const std::string& source);

  // Throws, naming the flag and both values, if these options would not
  // continue the trajectory of the run that `saved` describes: every
  // optimisation field must be equal (after resolving defaults), and steps
  // must be at least `saved_step`. Reporting and checkpoint fields may differ.
  void check_resumable(const TrainOptions& saved, int64_t saved_step, const std::string& source) const;

  // A copy of these options in which the field of every flag named in
  // `flags` (e.g. "--lr") is taken from `given`: a resumed run starts from
  // its checkpoint's options and applies only the flags typed on the command
  // line. Names of other flags (--data, --resume, ...) are ignored.
  TrainOptions overridden_by(const TrainOptions& given, const std::set<std::string>& flags) const;
};

// The split point c of micro-batch `micro_batch` of optimiser step `step`
// (0-based) under --simba: c = m + h mod (L − m) with m = resolved_simba_min_context() and
// h = splitmix64(splitmix64(splitmix64(seed) ^ step) ^ micro_batch), so c is
// in [m, L − 1] (the modulo bias, below (L − m) / 2^64, is immaterial).
// splitmix64 is the 64-bit finaliser of Steele, Lea and Flood's SplitMix (as
// in Java's SplittableRandom): a bijection in which every input bit flips
// about half of the output bits, so neighbouring steps get unrelated c.
int64_t simba_split_point(const TrainOptions& options, int64_t step, int64_t micro_batch);

// True for the parameters AdamW must not decay: norm weights (...norm.weight,
// norm_f.weight), every bias, A_log and D. Decaying them would pull norms
// towards zero gain and the SSM's decay rates and skip gain towards zero.
bool is_no_decay_parameter(const std::string& name);

struct StepStats {
  int64_t step = 0;         // steps completed, this one included
  // float64 (grad_accum,) on the model's device: each micro-batch's mean training loss
  // (nats/token), left there; mean_losses reads the step's loss.
  Tensor losses;
  double lr = 0.0;          // learning rate used by this step
  // float64, one element, on the model's device: the global gradient norm before clipping, left
  // there like the losses.
  Tensor grad_norm;
  double seconds = 0.0;     // wall time of the step
  int64_t tokens = 0;       // tokens in the step's windows (with --simba, context included)
};

struct ValidationResult {
  double loss = 0.0;           // mean cross-entropy, nats per token
  double bits_per_byte = 0.0;  // Σ nats / ln 2 / Σ bytes of the targets' text (= loss / ln 2 for bytes)
  int64_t tokens = 0;          // predicted tokens scored
  int64_t batches = 0;         // validation batches run
};

// The training loss of each step, the mean of its micro-batch losses
// (StepStats::losses) taken in double, all read from the device in one copy.
std::vector<double> mean_losses(const std::vector<Tensor>& micro_batch_losses);

// Mean cross-entropy of `model` over data.validation_batches(B, L, max_batches),
// averaged over tokens (the last batch may hold fewer windows), on the device
// the model is on.
ValidationResult evaluate(const MambaLM& model, const TextData& data, int64_t B, int64_t L, int64_t max_batches);

class Trainer {
 public:
  // A run starting at step 0 with `model` as it is, moved to `device`. `data`
  // should be split with options.val_fraction and seeded with options.seed,
  // as `simba train` does. Throws if the options are invalid, a split is too
  // short for one window, or a token id is outside the model's vocabulary.
  // `comm` makes this Trainer one rank of a data-parallel run ("Data
  // parallelism" above); null: a single process. Throws if --batch-size is
  // not a multiple of its world size.
  Trainer(TrainOptions options, std::shared_ptr<MambaLM> model, TextData data, Device device = cpu(),
          std::shared_ptr<Communicator> comm = nullptr);

  // Continues the run saved in `checkpoint` (train/train_state.h
  // load_checkpoint): parameters, AdamW state, step and data cursor. Throws
  // if it was written for another model config, its optimiser state does not
  // fit this model, its data cursor does not fit this data, or
  // check_resumable fails. After a throw the Trainer may be partly restored:
  // discard it.
  void restore(const Checkpoint& checkpoint);
  // The tokenizer.json text of a run on BPE tokens (simba train --tokenizer),
  // written into every checkpoint beside config.json; restore() takes the
  // checkpoint's. Empty (the default): the byte tokenizer, no file.
  void set_tokenizer_json(std::string json_text) { tokenizer_json_ = std::move(json_text); }
  // Writes checkpoint_dir(options.out_dir) as one unit (train/train_state.h)
  // if it is a good checkpoint (the rule in the file comment); otherwise
  // throws, naming the last good checkpoint, and writes nothing.
  void save_checkpoint();

  // Forward and backward of one step's micro-batches into the parameters'
  // .grad (cleared first); returns the micro-batches' losses (StepStats::losses)
  // without reading them. Draws from the data cursor. With W ranks: this
  // rank's share of each micro-batch, gradients and losses averaged over ranks.
  Tensor accumulate_gradients();
  // One optimiser step (see the file comment). Checks the previous step first
  // (check_step): throws if that one's gradient norm was not finite.
  StepStats train_step();
  // Waits for the last step's gradient norm, if it has not been read yet, and
  // throws if it is not finite: that step updated nothing, and the Trainer is
  // back at the step before it (step(), the optimiser's counts; its data cursor
  // stays past the batches drawn). train_step calls it one step late, so that
  // the device never waits for the host; save_checkpoint and Trainer::run call
  // it before they read the run's state.
  void check_step();
  ValidationResult validate() const;

  // train_step until options.steps, with validation, logging and checkpoints;
  // human-readable output goes to `out`. Returns the final validation.
  ValidationResult run(std::ostream& out);

  int64_t step() const { return step_; }
  Device device() const { return device_; }
  const TrainOptions& options() const { return options_; }
  const MambaLM& model() const { return *model_; }  // the float32 master under --dtype bfloat16
  // The model forward and backward run on: model() itself, or its bfloat16 copy.
  const MambaLM& compute_model() const { return compute_ ? *compute_ : *model_; }
  const AdamW& optimizer() const { return *optimizer_; }
  const TextData& data() const { return data_; }
  const Communicator& communicator() const { return *comm_; }

 private:
  double elapsed_seconds() const { return elapsed_before_ + session_clock_.seconds(); }
  // This rank's share of the next training micro-batch, on the model's device.
  Batch next_batch();
  // The hint of an error that stops training: what to change, and which
  // checkpoint on disk is the last good one. step_lr: the failing step's lr.
  std::string stopped_hint(double step_lr) const;
  // Mixed precision: compute_'s parameters <- model_'s, rounded to bfloat16 (at the start and
  // after loading a checkpoint; each step's optimiser update writes them after that).
  void refresh_compute_copy();

  TrainOptions options_;
  Device device_;
  std::shared_ptr<MambaLM> model_;
  std::shared_ptr<MambaLM> compute_;  // the bfloat16 copy under --dtype bfloat16, else null
  TextData data_;
  WarmupCosineSchedule schedule_;
  std::unique_ptr<AdamW> optimizer_;
  int64_t step_ = 0;  // steps taken, the unchecked one included
  // The last step until check_step has read its gradient norm.
  struct UncheckedStep {
    int64_t step;
    double lr;
    Tensor losses;
  };
  std::optional<UncheckedStep> unchecked_;
  Readback norm_read_;  // the unchecked step's gradient norm on its way to the host
  int64_t last_saved_step_ = -1;  // -1: no checkpoint written or loaded yet
  double elapsed_before_ = 0.0;   // seconds trained by earlier processes of this run
  Stopwatch session_clock_;       // since this process started (or resumed) the run
  std::string tokenizer_json_;    // set_tokenizer_json
  std::shared_ptr<Communicator> comm_;  // never null: SingleProcessCommunicator for a plain run
};

}  // namespace simba
