// train/launcher.cpp: one worker process per GPU (see train/launcher.h).
#include "train/launcher.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>

#include "tensor/error.h"
#include "train/nccl_communicator.h"

extern char** environ;

namespace simba {

namespace {

// The integer value of environment variable `name`, which must be set, in [lo, hi].
int env_int(const char* name, int lo, int hi) {
  const char* text = std::getenv(name);
  SIMBA_CHECK(text != nullptr, "environment variable " << name << " is not set, but SIMBA_WORLD_SIZE is: a worker "
                                                       << "of simba train --gpus needs all of SIMBA_RANK, "
                                                       << "SIMBA_WORLD_SIZE, SIMBA_LOCAL_RANK and SIMBA_NCCL_ID");
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text, &end, 10);
  SIMBA_CHECK(*text != '\0' && *end == '\0' && errno == 0 && value >= lo && value <= hi,
              "environment variable " << name << " must be an integer in [" << lo << ", " << hi << "], got '" << text
                                      << "'");
  return static_cast<int>(value);
}

}  // namespace

std::optional<WorkerEnv> worker_env() {
  if (std::getenv("SIMBA_WORLD_SIZE") == nullptr) return std::nullopt;
  WorkerEnv w;
  w.world_size = env_int("SIMBA_WORLD_SIZE", 1, 1 << 16);
  w.rank = env_int("SIMBA_RANK", 0, w.world_size - 1);
  w.local_rank = env_int("SIMBA_LOCAL_RANK", 0, w.world_size - 1);
  const char* id = std::getenv("SIMBA_NCCL_ID");
  SIMBA_CHECK(id != nullptr && *id != '\0', "environment variable SIMBA_NCCL_ID is not set, but SIMBA_WORLD_SIZE is: "
                                            "a worker of simba train --gpus joins its peers through it");
  w.nccl_id = id;
  return w;
}

std::vector<std::string> args_without(const std::vector<std::string>& args, const std::string& flag) {
  std::vector<std::string> kept;
  for (size_t i = 0; i < args.size(); ++i) {
    if (i > 0 && args[i] == flag) {
      ++i;  // its value
      continue;
    }
    if (i > 0 && args[i].rfind(flag + "=", 0) == 0) continue;
    kept.push_back(args[i]);
  }
  return kept;
}

std::vector<std::string> own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  SIMBA_CHECK(in, "cannot read /proc/self/cmdline: the worker processes of --gpus repeat this command line");
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  size_t start = 0;
  for (size_t i = 0; i < all.size(); ++i)
    if (all[i] == '\0') {
      args.push_back(all.substr(start, i - start));
      start = i + 1;
    }
  return args;
}

void launch_workers(int gpus, const std::vector<std::string>& args) {
  SIMBA_CHECK(gpus >= 1, "--gpus must be >= 1, got " << gpus);
  SIMBA_CHECK(!args.empty(), "launch_workers: no command line given");
  setenv("NCCL_NVLS_ENABLE", "0", 1);  // before NCCL starts here, and inherited by every worker
  const std::string id = nccl_unique_id_hex();
  // Everything a child needs is built before fork: between fork and exec it may only call execve.
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> inherited;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string var = *e;
    if (var.rfind("SIMBA_RANK=", 0) != 0 && var.rfind("SIMBA_WORLD_SIZE=", 0) != 0 &&
        var.rfind("SIMBA_LOCAL_RANK=", 0) != 0 && var.rfind("SIMBA_NCCL_ID=", 0) != 0)
      inherited.push_back(var);
  }
  std::vector<std::vector<std::string>> envs(static_cast<size_t>(gpus), inherited);
  std::vector<std::vector<char*>> envps(static_cast<size_t>(gpus));
  for (int r = 0; r < gpus; ++r) {
    std::vector<std::string>& env = envs[static_cast<size_t>(r)];
    env.push_back("SIMBA_RANK=" + std::to_string(r));
    env.push_back("SIMBA_WORLD_SIZE=" + std::to_string(gpus));
    env.push_back("SIMBA_LOCAL_RANK=" + std::to_string(r));
    env.push_back("SIMBA_NCCL_ID=" + id);
    for (const std::string& v : env) envps[static_cast<size_t>(r)].push_back(const_cast<char*>(v.c_str()));
    envps[static_cast<size_t>(r)].push_back(nullptr);
  }
  std::map<pid_t, int> running;  // pid -> rank
  for (int r = 0; r < gpus; ++r) {
    const pid_t pid = fork();
    if (pid == 0) {
      execve("/proc/self/exe", argv.data(), envps[static_cast<size_t>(r)].data());
      _exit(127);
    }
    if (pid < 0) {
      for (const auto& [started, rank] : running) kill(started, SIGTERM);
      SIMBA_FAIL("--gpus " << gpus << ": cannot start worker " << r << ": " << std::strerror(errno));
    }
    running[pid] = r;
  }
  std::string failure;
  while (!running.empty()) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0 && errno == EINTR) continue;
    SIMBA_CHECK(pid > 0, "--gpus: waiting for the workers failed: " << std::strerror(errno));
    const auto it = running.find(pid);
    if (it == running.end()) continue;
    const int rank = it->second;
    running.erase(it);
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok || !failure.empty()) continue;
    failure = "worker " + std::to_string(rank) + " of --gpus " + std::to_string(gpus) +
              (WIFEXITED(status) ? " exited with status " + std::to_string(WEXITSTATUS(status))
                                 : " was killed by signal " + std::to_string(WTERMSIG(status)));
    for (const auto& [other, other_rank] : running) kill(other, SIGTERM);
  }
  SIMBA_CHECK_HINT(failure.empty(), failure, "the worker's own error is printed above; the other workers were stopped");
}

}  // namespace simba
