// tests/test_score.cpp: `simba score` (train/lm_score.h): the task file's
// errors, every log-likelihood against a brute-force sum over `simba forward`
// logits, batching of choices, and leak-free Simba scoring.
#include <doctest/doctest.h>

#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "nn/safetensors.h"
#include "ssm/mamba_model.h"
#include "tensor/file_io.h"
#include "train/commands.h"
#include "train/lm_score.h"

#include "tests/test_util.h"

using namespace simba;
using json = nlohmann::json;

namespace {

const TempDir g_tmp("test_score");

// A random byte-level model saved as a model directory.
std::string byte_model_dir(const std::string& name, int64_t layers) {
  MambaConfig c;
  c.vocab_size = 256;
  c.hidden_size = 24;
  c.num_hidden_layers = layers;
  c.state_size = 4;
  c.time_step_rank = MambaConfig::auto_time_step_rank(c.hidden_size);
  const std::string dir = g_tmp.file(name);
  MambaLM(c, 7).save(dir);
  return dir;
}

std::string write_tasks(const std::string& name, const std::string& text) {
  const std::string path = g_tmp.file(name);
  write_file_atomic(path, text);
  return path;
}

const char* kTasks =
    R"({"task": "a", "context": "In the beginning God created the", "choices": [" heaven", " earth and sea", "x"], "gold": 0}
{"task": "b", "context": "And God said, Let there be ", "choices": ["light", "darkness"], "gold": 1, "id": 17}

{"context": "Jesus", "choices": [" wept."], "gold": 0}
{"task": "a", "context": "Thou shalt not", "choices": [" kill.", " eat.", " sing", " café"], "gold": 3}
)";

// log p(ids[c..]) summed, from the logits `simba forward` writes for ids alone.
double forward_loglik(const std::string& model_dir, const std::vector<int64_t>& ids, int64_t c, bool* greedy) {
  const std::string ids_path = g_tmp.file("ids.safetensors"), out_path = g_tmp.file("fwd.safetensors");
  const int64_t L = static_cast<int64_t>(ids.size());
  save_safetensors(ids_path, {{"input_ids", Tensor::from_ints({1, L}, ids)}});
  run_forward({model_dir, ids_path, out_path, DType::F32, cpu()});
  const std::vector<double> logits = load_safetensors(out_path).at("logits").to_vector();  // (1, L, V)
  const int64_t V = static_cast<int64_t>(logits.size()) / L;
  double sum = 0;
  *greedy = true;
  for (int64_t t = c; t < L; ++t) {
    const double* row = logits.data() + (t - 1) * V;
    double mx = row[0];
    int64_t best = 0;
    for (int64_t v = 1; v < V; ++v)
      if (row[v] > mx) mx = row[v], best = v;
    double z = 0;
    for (int64_t v = 0; v < V; ++v) z += std::exp(row[v] - mx);
    sum += row[ids[t]] - mx - std::log(z);
    *greedy = *greedy && best == ids[t];
  }
  return sum;
}

std::vector<int64_t> bytes_of(const std::string& s) { return ByteTokenizer().encode(s); }

}  // namespace

TEST_CASE("score: every log-likelihood equals the brute-force sum over simba forward's logits; acc by hand") {
  const std::string dir = byte_model_dir("dense", 2);
  const std::string tasks = write_tasks("tasks.jsonl", kTasks), output = g_tmp.file("out.jsonl");
  std::ostringstream log;
  const std::vector<TaskScore> scores = run_score({dir, tasks, "", output, g_tmp.file("summary.json")}, log);

  std::vector<json> records;
  std::istringstream lines(read_file(output));
  for (std::string l; std::getline(lines, l);) records.push_back(json::parse(l));
  const std::vector<ScoreRequest> requests = read_score_tasks(tasks);
  REQUIRE(records.size() == 4);
  REQUIRE(requests.size() == 4);
  std::map<std::string, std::pair<int, int>> hits;  // task -> (acc hits, requests)
  for (size_t i = 0; i < requests.size(); ++i) {
    const ScoreRequest& r = requests[i];
    // The harness's split: trailing whitespace of the context starts the choice.
    std::string context = r.context, moved;
    while (!context.empty() && context.back() == ' ') moved.insert(moved.begin(), ' '), context.pop_back();
    std::vector<double> ll;
    for (size_t k = 0; k < r.choices.size(); ++k) {
      std::vector<int64_t> ids = bytes_of(context + moved + r.choices[k]);
      bool greedy = false;
      const double want = forward_loglik(dir, ids, static_cast<int64_t>(context.size()), &greedy);
      const json& got = records[i]["choices"][k];
      CHECK(got["loglik"].get<double>() == doctest::Approx(want).epsilon(1e-6));
      CHECK(got["greedy"].get<bool>() == greedy);
      CHECK(got["tokens"].get<int64_t>() == static_cast<int64_t>(ids.size() - context.size()));
      ll.push_back(want);
    }
    const int64_t pred = std::max_element(ll.begin(), ll.end()) - ll.begin();
    CHECK(records[i]["pred"].get<int64_t>() == pred);
    hits[r.task].first += pred == r.gold;
    hits[r.task].second += 1;
  }
  // " café" is 5 characters but 6 bytes: acc_norm divides by characters.
  CHECK(records[3]["choices"][3]["chars"] == 5);
  REQUIRE(scores.size() == 3);  // tasks in order of first appearance
  CHECK(scores[0].task == "a");
  CHECK(scores[1].task == "b");
  CHECK(scores[2].task == "default");
  for (const TaskScore& t : scores) {
    CHECK(t.requests == hits[t.task].second);
    CHECK(t.acc == doctest::Approx(static_cast<double>(hits[t.task].first) / hits[t.task].second));
  }
  const json summary = json::parse(read_file(g_tmp.file("summary.json")));
  CHECK(summary["tasks"].size() == 3);
  CHECK(contains(log.str(), "4/4 requests"));
}

TEST_CASE("score: a request's choices batched together score as each choice alone, dense and Simba") {
  const std::string dir = byte_model_dir("batch", 3);
  const std::shared_ptr<MambaLM> model = MambaLM::load(dir);
  ScoreRequest all;
  all.context = "And the earth was without form, and void; and darkness was upon the face of the deep.";
  all.choices = {" And the Spirit", " x", " of God moved upon the face of the waters."};
  for (const std::optional<SimbaOptions>& simba :
       {std::optional<SimbaOptions>(), std::optional<SimbaOptions>(parse_simba_options("keep=0.2"))}) {
    const RequestScore together = score_request(*model, ByteTokenizer(), all, simba);
    for (size_t k = 0; k < all.choices.size(); ++k) {
      ScoreRequest one = all;
      one.choices = {all.choices[k]};
      const RequestScore alone = score_request(*model, ByteTokenizer(), one, simba);
      CHECK(together.choices[k].loglik == doctest::Approx(alone.choices[0].loglik).epsilon(1e-6));
      CHECK(together.choices[k].greedy == alone.choices[0].greedy);
    }
  }
}

TEST_CASE("score: Simba pruning is leak-free, the choices never change the kept context") {
  const std::string dir = byte_model_dir("leak", 3);
  const std::shared_ptr<MambaLM> model = MambaLM::load(dir);
  const SimbaOptions opt = parse_simba_options("keep=0.1,criterion=simba");
  ScoreRequest a;
  a.context = "In the beginning God created the heaven and the earth. And the earth was without form";
  a.choices = {", and void.", " and"};
  const RequestScore ra = score_request(*model, ByteTokenizer(), a, opt);
  const int64_t c = static_cast<int64_t>(a.context.size());
  REQUIRE(ra.kept.size() == 3);
  CHECK(static_cast<int64_t>(ra.kept[0].size()) == c);
  CHECK(static_cast<int64_t>(ra.kept[2].size()) < c / 2);  // really pruned
  for (const std::vector<std::string>& other :
       {std::vector<std::string>{"!"}, {" zzzzzzzzzzzzzzzzzzzzzzzzzz", ", and", "\n\n"}, {", and void."}}) {
    ScoreRequest b = a;
    b.choices = other;
    const RequestScore rb = score_request(*model, ByteTokenizer(), b, opt);
    CHECK(rb.kept == ra.kept);
    CHECK(rb.context_tokens == ra.context_tokens);
  }
  // A different context does change the kept sets (the check above is not vacuous).
  ScoreRequest d = a;
  d.context = "Thou shalt not kill. Thou shalt not commit adultery. Thou shalt not steal, nor lie at all";
  CHECK(score_request(*model, ByteTokenizer(), d, opt).kept != ra.kept);
}

TEST_CASE("score: malformed task files are errors naming the file, the line and the field") {
  auto err = [](const std::string& text) { return error_of([&] { read_score_tasks(write_tasks("bad.jsonl", text)); }); };
  CHECK(contains(err("{\"context\": \"a\", \"choices\": [\"b\"], \"gold\": 0}\nnot json\n"), "bad.jsonl' line 2: expected a JSON object: not valid JSON"));
  CHECK(contains(err("[1, 2]\n"), "line 1: expected a JSON object, got array"));
  CHECK(contains(err("{\"choices\": [\"b\"], \"gold\": 0}\n"), "line 1: \"context\" must be a string"));
  CHECK(contains(err("{\"context\": \"a\", \"choices\": [], \"gold\": 0}\n"), "\"choices\" must be a non-empty array"));
  CHECK(contains(err("{\"context\": \"a\", \"choices\": [\"b\", 3], \"gold\": 0}\n"), "\"choices\" must be a non-empty array of strings"));
  CHECK(contains(err("{\"context\": \"a\", \"choices\": [\"b\"]}\n"), "\"gold\" must be an integer index"));
  CHECK(contains(err("{\"context\": \"a\", \"choices\": [\"b\"], \"gold\": 1}\n"), "\"gold\" = 1 is not an index into the 1 choices"));
  CHECK(contains(err("{\"context\": \"a\", \"choices\": [\"b\"], \"gold\": 0, \"task\": 5}\n"), "\"task\" must be a non-empty string"));
  CHECK(contains(err("\n\n"), "holds no requests"));
  CHECK(contains(error_of([] { read_score_tasks(g_tmp.file("missing.jsonl")); }), "cannot open"));
  // A context that is all whitespace, on a model without eos_token_id, has nothing to condition on.
  MambaConfig c;
  c.vocab_size = 256;
  c.hidden_size = 16;
  c.num_hidden_layers = 1;
  c.state_size = 2;
  c.time_step_rank = 1;
  c.eos_token_id = std::nullopt;
  MambaLM model(c, 1);
  ScoreRequest r;
  r.context = "  ";
  r.choices = {"a"};
  r.line = 4;
  CHECK(contains(error_of([&] { score_request(model, ByteTokenizer(), r, std::nullopt); }),
                 "line 4 has an empty context"));
}

TEST_CASE("score: the example task file in docs/ is valid") {
  const std::vector<ScoreRequest> r = read_score_tasks("docs/score_example.jsonl");
  CHECK(r.size() == 10);
  for (const ScoreRequest& q : r) CHECK((q.task == "kjv_verses" || q.task == "kjv_names"));
}
