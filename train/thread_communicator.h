// train/thread_communicator.h: a Communicator whose ranks are threads of one
// process sharing host memory, so that data-parallel training runs and is
// tested on the CPU (tests/test_data_parallel.cpp) without GPUs or NCCL.
//
// all_reduce_sum adds the ranks' buffers in rank order, ((t_0 + t_1) + t_2)
// + ..., in the tensor's dtype, on every rank: the result has the same bits
// on every rank and in every run, whatever the threads' timing.
//
// A rank that throws while others wait in a collective would leave them
// waiting forever; run_ranks aborts the group instead, and every rank then
// blocked in (or later entering) a collective throws, naming the abort.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "train/communicator.h"

namespace simba {

// What the ranks of one world share: the buffers posted to the collective in
// progress and a reusable barrier.
class ThreadGroup {
 public:
  explicit ThreadGroup(int world_size);
  int world_size() const { return world_size_; }
  // Waits until all world_size ranks have arrived; throws if the group was aborted.
  void arrive_and_wait();
  // Wakes every waiting rank with an error, and fails every later collective.
  void abort();
  // The tensor each rank posted to the collective in progress (set before its first barrier).
  std::vector<Tensor>& posted() { return posted_; }

 private:
  const int world_size_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
  bool aborted_ = false;
  std::vector<Tensor> posted_;
};

class ThreadCommunicator final : public Communicator {
 public:
  // Rank `rank` of `group`; tensors must be on the CPU, float32, float64 or int64.
  ThreadCommunicator(std::shared_ptr<ThreadGroup> group, int rank);
  int rank() const override { return rank_; }
  int world_size() const override { return group_->world_size(); }
  void all_reduce_sum(const Tensor& t) override;
  void broadcast(const Tensor& t, int root) override;
  void barrier() override { group_->arrive_and_wait(); }

 private:
  // Posts `t` and waits for every rank's; throws on every rank alike if the
  // posted tensors differ in shape, dtype or device.
  void post(const Tensor& t, const char* op);

  std::shared_ptr<ThreadGroup> group_;
  int rank_;
};

// Runs fn on world_size threads, rank r's with a ThreadCommunicator of rank r
// of one group, and returns when all have finished. If any throws, the group
// is aborted (so the others stop instead of waiting) and the exception of the
// lowest failing rank that did not fail from the abort is rethrown.
void run_ranks(int world_size, const std::function<void(Communicator&)>& fn);

}  // namespace simba
