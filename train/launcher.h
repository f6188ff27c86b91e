// train/launcher.h: the processes of multi-GPU training. `simba train --gpus N`
// does not train itself: it makes an NCCL unique id, starts N copies of the
// same command line without --gpus (one worker per GPU, /proc/self/exe), and
// waits for them. Worker r learns its place from its environment:
//   SIMBA_RANK=r  SIMBA_WORLD_SIZE=N  SIMBA_LOCAL_RANK=r  SIMBA_NCCL_ID=<256 hex digits>
// (names of simba's own, so that a process started by another launcher, such
// as torchrun's RANK/WORLD_SIZE, is never mistaken for a worker), plus
// NCCL_NVLS_ENABLE=0, set in the launcher and every worker. Worker r trains on
// cuda:r with an NcclCommunicator (train/nccl_communicator.h); rank 0 prints
// and writes the run's files (train/trainer.h, "Data parallelism"). If a
// worker fails, the launcher stops the others (SIGTERM: a rank whose peer died
// would otherwise wait in a collective forever) and reports the first failure.
// One machine only (LOCAL_RANK = RANK).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace simba {

struct WorkerEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;       // the GPU index on this machine
  std::string nccl_id;      // nccl_unique_id_hex() of the launcher
};

// This process's worker settings, or nullopt if SIMBA_WORLD_SIZE is unset (not
// a worker). A missing, malformed or out-of-range variable is an error naming it.
std::optional<WorkerEnv> worker_env();

// args without every `flag VALUE` and `flag=VALUE` (args[0], the program, stays).
std::vector<std::string> args_without(const std::vector<std::string>& args, const std::string& flag);

// This process's command line (/proc/self/cmdline), program first.
std::vector<std::string> own_command_line();

// Sets NCCL_NVLS_ENABLE=0, makes the unique id, runs `gpus` workers of
// /proc/self/exe with `args` (args[0] included) and the worker environment,
// and waits for all of them. Throws if one exits unsuccessfully, naming its
// rank and status, after stopping the others.
void launch_workers(int gpus, const std::vector<std::string>& args);

}  // namespace simba
