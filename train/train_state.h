// train/train_state.h: the checkpoint directory of a training run, and the
// training state in it that lets a resumed run continue bit-identically.
//
// A run keeps its latest checkpoint at OUT/checkpoint/:
//   config.json                 the model's HF MambaConfig
//   model.safetensors           the weights under HF MambaForCausalLM names;
//                               __metadata__ {"format": "pt", "step": "<n>"}
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
// The first two files alone are a plain model directory: MambaLM::load and
// transformers' MambaForCausalLM.from_pretrained read them as they are.
//
// Each file is written atomically, but three files cannot be replaced at once:
// a crash between the writes leaves weights of one step next to optimiser
// moments of another. Both files carry the step, and load_checkpoint refuses a
// checkpoint whose steps differ instead of resuming from a silent mix.
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

// Writes config.json and model.safetensors (stamped with state.step), then
// training_state.safetensors, into `dir` (created if missing).
void save_checkpoint(const std::string& dir, const MambaLM& model, const TrainingState& state);

// Reads all three files. Errors name the file and what is wrong: a missing
// file (a weights-only directory gets a hint to use --init), a metadata entry
// that is absent or malformed, a file that is not a simba training state, or
// steps that differ between model.safetensors and training_state.safetensors.
Checkpoint load_checkpoint(const std::string& dir);

}  // namespace simba
