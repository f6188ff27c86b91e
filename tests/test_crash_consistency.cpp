// tests/test_crash_consistency.cpp: `simba train` killed with SIGKILL again
// and again, at random instants and inside the checkpoint writer (the
// SIMBA_TEST_KILL_IN_CHECKPOINT hook of train/train_state.h), always leaves a
// checkpoint that loads, and resuming until the run completes gives a final
// model.safetensors byte-identical to that of a run never killed, with a
// metrics log in which no step appears twice.
//
// The child is the built simba binary (fork + exec, so SIGKILL hits the
// trainer itself, not a shell), on a model of a few thousand parameters so
// that a process lives for a fraction of a second.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/safetensors.h"
#include "tensor/file_io.h"
#include "tests/test_util.h"
#include "train/train_state.h"

using namespace simba;
namespace fs = std::filesystem;

namespace {

const TempDir g_tmp("crash_consistency");
const int64_t kSteps = 6;
const int kKills = 60;             // the acceptance asks for at least 50
const int kMaxKillsPerRun = 12;    // then the run is let finish, and a new one starts
const char* const kStages[] = {"weights", "staged", "moved-old", "switched"};

// One checkpoint per step, so that most instants of a run are near a checkpoint write.
std::vector<std::string> new_run_args(const std::string& data, const std::string& out) {
  return {"train", "--data", data, "--out", out, "--steps", std::to_string(kSteps), "--hidden-size", "16",
          "--layers", "1", "--state-size", "4", "--seq-len", "32", "--batch-size", "2", "--save-every", "1",
          "--eval-every", "0", "--eval-batches", "1", "--log-every", "1", "--lr", "0.01", "--seed", "7"};
}

struct Outcome {
  bool killed = false;  // ended by SIGKILL
  int exit_code = -1;   // when it exited
};

// Runs `simba args` with stdout and stderr to `log`. The child gets
// SIMBA_TEST_KILL_IN_CHECKPOINT=stage when stage is not empty; with
// kill_after >= 0 it is sent SIGKILL that long after the start (a child
// that has already exited by then is not affected).
Outcome run_child(const std::vector<std::string>& args, const std::string& stage, std::chrono::microseconds kill_after,
                  const std::string& log) {
  const std::string exe = simba_binary().string();
  std::vector<char*> argv{const_cast<char*>(exe.c_str())};
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  // The environment is built before fork: the child may only make async-signal-safe calls.
  // One thread: the kernels give the same bits at any thread count, and on a
  // loaded machine a process of idle-spinning threads lives much longer.
  std::vector<std::string> vars = {"OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1"};
  if (!stage.empty()) vars.push_back("SIMBA_TEST_KILL_IN_CHECKPOINT=" + stage);
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string var(*e);
    const std::string name = var.substr(0, var.find('='));
    if (name != "OMP_NUM_THREADS" && name != "OPENBLAS_NUM_THREADS" && name != "SIMBA_TEST_KILL_IN_CHECKPOINT")
      envp.push_back(*e);
  }
  for (std::string& v : vars) envp.push_back(v.data());
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execve(exe.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  if (kill_after.count() >= 0) {
    std::this_thread::sleep_for(kill_after);
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  Outcome o;
  o.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return o;
}

// The step of the complete checkpoint in `dir`, checked by loading it all
// (load_checkpoint reads and cross-checks the three files; MambaLM::load is
// what simba eval and transformers read); -1 if `dir` does not exist.
int64_t checkpoint_step(const std::string& dir) {
  if (!fs::exists(dir)) return -1;
  int64_t step = -1;
  const std::string msg = error_of([&] {
    step = load_checkpoint(dir).state.step;
    MambaLM::load(dir);
  });
  INFO("checkpoint '" << dir << "'");
  CHECK(msg == "");
  return step;
}

// (step, kind) of every record of a metrics log: kind is "loss" for a
// training step, "val" for a validation, or the event's name.
std::vector<std::pair<int64_t, std::string>> records_of(const std::string& path, std::map<int64_t, double>* losses) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::istringstream lines(read_file(path));
  std::string line;
  while (std::getline(lines, line)) {
    const nlohmann::json r = nlohmann::json::parse(line);
    const int64_t step = r.at("step").get<int64_t>();
    if (r.contains("loss")) {
      out.emplace_back(step, "loss");
      (*losses)[step] = r.at("loss").get<double>();
    } else if (r.contains("val_loss")) {
      out.emplace_back(step, "val");
    } else {
      out.emplace_back(step, r.at("event").get<std::string>());
    }
  }
  return out;
}

}  // namespace

TEST_CASE("kill -9 at random instants and inside checkpoint writes: resume always ends bit-identical") {
  const fs::path exe = simba_binary();
  INFO("the crash test runs the simba program: build it (cmake --build build --target simba)");
  REQUIRE(fs::exists(exe));

  std::string text;
  for (int i = 0; i < 200; ++i) text += "Line " + std::to_string(i * 7919 % 1000) + " of a small text to train on. ";
  const std::string data = g_tmp.file("data.txt");
  write_file_atomic(data, text);
  const std::string log = g_tmp.file("child.log");

  // The run that is never killed, and how long a whole run takes.
  const std::string reference = g_tmp.file("reference");
  const auto t0 = std::chrono::steady_clock::now();
  const Outcome ref = run_child(new_run_args(data, reference), "", std::chrono::microseconds(-1), log);
  const auto run_time = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
  if (ref.exit_code != 0) FAIL("the reference run failed:\n" << read_file(log));
  const std::string ref_weights = read_file(reference + "/checkpoint/model.safetensors");
  SafetensorsMetadata ref_meta;
  const TensorMap ref_state = load_safetensors(reference + "/checkpoint/training_state.safetensors", &ref_meta);
  std::map<int64_t, double> ref_losses;
  records_of(reference + "/metrics.jsonl", &ref_losses);
  REQUIRE(ref_losses.size() == static_cast<size_t>(kSteps));

  std::mt19937_64 rng(20261201);
  std::uniform_int_distribution<int64_t> instant(0, run_time.count());
  int kills = 0, stage_kills = 0, runs = 0;
  std::map<std::string, int> kills_at_stage;
  while (kills < kKills) {
    // One run directory, killed until kMaxKillsPerRun, then let finish.
    const std::string out = g_tmp.file("run" + std::to_string(runs));
    const std::string ckpt = checkpoint_dir(out);
    int64_t newest = -1;  // step of the newest checkpoint known complete
    for (int attempt = 0;; ++attempt) {
      const bool resume = fs::exists(ckpt) || fs::exists(ckpt + ".new");
      const std::vector<std::string> args =
          resume ? std::vector<std::string>{"train", "--data", data, "--out", out, "--resume"} : new_run_args(data, out);
      const bool to_kill = attempt < kMaxKillsPerRun && kills < kKills;
      const bool at_stage = to_kill && attempt % 2 == 0;
      const std::string stage = at_stage ? kStages[stage_kills % 4] : "";
      const auto when = to_kill && !at_stage ? std::chrono::microseconds(instant(rng)) : std::chrono::microseconds(-1);
      const Outcome o = run_child(args, stage, when, log);
      INFO("run " << runs << " attempt " << attempt << (resume ? " (--resume)" : " (new run)") << " stage '" << stage
                  << "' kill after " << when.count() << " us; its output:\n"
                  << read_file(log));
      if (!o.killed) {  // the run completed (a random instant may fall after its end: not a kill)
        CHECK(o.exit_code == 0);
        CHECK(!at_stage);  // the hook fires at every save
        break;
      }
      ++kills;
      if (at_stage) {
        ++stage_kills;
        ++kills_at_stage[stage];
      }
      // A reader sees a whole checkpoint or none, and no complete checkpoint is ever lost.
      const int64_t current = checkpoint_step(ckpt), pending = checkpoint_step(ckpt + ".new");
      const int64_t best = std::max(current, pending);
      CHECK(best >= newest);
      newest = std::max(newest, best);
    }
    ++runs;

    // The run that was killed again and again ended where the reference did.
    INFO("run directory " << out);
    CHECK(read_file(ckpt + "/model.safetensors") == ref_weights);
    SafetensorsMetadata meta;
    const TensorMap state = load_safetensors(ckpt + "/training_state.safetensors", &meta);
    REQUIRE(state.size() == ref_state.size());
    for (const auto& [name, t] : ref_state) {
      INFO("training state " << name);
      const Tensor& mine = state.at(name);
      REQUIRE(mine.numel() == t.numel());
      CHECK(std::memcmp(mine.raw_data(), t.raw_data(), static_cast<size_t>(t.numel()) * dtype_size(t.dtype())) == 0);
    }
    CHECK(meta.at("step") == ref_meta.at("step"));
    CHECK(meta.at("data_cursor") == ref_meta.at("data_cursor"));
    // No step twice in the metrics log, and every step's loss equals the reference's.
    std::map<int64_t, double> losses;
    const auto records = records_of(out + "/metrics.jsonl", &losses);
    const std::set<std::pair<int64_t, std::string>> unique(records.begin(), records.end());
    INFO("metrics log:\n" << read_file(out + "/metrics.jsonl"));
    CHECK(unique.size() == records.size());
    CHECK(losses == ref_losses);
    // Nothing of the killed writes is left behind.
    std::set<std::string> entries;
    for (const auto& e : fs::directory_iterator(out)) entries.insert(e.path().filename().string());
    CHECK(entries == std::set<std::string>{"checkpoint", "metrics.jsonl"});
    fs::remove_all(out);
  }
  MESSAGE(kills << " kills (" << stage_kills << " inside checkpoint writes: weights " << kills_at_stage["weights"]
                << ", staged " << kills_at_stage["staged"] << ", moved-old " << kills_at_stage["moved-old"]
                << ", switched " << kills_at_stage["switched"] << "; the rest at random instants of a "
                << run_time.count() / 1000 << " ms run) over " << runs << " runs");
  CHECK(kills >= 50);
  for (const char* stage : kStages) CHECK(kills_at_stage[stage] > 0);
}
