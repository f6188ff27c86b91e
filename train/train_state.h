// train/train_state.h: the checkpoint directory of a training run, and the
// training state in it that lets a resumed run continue bit-identically.
//
// A run keeps its latest checkpoint at OUT/checkpoint/:
//   config.json                 the model's HF MambaConfig
//   model.safetensors           the weights under HF MambaForCausalLM names;
//                               __metadata__ {"format": "pt", "step": "<n>"}
//                               (above --shard-size: shards + their index,
//                               each shard with that metadata; nn/model_weights.h)
//   training_state.safetensors  the optimiser state (Optimizer::state_tensors
//                               names: "step", "exp_avg.<param>", ...) and
//                               __metadata__ strings:
//     format           "simba-training-state"
//     version          "1"
//     step             optimiser steps taken, as in model.safetensors
//     data_cursor      TextData::cursor_state(): the data generator and the
//                      batches drawn. Training draws random numbers from this
//                      generator only (the model's init generator is done once
//                      the model exists), so it is every RNG state there is.
//     options          the run's TrainOptions as JSON (train/trainer.h)
//     elapsed_seconds  wall time trained so far, for the ETA and the logs
//   tokenizer.json              a run trained with --tokenizer: that file, as
//                               it was, so the directory carries its tokenizer
//                               (simba generate and eval use it; absent = bytes)
// The first two files alone are a plain model directory: MambaLM::load and
// transformers' MambaForCausalLM.from_pretrained read them as they are.
//
// The checkpoint is replaced as one unit, so that a kill (SIGKILL, power
// loss) at any instant leaves the old checkpoint or the new one, whole.
// save_checkpoint, with D = OUT/checkpoint:
//   1. writes the three files into D.tmp.<pid>; each is fsynced, and so is
//      the directory (tensor/file_io.h write_file_atomic)
//   2. renames D.tmp.<pid> to D.new and fsyncs OUT: the commit point. D.new
//      exists only when it is complete.
//   3. renames D to D.old (if D exists), then D.new to D, and fsyncs OUT
//   4. removes D.old
// D itself is therefore either absent or a complete checkpoint at every
// instant, and a reader (simba eval --model D, transformers) never sees a
// mix. A kill leaves one of these states, which recover_checkpoint resolves
// deterministically (the newest complete checkpoint wins):
//   D.tmp.<pid> present   an unfinished write: removed (D, if any, stays)
//   D.new present         a committed checkpoint not yet switched in (killed
//                         between steps 2 and 3, or between the two renames
//                         of step 3, when D is absent): it becomes D, as in 3-4
//   D.old present, no D.new  the switch finished: D.old is removed
// Each file still carries the step and load_checkpoint checks that the steps
// agree, which catches a directory assembled by hand from two checkpoints.
//
// Test hook (tests/test_crash_consistency.cpp): with the environment variable
// SIMBA_TEST_KILL_IN_CHECKPOINT set to a stage name, the process kills itself
// with SIGKILL when the sequence reaches that stage: "weights" (D.tmp.<pid>
// holds config.json and model.safetensors only), "staged" (after 2),
// "moved-old" (between the two renames of 3) or "switched" (before 4).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "nn/optim.h"
#include "nn/safetensors.h"
#include "ssm/mamba_model.h"

namespace simba {

struct TrainingState {
  int64_t step = 0;
  std::string data_cursor;
  nlohmann::json options = nlohmann::json::object();
  double elapsed_seconds = 0.0;
  NamedTensors optimizer;  // Optimizer::state_tensors()
  std::string tokenizer_json;  // the run's tokenizer.json, verbatim; empty: the byte tokenizer
};

// Everything a checkpoint directory holds, read and cross-checked.
struct Checkpoint {
  std::string dir;
  MambaConfig config;
  TensorMap weights;  // HF names
  std::string weights_path;
  std::string state_path;
  TrainingState state;
};

// OUT/checkpoint: where a run with output directory `out_dir` keeps its checkpoint.
std::string checkpoint_dir(const std::string& out_dir);

// Writes config.json, model.safetensors (stamped with state.step),
// training_state.safetensors and (if any) tokenizer.json as a new checkpoint `dir`, replacing the one
// there as one unit (the sequence above).
// The weights are sharded above shard_bytes (MambaLM::save).
void save_checkpoint(const std::string& dir, const MambaLM& model, const TrainingState& state,
                     uint64_t shard_bytes = kDefaultShardBytes);

// Resolves what a killed save_checkpoint left next to `dir` (the table
// above), so that afterwards `dir` is the newest complete checkpoint or does
// not exist, and no dir.tmp.*, dir.new or dir.old remains. simba train runs
// it before it reads or writes `dir`, and save_checkpoint before it writes;
// no other process may be writing `dir` meanwhile.
void recover_checkpoint(const std::string& dir);

// Reads all three files. Errors name the file and what is wrong: a missing
// file (a weights-only directory gets a hint to use --init), a metadata entry
// that is absent or malformed, a file that is not a simba training state, or
// steps that differ between model.safetensors and training_state.safetensors.
Checkpoint load_checkpoint(const std::string& dir);

}  // namespace simba
