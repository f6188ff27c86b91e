// bench/peer_table.h: bench_gpu --peer FILE: simba's rows beside the same rows of the official
// Mamba kernels (state-spaces/mamba's selective_scan_cuda with Dao-AILab/causal-conv1d, "the
// peer"), measured in the same run, with the speed ratio, each side's peak memory, each side's
// fraction of the hardware limit and the GPU performance issue's target.
//
// The peer is built and timed outside the repository (its sources and its build are not part of
// simba; bench/RESULTS.md says how it was run). Its results reach bench_gpu as a JSON Lines file
// with one object per row, labelled exactly as bench_gpu labels its own rows:
//   {"bench": "train_bf16", "config": "B", "shape": "V50280 D768 x24 B8 L1024",
//    "median_ms": 71.2, "peak_bytes": 7.1e9}          (peak_bytes optional)
// Rows are paired by (bench, config, shape); a row on one side only is listed as unpaired.
//
// Limits, from rows of the same run: the scan rows are compared with the measured copy
// bandwidth (copy_d2d) by the bytes the scan must move at least (the simba row's
// bytes_per_call, the same problem for both sides); the model rows with the measured matrix
// peak of their dtype (gemm rows): a training step does about 6 · P FLOPs per token, a forward
// 2 · P (P parameters, the tied head counted once, as it is one product per token: the matrix
// products dominate; the scan, the convolution and the norms are left out), so
//   fraction = k · P · tokens / time / matrix peak.
// Decode has no limit column (each step reads every weight once; its limit is latency).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace simba {

// The lines of a results file, each checked to be an object with string "bench", "config" and
// "shape" and a positive number "median_ms" (and, if present, a non-negative number
// "peak_bytes"). Throws an error naming the file, the line and what was expected.
std::vector<nlohmann::json> read_result_lines(const std::string& path);

// The limits measured in the run (0: not measured).
struct HardwareLimits {
  double copy_GBps = 0.0;        // copy_d2d, bytes read + written per second / 1e9
  double gemm_f32_TFLOPs = 0.0;  // gemm f32 (TF32 off)
  double gemm_bf16_TFLOPs = 0.0; // gemm bf16
};
HardwareLimits limits_of(const std::vector<nlohmann::json>& simba_rows);

// One paired row. Fractions and peaks are negative where they do not apply or were not recorded.
struct PeerComparison {
  std::string bench, config, shape;
  double simba_ms = 0.0, peer_ms = 0.0;
  double speedup = 0.0;  // peer_ms / simba_ms: > 1 means simba is faster
  double simba_peak_MiB = -1.0, peer_peak_MiB = -1.0;
  double simba_fraction = -1.0, peer_fraction = -1.0;  // of the limit (header)
  std::string limit;             // "copy", "f32 GEMM", "bf16 GEMM" or ""
  double speedup_target = 0.0;   // the minimum speedup (0: none)
  double fraction_target = 0.0;  // the minimum simba fraction (scan rows; 0: none)
  bool memory_target = false;    // the issue asks simba's peak <= the peer's
  bool met = true;               // every target of the row holds
};

// Pairs the rows (failed simba rows are skipped) in simba's order; `unpaired` gets the labels
// of rows found on one side only.
std::vector<PeerComparison> compare_with_peer(const std::vector<nlohmann::json>& simba_rows,
                                              const std::vector<nlohmann::json>& peer_rows,
                                              const HardwareLimits& limits, std::vector<std::string>& unpaired);

void print_peer_table(const std::vector<PeerComparison>& rows, const std::vector<std::string>& unpaired,
                      const HardwareLimits& limits, const std::string& peer_file, std::FILE* out);

}  // namespace simba
