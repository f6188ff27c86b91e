// ssm/simba.h: the options of Simba (hierarchical token pruning for Mamba) and their parser.
//
// Simba ("Sparsified State-Space Models are Efficient Highway Networks", arXiv 2505.20698)
// prunes tokens layer by layer so that upper layers process fewer tokens than lower ones
// (a "trapezoid"). The library is split by concept:
//   ssm/simba.h            this file: SimbaOptions, the CLI syntax, the overview below
//   ssm/simba_schedule.h   how many tokens each layer processes (n_ℓ)
//   ssm/simba_score.h      the token scores (Simba's Δy_T criterion and the baselines), top-k
//   ssm/simba_forward.h    the pruned forward pass, the context/continuation protocol, the loss
//   ssm/flops.h            forward FLOPs of dense and pruned runs
//
// What the paper states and what it leaves open is summarised in docs/simba.md;
// every point it leaves open ([UNK] there) is decided in one of these headers, marked
// "Choice:", and made an option where a reasonable alternative exists.
//
// CLI syntax (parse_simba_options): comma-separated key=value items, every key optional,
// spaces around items ignored, each key at most once:
//   keep=0.1,schedule=linear,criterion=simba,start=0,seed=0
//   schedule=custom,ratios=1:0.6:0.3:0.1      (one ratio per layer, ':'-separated)
//   schedule=custom,counts=512:256:128:64     (one token count per layer)
// Keys:
//   keep      ρ, the fraction of the context the last layer keeps, a number in (0, 1]. Default 0.1
//             (the paper's "10 % of tokens at the final layer" [S]).
//   schedule  linear (default, the paper's [S]), uniform, inverted, custom. See ssm/simba_schedule.h.
//   criterion simba (default), simba-abs, simba-l2, random, stride, norm, clip, delta. See
//             ssm/simba_score.h.
//   start     s, an integer >= 0: layers 0..s process the whole context (default 0).
//   seed      an integer >= 0 seeding the `random` criterion (default 0).
//   ratios    schedule=custom only: r_0:r_1:..., each in (0, 1], non-increasing, r_0 = 1.
//   counts    schedule=custom only: c_0:c_1:..., integers >= 1, non-increasing.
// keep and start are not used by schedule=custom (the list says everything).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace simba {

// How a layer ranks its context tokens (ssm/simba_score.h defines each).
enum class SimbaCriterion { Simba, SimbaAbs, SimbaL2, Random, Stride, Norm, Clip, Delta };
// How many context tokens each layer processes (ssm/simba_schedule.h defines each).
enum class SimbaSchedule { Linear, Uniform, Inverted, Custom };

const char* criterion_name(SimbaCriterion c);  // "simba", "simba-abs", ...
const char* schedule_name(SimbaSchedule s);    // "linear", "uniform", "inverted", "custom"
// True for the three criteria computed from the layer's SSM (simba, simba-abs, simba-l2).
bool is_ssm_criterion(SimbaCriterion c);
// True for the criteria that read the layer's MixerTrace: the SSM ones and delta.
bool reads_mixer_trace(SimbaCriterion c);

struct SimbaOptions {
  double keep = 0.1;                               // ρ, in (0, 1]
  SimbaSchedule schedule = SimbaSchedule::Linear;
  SimbaCriterion criterion = SimbaCriterion::Simba;
  int64_t start = 0;                               // s >= 0
  std::vector<double> custom_ratios;               // schedule=custom: r_ℓ per layer, or
  std::vector<int64_t> custom_counts;              //                  n_ℓ per layer (exactly one is set)
  uint64_t seed = 0;                               // criterion=random

  // Throws (naming `source`) if a field is out of range or the custom list is missing,
  // doubled, increasing or misplaced. Layer counts are checked later, against the model
  // (simba_token_counts).
  void validate(const std::string& source) const;
  // The canonical CLI string; parse_simba_options(to_string()) gives these options back.
  std::string to_string() const;
};

// Parses the CLI syntax above; `source` (e.g. "--simba") prefixes every error message,
// e.g. "--simba: keep=1.5: expected a number in (0, 1]".
SimbaOptions parse_simba_options(const std::string& text, const std::string& source = "simba options");

}  // namespace simba
