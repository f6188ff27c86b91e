// train/lm_score.h: multiple-choice scoring in the shape of EleutherAI's
// lm-evaluation-harness (`simba score`), dense or with Simba pruning the
// context.
//
// Task file: JSONL, one request per line, an object with
//   "context"  string   the prompt, e.g. "Question: ... Answer:"
//   "choices"  [string] the candidate continuations (at least one), e.g. [" yes", " no"]
//   "gold"     integer  the index of the right choice in "choices"
//   "task"     string   optional, the task the request belongs to (default "default")
// Other keys are ignored, so a file can carry ids or metadata of its own.
// docs/score_example.jsonl is an example for byte-level models.
//
// Per request and choice (the harness's loglikelihood request):
//   tokens. Whitespace at the end of the context moves to the front of the
//   choice ("Answer: " + "yes" is scored as "Answer:" + " yes"), since
//   tokenizers attach a space to the word after it. The context's ids are
//   enc(context); the choice's ids are enc(context + choice) minus that
//   prefix when enc(context) is a prefix of it, else enc(choice), so every
//   choice of a request sees exactly the same context ids. An empty context
//   is the config's eos_token_id alone.
//   loglik = Σ_j log p(choice_j | context, choice_<j), the natural-log
//   probabilities of the model's softmax; greedy = every choice token is the
//   argmax of its row.
// Per task: acc = mean over requests of [argmax_i loglik_i == gold];
// acc_norm = the same with loglik_i divided by the choice's length in
// Unicode characters (the harness's length normalisation); each with its
// standard error sqrt(p (1 − p) / (n − 1)). Ties go to the lower index.
//
// Simba (--simba) prunes the context only, with the protocol of
// ssm/simba_forward.h: the choice is the continuation, never pruned, and
// cannot influence which context tokens are kept (kept sets are functions of
// the context alone), so every choice of a request is scored against the
// same pruned context. Without --simba the same forward runs with keep=1,
// which is the dense model bit for bit.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "ssm/mamba_model.h"
#include "ssm/simba.h"
#include "train/byte_tokenizer.h"

namespace simba {

struct ScoreRequest {
  std::string task = "default";
  std::string context;
  std::vector<std::string> choices;
  int64_t gold = 0;
  int64_t line = 0;  // 1-based line in the task file, for messages
};

// Reads a task file (format above). Errors name the file, the line and the field.
std::vector<ScoreRequest> read_score_tasks(const std::string& path);

struct ChoiceScore {
  double loglik = 0;   // Σ log p over the choice's tokens (nats)
  bool greedy = false; // every choice token is its row's argmax
  int64_t tokens = 0;  // the choice's token count
  int64_t chars = 0;   // the choice's length in Unicode characters (after moving whitespace)
};

struct RequestScore {
  std::vector<ChoiceScore> choices;
  int64_t pred = 0;       // argmax of loglik
  int64_t pred_norm = 0;  // argmax of loglik / chars
  int64_t context_tokens = 0;
  // Simba only: per layer, the original positions of the context tokens the
  // layer processed (the same for every choice: see the file comment).
  std::vector<std::vector<int64_t>> kept;
};

// Scores one request: all its choices in one batch (B = number of choices),
// each padded after its end, which causality makes invisible to its scored rows.
RequestScore score_request(const MambaLM& model, const Tokenizer& tokenizer, const ScoreRequest& request,
                           const std::optional<SimbaOptions>& simba);

struct TaskScore {
  std::string task;
  int64_t requests = 0;
  double acc = 0, acc_stderr = 0, acc_norm = 0, acc_norm_stderr = 0;
};

struct ScoreArgs {
  std::string model_dir;    // --model
  std::string tasks_path;   // --tasks
  std::string simba;        // --simba: options (ssm/simba.h syntax); empty = dense
  std::string output_path;  // --output: per-request JSONL, unless empty
  std::string json_path;    // --json: the per-task summary, unless empty
};

// Scores every request, printing progress (every tenth of the file) and the table; writes
// --output / --json, and returns the per-task scores in order of first appearance.
std::vector<TaskScore> run_score(const ScoreArgs& args, std::ostream& out);

}  // namespace simba
