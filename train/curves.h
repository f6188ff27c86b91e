// train/curves.h: `simba curves`, the training curves of one or more runs as a plot a person
// opens (SVG), a CSV and a summary table, from the runs' metrics.jsonl (train/metrics_log.h).
//
// For each run it reads the "start" record (the options: tokens per step = batch_size ·
// seq_len · grad_accum), the training records (those with "loss": mean nats per token of the
// step) and the validation records (those with "val_bpb"). The plot has tokens seen on the x
// axis (step · tokens per step, so runs with other batch shapes line up) and bits on the y axis:
// validation bits per byte as a solid line with dots, the training loss in bits per token
// (loss / ln 2) as a dashed line of the same colour, one colour per run. For byte-level models a
// token is a byte and both read in bits per byte. A resumed run's file holds each step once
// (MetricsLog), so every record is used as it is.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace simba {

struct CurvesArgs {
  std::vector<std::string> metrics;  // --metrics: one metrics.jsonl per run
  std::vector<std::string> labels;   // --labels: one per run; empty: each file's parent folder
  std::string out_prefix;            // --out: writes <prefix>.svg and <prefix>.csv
  std::string title;                 // --title; empty: "training curves"
};

struct RunCurve {
  std::string label;
  int64_t tokens_per_step = 0;
  std::vector<int64_t> train_step, val_step;
  std::vector<double> train_bits;  // loss / ln 2, bits per token
  std::vector<double> val_bpb;     // validation bits per byte
};

// Parses one metrics.jsonl. Errors name the file and the line: not a JSON object, no "start"
// record before the first step record, a "start" record without the batch options, a "loss"
// or "val_bpb" that is not a finite number, and a file with no training or validation record.
RunCurve read_run_curve(const std::string& path, const std::string& label);

// Reads every run, writes <prefix>.svg and <prefix>.csv (run,step,tokens,kind,value with kind
// "train_bits_per_token" or "val_bits_per_byte"), prints a table (run, steps, tokens, last
// training bits/token, last and best validation bits/byte), returns the curves. Errors: no
// --metrics, a --labels count other than the runs', an empty --out.
std::vector<RunCurve> run_curves(const CurvesArgs& args, std::ostream& out);

}  // namespace simba
