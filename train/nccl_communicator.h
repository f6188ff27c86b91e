// train/nccl_communicator.h: the Communicator of multi-GPU training: one
// process per GPU (launched by `simba train --gpus N`, train/launcher.h),
// joined into one NCCL communicator.
//
// Rank 0's launcher makes an NCCL unique id (nccl_unique_id_hex) and hands it
// to every worker in its environment; each worker calls ncclCommInitRank with
// it on its own GPU. Collectives are queued on simba's stream of that GPU
// (tensor/cuda_check.cuh cuda_stream), in order with the kernels that made
// their input, so the host does not wait for them; barrier() does wait.
// NCCL's sum order follows its ring or tree over the GPUs: fixed for a given
// machine and world size (so a repeated run gets the same bits), but not the
// rank order of ThreadCommunicator.
//
// Compiled where the CUDA backend and NCCL are (train/nccl_communicator.cu);
// a build without them has these functions, and they throw, saying so.
#pragma once

#include <memory>
#include <string>

#include "train/communicator.h"

namespace simba {

// True when this build has NCCL (and the CUDA backend).
bool nccl_compiled_in();

// A fresh NCCL unique id as 256 hex digits, so that it travels in an environment variable.
std::string nccl_unique_id_hex();

class NcclCommunicator final : public Communicator {
 public:
  // Rank `rank` of `world_size` on GPU `device`; blocks until every rank has
  // joined with the same id. Errors name the NCCL call and NCCL's message.
  NcclCommunicator(int rank, int world_size, const std::string& unique_id_hex, int device);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  // t: contiguous, on this communicator's GPU, float32, bfloat16, float64 or int64.
  void all_reduce_sum(const Tensor& t) override;
  void broadcast(const Tensor& t, int root) override;
  void barrier() override;

 private:
  struct Impl;  // the ncclComm_t: keeps nccl.h out of C++ files
  std::unique_ptr<Impl> impl_;
  int rank_;
  int world_size_;
};

}  // namespace simba
