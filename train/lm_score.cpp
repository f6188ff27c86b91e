// train/lm_score.cpp: lm-evaluation-harness style multiple-choice scoring
// (train/lm_score.h).
#include "train/lm_score.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "ssm/simba_forward.h"
#include "tensor/error.h"
#include "tensor/file_io.h"
#include "tensor/json.h"
#include "train/metrics_log.h"
#include "train/simba_eval.h"

namespace simba {

namespace {

using json = nlohmann::json;

// Unicode characters of a UTF-8 string: the bytes that do not continue a sequence.
int64_t utf8_length(const std::string& s) {
  return std::count_if(s.begin(), s.end(), [](char ch) { return (static_cast<unsigned char>(ch) & 0xC0) != 0x80; });
}

bool is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f'; }

// The context and choice ids of one choice (see the header's "tokens").
struct EncodedPair {
  std::vector<int64_t> context, choice;
  int64_t chars = 0;
};

std::vector<EncodedPair> encode_request(const Tokenizer& tokenizer, const ScoreRequest& r,
                                        std::optional<int64_t> eos) {
  size_t cut = r.context.size();
  while (cut > 0 && is_space(r.context[cut - 1])) --cut;
  const std::string context = r.context.substr(0, cut), moved = r.context.substr(cut);
  std::vector<int64_t> context_ids = tokenizer.encode(context);
  if (context_ids.empty()) {
    SIMBA_CHECK_HINT(eos.has_value(), "request on line " << r.line << " has an empty context and the model's config "
                                                         << "has no eos_token_id to stand for it",
                     "give every request a non-empty \"context\"");
    context_ids = {*eos};
  }
  std::vector<EncodedPair> out;
  for (size_t i = 0; i < r.choices.size(); ++i) {
    const std::string choice = moved + r.choices[i];
    const std::vector<int64_t> whole = tokenizer.encode(context + choice);
    const bool prefix = !context.empty() && whole.size() > context_ids.size() &&
                        std::equal(context_ids.begin(), context_ids.end(), whole.begin());
    EncodedPair p{context_ids, {}, utf8_length(choice)};
    p.choice = prefix ? std::vector<int64_t>(whole.begin() + static_cast<int64_t>(context_ids.size()), whole.end())
                      : tokenizer.encode(choice);
    SIMBA_CHECK(!p.choice.empty(), "request on line " << r.line << ": choice " << i << " encodes to no tokens");
    out.push_back(std::move(p));
  }
  return out;
}

int64_t argmax_of(const std::vector<double>& v) {
  return static_cast<int64_t>(std::max_element(v.begin(), v.end()) - v.begin());  // first on ties
}

// Standard error of a mean of n Bernoulli outcomes with mean p (sample variance).
double bernoulli_stderr(double p, int64_t n) { return n > 1 ? std::sqrt(p * (1 - p) / static_cast<double>(n - 1)) : 0.0; }

std::string field_error(const std::string& path, int64_t line, const std::string& what) {
  return "--tasks '" + path + "' line " + std::to_string(line) + ": " + what;
}

}  // namespace

std::vector<ScoreRequest> read_score_tasks(const std::string& path) {
  std::ifstream in(path);
  SIMBA_CHECK(in, "--tasks: cannot open '" << path << "'");
  std::vector<ScoreRequest> requests;
  std::string text;
  for (int64_t line = 1; std::getline(in, text); ++line) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines are allowed
    const json j = parse_json_bounded(text, field_error(path, line, "expected a JSON object"));
    SIMBA_CHECK(j.is_object(), field_error(path, line, "expected a JSON object, got " + std::string(j.type_name())));
    ScoreRequest r;
    r.line = line;
    SIMBA_CHECK(j.contains("context") && j["context"].is_string(),
                field_error(path, line, "\"context\" must be a string"));
    r.context = j["context"].get<std::string>();
    SIMBA_CHECK(j.contains("choices") && j["choices"].is_array() && !j["choices"].empty(),
                field_error(path, line, "\"choices\" must be a non-empty array of strings"));
    for (const json& c : j["choices"]) {
      SIMBA_CHECK(c.is_string(), field_error(path, line, "\"choices\" must be a non-empty array of strings"));
      r.choices.push_back(c.get<std::string>());
    }
    SIMBA_CHECK(j.contains("gold") && j["gold"].is_number_integer(),
                field_error(path, line, "\"gold\" must be an integer index into \"choices\""));
    r.gold = j["gold"].get<int64_t>();
    SIMBA_CHECK(r.gold >= 0 && r.gold < static_cast<int64_t>(r.choices.size()),
                field_error(path, line, "\"gold\" = " + std::to_string(r.gold) + " is not an index into the " +
                                            std::to_string(r.choices.size()) + " choices"));
    if (j.contains("task")) {
      SIMBA_CHECK(j["task"].is_string() && !j["task"].get<std::string>().empty(),
                  field_error(path, line, "\"task\" must be a non-empty string"));
      r.task = j["task"].get<std::string>();
    }
    requests.push_back(std::move(r));
  }
  SIMBA_CHECK(!requests.empty(), "--tasks '" << path << "' holds no requests");
  return requests;
}

RequestScore score_request(const MambaLM& model, const Tokenizer& tokenizer, const ScoreRequest& request,
                           const std::optional<SimbaOptions>& simba) {
  const std::vector<EncodedPair> pairs = encode_request(tokenizer, request, model.config().eos_token_id);
  const int64_t B = static_cast<int64_t>(pairs.size()), c = static_cast<int64_t>(pairs[0].context.size());
  int64_t m = 0;
  for (const EncodedPair& p : pairs) m = std::max(m, static_cast<int64_t>(p.choice.size()));
  const int64_t V = model.config().vocab_size;

  // (B, c + m): the shared context, then each choice, padded with its own last
  // token (any in-vocabulary id would do: no scored row reads a later position).
  std::vector<int64_t> ids;
  ids.reserve(static_cast<size_t>(B * (c + m)));
  for (const EncodedPair& p : pairs) {
    ids.insert(ids.end(), p.context.begin(), p.context.end());
    for (int64_t j = 0; j < m; ++j) ids.push_back(p.choice[std::min<size_t>(j, p.choice.size() - 1)]);
  }
  for (int64_t id : ids)
    SIMBA_CHECK(id >= 0 && id < V, "request on line " << request.line << ": token id " << id
                                                      << " is outside the model's vocabulary [0, " << V << ")");
  SimbaOptions dense;
  dense.keep = 1.0;
  const SimbaResult r = simba_forward(model, Tensor::from_ints({B, c + m}, ids), c, simba.value_or(dense));
  const std::vector<double> logits = r.logits.data().to_vector();  // (B, m, V)

  RequestScore out;
  out.context_tokens = c;
  std::vector<double> loglik, normalised;
  for (int64_t b = 0; b < B; ++b) {
    const EncodedPair& p = pairs[b];
    ChoiceScore s;
    s.tokens = static_cast<int64_t>(p.choice.size());
    s.chars = p.chars;
    s.greedy = true;
    for (int64_t j = 0; j < s.tokens; ++j) {
      const double* row = logits.data() + (b * m + j) * V;
      const double mx = *std::max_element(row, row + V);
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(row[v] - mx);
      const int64_t target = p.choice[j];
      s.loglik += row[target] - mx - std::log(sum);
      s.greedy = s.greedy && std::max_element(row, row + V) - row == target;
    }
    loglik.push_back(s.loglik);
    normalised.push_back(s.loglik / static_cast<double>(std::max<int64_t>(1, s.chars)));
    out.choices.push_back(s);
  }
  out.pred = argmax_of(loglik);
  out.pred_norm = argmax_of(normalised);
  if (simba)
    for (const Tensor& k : r.kept) {
      const std::vector<int64_t> all = k.to_ints();  // (B, n): identical rows, the contexts being identical
      out.kept.emplace_back(all.begin(), all.begin() + k.size(1));
    }
  return out;
}

std::vector<TaskScore> run_score(const ScoreArgs& args, std::ostream& out) {
  const std::vector<ScoreRequest> requests = read_score_tasks(args.tasks_path);
  std::optional<SimbaOptions> simba;
  if (!args.simba.empty()) simba = parse_simba_options(args.simba, "--simba");
  std::shared_ptr<MambaLM> model = load_byte_model(args.model_dir, "score");
  const ByteTokenizer tokenizer;

  std::vector<std::string> order;
  std::map<std::string, TaskScore> tasks;
  std::string records;
  char line[256];
  out << "score: " << requests.size() << " requests from '" << args.tasks_path << "', model '" << args.model_dir
      << "', " << (simba ? "simba " + simba->to_string() : std::string("dense")) << "\n";
  const Stopwatch clock;
  const size_t every = std::max<size_t>(1, requests.size() / 10);
  for (size_t i = 0; i < requests.size(); ++i) {
    const ScoreRequest& req = requests[i];
    const RequestScore s = score_request(*model, tokenizer, req, simba);
    if ((i + 1) % every == 0 || i + 1 == requests.size()) {
      const double elapsed = clock.seconds(), rate = static_cast<double>(i + 1) / std::max(elapsed, 1e-9);
      std::snprintf(line, sizeof line, "  %zu/%zu requests | %.1f requests/s | elapsed %.1fs | ETA %.1fs\n", i + 1,
                    requests.size(), rate, elapsed, static_cast<double>(requests.size() - i - 1) / rate);
      out << line << std::flush;
    }
    if (!tasks.count(req.task)) {
      order.push_back(req.task);
      tasks[req.task].task = req.task;
    }
    TaskScore& t = tasks[req.task];
    ++t.requests;
    t.acc += s.pred == req.gold;
    t.acc_norm += s.pred_norm == req.gold;
    if (!args.output_path.empty()) {
      json rec = {{"line", req.line}, {"task", req.task}, {"gold", req.gold}, {"pred", s.pred},
                  {"pred_norm", s.pred_norm}, {"context_tokens", s.context_tokens}};
      for (const ChoiceScore& cs : s.choices)
        rec["choices"].push_back({{"loglik", cs.loglik}, {"greedy", cs.greedy}, {"tokens", cs.tokens}, {"chars", cs.chars}});
      records += rec.dump() + "\n";
    }
  }

  std::vector<TaskScore> result;
  out << "task                       requests   acc              acc_norm\n";
  json summary = {{"model", args.model_dir}, {"tasks_file", args.tasks_path},
                  {"simba", simba ? json(simba->to_string()) : json(nullptr)}, {"tasks", json::array()}};
  for (const std::string& name : order) {
    TaskScore t = tasks[name];
    t.acc /= static_cast<double>(t.requests);
    t.acc_norm /= static_cast<double>(t.requests);
    t.acc_stderr = bernoulli_stderr(t.acc, t.requests);
    t.acc_norm_stderr = bernoulli_stderr(t.acc_norm, t.requests);
    std::snprintf(line, sizeof line, "%-26s %8lld   %.4f ± %.4f  %.4f ± %.4f\n", t.task.c_str(),
                  static_cast<long long>(t.requests), t.acc, t.acc_stderr, t.acc_norm, t.acc_norm_stderr);
    out << line;
    summary["tasks"].push_back({{"task", t.task}, {"requests", t.requests}, {"acc", t.acc},
                                {"acc_stderr", t.acc_stderr}, {"acc_norm", t.acc_norm},
                                {"acc_norm_stderr", t.acc_norm_stderr}});
    result.push_back(t);
  }
  if (!args.output_path.empty()) write_file_atomic(args.output_path, records);
  if (!args.json_path.empty()) write_file_atomic(args.json_path, summary.dump(2) + "\n");
  return result;
}

}  // namespace simba
