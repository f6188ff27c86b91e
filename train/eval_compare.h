// train/eval_compare.h: comparisons across the `simba eval --json` files of several models.
// `simba frontier`, the equal-FLOPs comparison of the Simba paper's RQ1: does a larger model
// pruned by Simba beat the smaller dense models at the same forward FLOPs? `simba compare`, any
// row of one model against any row of another on the same windows (e.g. a Simba-aware
// fine-tuned model against training-free Simba on its base model). And `simba contexts`, RQ2/RQ3
// over a family: every model's pruned rows against its own dense rows, context by context.
//
// Input: `simba eval --context ... --json` files (train/simba_eval.h) of several models of one
// family, all on the same data with the same continuation m and --max-windows, so that every
// row of a context was scored on the same windows (simba eval takes them in order from the start
// of the split). Each file holds, per context, a dense row and pruned rows, each with its
// forward FLOPs per window and every window's loss. The model a row belongs to is the file's
// "model" (its folder name, or the folder above a folder named "checkpoint": runs/family/xl/
// checkpoint reads "xl"); a model's dense row may appear in several files (one per keep ρ) and
// is taken once (the copies must agree).
//
// The dense frontier at one context: the dense points sorted by FLOPs, joined by straight lines
// in log FLOPs. For a pruned point with FLOPs F inside the frontier's range, F_a <= F <= F_b
// between two neighbouring dense points a and b, the frontier's loss on window i is
//   f_i = w·a_i + (1 − w)·b_i,   w = (log F_b − log F) / (log F_b − log F_a)          (1)
// a mix of two models' losses on the same window, so the point's difference from the frontier,
// mean over windows of (p_i − f_i), gets the paired bootstrap interval of train/bootstrap.h
// like every other difference. Negative: the pruned model is below (better than) the dense
// frontier at its FLOPs; the paper's claim for that point holds where the whole interval is
// below zero. A point outside the frontier's FLOPs range has no frontier value.
// The conservative comparison beside it: the point against the smallest dense model whose
// FLOPs are at least F ("ref"), which spends as many FLOPs or more.
// Losses are reported in bits per token (nats / ln 2); for byte-level models bits per byte.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "train/bootstrap.h"

namespace simba {

struct FrontierArgs {
  std::vector<std::string> json;  // --json: simba eval --json files
  int64_t context = 0;            // --context: the context whose rows are compared
  std::string out_prefix;         // --out: writes <prefix>.svg and <prefix>.csv
  std::string title;              // --title; empty: a title naming the context
  int64_t bootstrap = 10000;      // --bootstrap: resamples of each interval
};

// One model's row at the chosen context.
struct FrontierPoint {
  std::string model;         // the model's label (see above)
  std::string method;        // "dense" or the criterion name
  std::string options;       // the row's canonical Simba options
  double flops = 0;          // forward FLOPs per window
  double bits = 0;           // mean bits per continuation token
  std::vector<double> window_bits;  // per window
  // Pruned points only: vs the interpolated dense frontier (1) (has_frontier false outside its
  // range) and vs `ref`, the smallest dense model with FLOPs >= this point's.
  bool has_frontier = false;
  PairedDifference vs_frontier;
  std::string ref;
  PairedDifference vs_ref;
};

// Reads every file, compares, prints the table, writes <prefix>.csv and <prefix>.svg and returns
// the dense points (by FLOPs) followed by the pruned points (in file order). Errors name the
// file: not a simba eval JSON, no rows at --context, a continuation, data file or window count
// that differs from the first file's, two dense rows of one model that differ; and: fewer than
// one dense point, --bootstrap < 1, an empty --out.
std::vector<FrontierPoint> run_frontier(const FrontierArgs& args, std::ostream& out);

// simba compare: pairs of rows, each named FILE:METHOD (the row of METHOD, "dense" or a criterion
// name, at --context in that eval file), a[i] against b[i].
struct CompareArgs {
  std::vector<std::string> a, b;  // --a, --b: FILE:METHOD each, as many of one as of the other
  int64_t context = 0;            // --context
  std::string csv_path;           // --csv (unless empty)
  int64_t bootstrap = 10000;      // --bootstrap
};

struct Comparison {
  FrontierPoint a, b;
  PairedDifference diff;  // mean over windows of a − b, bits per token, and its interval
};

// Prints a table (each row's model, method, FLOPs and bits, and a − b [95% CI]) and writes --csv.
// Errors: no pairs or unequal counts, a FILE:METHOD without ':', a file without that method at
// --context (or with it twice), rows on other windows (as simba frontier), --bootstrap < 1.
std::vector<Comparison> run_compare(const CompareArgs& args, std::ostream& out);

// simba contexts: for each file (one model's simba eval --context run over several contexts),
// every non-dense row against the same file's dense row at its context (paired on that context's
// windows). Table (model, context, windows, dense bits, method, method − dense [95% CI]), CSV and
// an SVG of the differences against the context (log axis), one line per model and method.
struct ContextsArgs {
  std::vector<std::string> json;  // --json
  std::string out_prefix;         // --out: <prefix>.svg and <prefix>.csv
  std::string title;              // --title
  int64_t bootstrap = 10000;      // --bootstrap
};

struct ContextRow {
  std::string model, method;
  int64_t context = 0, windows = 0;
  double dense_bits = 0, bits = 0;
  PairedDifference vs_dense;  // bits per token
};

// Errors: no files, a file with no context that has a dense row and another row, --bootstrap < 1,
// an empty --out; the file errors of simba frontier.
std::vector<ContextRow> run_contexts(const ContextsArgs& args, std::ostream& out);

}  // namespace simba
