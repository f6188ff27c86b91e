// train/communicator.h: the collective operations of data-parallel training
// (train/trainer.h, "Data parallelism"): one rank per process or thread,
// world_size ranks in all, each holding a full copy of the model.
//
// Every operation is collective: every rank calls it, in the same order, with
// tensors of the same shape and dtype; a rank that skips one blocks the
// others. Tensors must be contiguous (they are reduced as flat buffers) and
// live on the device the implementation serves.
//
// Determinism: results never depend on timing. all_reduce_sum adds in an
// order fixed by the implementation and the world size (ThreadCommunicator:
// rank order; NcclCommunicator: NCCL's ring order for the topology), so a run
// repeated with the same world size gets the same bits.
//
// Implementations: SingleProcessCommunicator below (world size 1, every
// operation a no-op), ThreadCommunicator (train/thread_communicator.h: ranks
// as threads of one process, for tests on the CPU) and NcclCommunicator
// (train/nccl_communicator.h: one process per GPU).
#pragma once

#include <memory>

#include "tensor/tensor.h"

namespace simba {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Every rank's `t` becomes the elementwise sum of all ranks' `t`.
  virtual void all_reduce_sum(const Tensor& t) = 0;
  // Every rank's `t` becomes rank `root`'s `t`.
  virtual void broadcast(const Tensor& t, int root) = 0;
  // Returns once every rank has called it.
  virtual void barrier() = 0;
};

// The world of one: a plain (non-distributed) run.
class SingleProcessCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  void all_reduce_sum(const Tensor&) override {}
  void broadcast(const Tensor&, int) override {}
  void barrier() override {}
};

// all_reduce_sum, then every element times 1/world_size: the mean over ranks.
// World size 1 leaves `t` untouched (not even multiplied by 1).
void all_reduce_mean(Communicator& comm, const Tensor& t);

}  // namespace simba
