// train/simba_eval.h: the work behind the Simba subcommands, as plain functions:
//   simba eval --context ...   continuation loss and FLOPs, dense vs Simba (and baseline criteria)
//   simba inspect              the kept sets, scores and continuation logits of given ids
//   simba highway              mean |Δy_T(t)| per layer against the distance T − t, dense vs Simba
//   simba recall               continuation loss on a span repeated from distance d, dense vs Simba
// Each train/cli_*.cpp registers the flags and calls the function here with the parsed values,
// so the commands, their output files and their errors are testable without a process
// (tests/test_simba_cli.cpp). The functions check their arguments themselves and name the
// flag in every error (a caller other than the CLI skips CLI11's validators). Each runs the
// model on its `device` (--device: checked first; the model is loaded on the host and moved
// there); what is printed and written are host copies. Simba options
// arrive as the --simba text and are parsed here, so option errors read
// "--simba: keep=1.5: expected a number in (0, 1]". docs/simba.md describes the protocol.
//
// Data. The text file is read with the byte tokenizer and split as `simba train` splits it
// (TextData, --val-fraction); only the validation split is used. For a context c and a
// continuation m, the W = --max-windows (eval) / --windows (highway) windows (at most as many as
// fit) are c + m validation tokens each, window k starting at token k·floor(n / W) of the n-token
// split: non-overlapping, deterministic, spread evenly over the split (context_windows).
// The context is the window's first c tokens, the continuation the remaining m
// (ssm/simba_forward.h). A window longer than the whole split is an error naming both lengths
// and the file ("context longer than the data").
//
// Dense rows are the same protocol with keep=1, which runs every layer on every token and is
// MambaLM::forward bit for bit (tests/test_simba.cpp), so dense and Simba rows differ only in
// pruning; their FLOPs come from the same counter (ssm/flops.h).
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "ssm/simba_forward.h"
#include "train/bootstrap.h"
#include "train/text_data.h"

namespace simba {

// MambaLM::load of `model_dir` (flag --model), checked to have a vocabulary that covers the
// byte tokenizer and no tokenizer.json (the commands that call it read text as bytes, and BPE
// ids fed as bytes would score the wrong text); `command` ("eval", "highway", ...) starts the
// error message.
std::shared_ptr<MambaLM> load_byte_model(const std::string& model_dir, const char* command);

// Layer `layer`'s MixerTrace in a simba_forward run `r` on `ids` (B, c + m) made with keep_trace:
// the SSM inputs u, Δ, A, B, C on the n_ℓ + m rows the layer processed (its kept context tokens in
// original order, then the continuation), recomputed from the layer's input stream gathered at
// those rows, as simba_forward computed them (ssm/simba_forward.h step 2).
MixerTrace simba_layer_trace(const MambaLM& model, const Tensor& ids, const SimbaResult& r, int64_t layer);

// (count, c + m) int64: `count` windows of c + m validation tokens, or all that fit when count is
// TextData::kAllBatches; window i starts at token i·floor(n / count) of the n-token split, so
// the windows are spread evenly over it (a split of documents in path order begins with one
// directory's files: its first windows would sample one kind of text). Errors, naming `flag`
// and the data source: c < 1, m < 0, count < 1, and a window longer than the validation split.
Tensor context_windows(const TextData& data, int64_t c, int64_t m, int64_t count, const std::string& flag);
// The name of that placement, recorded in simba eval's JSON ("window_placement") so that files
// scored on other windows are told apart (files from before it have no such key: their windows
// were the split's first ones).
extern const char* const kWindowPlacement;

// ---------------------------------------------------------------------------------------------
// simba eval --context C1,C2,... [--simba OPTS] [--criteria A,B,...]

struct SimbaEvalArgs {
  std::string model_dir;
  std::string data_path;
  std::vector<int64_t> contexts;        // --context, each >= 1
  int64_t continuation = 128;           // --continuation, m >= 1
  int64_t max_windows = 8;              // --max-windows
  int64_t batch = 16;                   // --batch, windows per forward
  double val_fraction = 0.1;            // --val-fraction
  std::string simba;                    // --simba (ssm/simba.h syntax; "" = defaults)
  std::vector<std::string> criteria;    // --criteria; empty: the criterion of --simba
  int64_t bootstrap = 10000;            // --bootstrap: resamples of each paired interval
  double flops_ratio = 0;               // --flops-ratio: 0 = --simba's keep; else each row's keep
                                        // gives the FLOPs ratio nearest it (keep_for_flops_ratio)
  std::string json_path, csv_path;      // --json, --csv (unless empty)
  Device device;                        // --device
};

// One row of the comparison: one context length and one method.
struct SimbaEvalRow {
  int64_t context = 0;
  std::string method;            // "dense" or a criterion name
  std::string options;           // the canonical options string of the run (keep=1,... for dense)
  std::vector<int64_t> counts;   // n_ℓ, context tokens per layer
  int64_t windows = 0;
  int64_t tokens = 0;            // scored continuation tokens = windows · m
  double loss = 0;               // mean nats per continuation token
  double bits_per_token = 0;     // loss / ln 2
  int64_t flops = 0;             // forward FLOPs per window (one sequence of c + m tokens)
  double flops_ratio = 1;        // flops / the dense row's flops at this context
  std::vector<double> window_loss;  // each window's mean nats per continuation token, in order
  // This row minus the dense row at this context, bits/token, with the paired bootstrap 95 %
  // interval over the windows (train/bootstrap.h); all zeros for the dense row itself.
  PairedDifference vs_dense;
};

// Prints the table to `out` and writes --json / --csv. Rows: for each context in order, the
// dense row, then one per criterion (--criteria, or --simba's), all at --simba's schedule. Every
// row of a context uses the same windows, so each difference from dense is paired.
std::vector<SimbaEvalRow> run_simba_eval(const SimbaEvalArgs& args, std::ostream& out);

// ---------------------------------------------------------------------------------------------
// simba inspect

struct InspectArgs {
  std::string model_dir;
  std::string ids_path;  // safetensors with int64 input_ids (B, L)
  int64_t context = 0;   // C, 1 <= C <= L; the continuation is the last L − C tokens
  std::string simba;     // --simba
  std::string out_path;  // --out
  Device device;         // --device
};

// Runs simba_forward on the ids (every layer scored, ssm/simba_forward.h keep_trace) and
// writes to out_path:
//   kept.<ℓ>    int64 (B, n_ℓ)    original positions of the context tokens layer ℓ processes
//   scores.<ℓ>  float32 (B, n_ℓ)  the criterion's score of each of them, in kept.<ℓ>'s order
//   logits      float32 (B, L − C, V)  row j = position C − 1 + j, predicting ids[:, C + j]
// with __metadata__ {simba: canonical options, context, counts, model}. Returns the result.
SimbaResult run_inspect(const InspectArgs& args);

// ---------------------------------------------------------------------------------------------
// simba highway

struct HighwayArgs {
  std::string model_dir;
  std::string data_path;
  std::string out_prefix;     // writes <prefix>.csv and <prefix>.svg
  int64_t context = 1024;     // T, the window length (no continuation)
  int64_t windows = 8;        // --windows
  int64_t batch = 8;          // --batch, windows per forward
  double val_fraction = 0.1;
  std::string simba;          // --simba: the pruned run's options
  Device device;              // --device
};

// Distance bins: bin 0 is distance 0 (the anchor itself), bin k >= 1 is [2^(k−1), 2^k − 1].
struct HighwayRow {
  int64_t layer = 0;
  std::string mode;           // "dense" or "simba"
  int64_t bin = 0, distance_lo = 0, distance_hi = 0;
  double mean = 0;            // mean over the (window, token) pairs in the bin; NaN if none
  int64_t count = 0;          // (window, token) pairs: tokens the layer processed at that distance
};

// For every window, layer ℓ and token t the layer processes, the contribution vector
// Δy_T(t) (ssm/simba_score.h (Q1)) of that layer's SSM, anchor T = the last context token,
// summarised as mean_d |Δy_T(t)[d]| and averaged per distance bin (distance = original
// position T − t). Dense = keep=1; Simba = --simba. Writes <prefix>.csv (header
// layer,mode,distance_bin,distance_lo,distance_hi,mean,count) and <prefix>.svg (log-log,
// one colour per layer, dense solid, Simba dashed), prints a table, returns the rows.
std::vector<HighwayRow> run_highway(const HighwayArgs& args, std::ostream& out);

// ---------------------------------------------------------------------------------------------
// simba recall: a long-range recall probe
//
// Does pruning cost the model what it read far back? Each probe window is a context of c
// validation tokens followed by a continuation that repeats the context's span of m tokens that
// starts d tokens before the continuation: continuation token c + j is context token c − d + j,
// exactly d positions earlier. A model that carries that span across d predicts the repeat far
// better than fresh text; its continuation loss against d shows how far it carries it, and the
// same windows under Simba and under other criteria (random pruning the control) show what the
// pruned upper layers keep. Every distance uses the same contexts (--max-windows windows of c
// tokens spread over the validation split, as simba eval --context reads them), so
// distances differ only in which span repeats, and every method of a distance sees the same
// windows (paired intervals, train/bootstrap.h).

struct RecallArgs {
  std::string model_dir;
  std::string data_path;
  std::string out_prefix;             // writes <prefix>.csv, <prefix>.json and <prefix>.svg
  int64_t context = 4096;             // --context c
  std::vector<int64_t> distances;     // --distances, each m <= d <= c
  int64_t continuation = 32;          // --continuation m, the repeated span's length
  int64_t max_windows = 16;           // --max-windows
  int64_t batch = 8;                  // --batch
  double val_fraction = 0.1;          // --val-fraction
  std::string simba;                  // --simba: the pruned runs' schedule
  std::vector<std::string> criteria;  // --criteria; empty: simba and random
  int64_t bootstrap = 10000;          // --bootstrap
  Device device;                      // --device
};

struct RecallRow {
  int64_t distance = 0;
  SimbaEvalRow eval;  // context = c; method "dense" or a criterion
};

// contexts (W, c) int64 -> (W, c + m): each row followed by its own tokens [c − d, c − d + m).
// Errors unless 1 <= m <= d <= c.
Tensor recall_windows(const Tensor& contexts, int64_t d, int64_t m);

// Rows: for each distance in order, the dense row, then one per criterion. Prints a table,
// writes <prefix>.csv (distance,method,windows,tokens,loss,bits_per_token,vs_dense_bits,
// ci95_low,ci95_high,flops_ratio,options), <prefix>.json (the rows with their window losses)
// and <prefix>.svg (bits/token against d, log d, one line per method).
std::vector<RecallRow> run_recall(const RecallArgs& args, std::ostream& out);

}  // namespace simba
