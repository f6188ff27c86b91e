// train/gradient_buckets.h: averaging the parameters' gradients over the
// ranks of data-parallel training (train/trainer.h, "Data parallelism").
//
// The gradients are packed into flat buckets of at most bucket_bytes (a
// parameter larger than that fills a bucket of its own; a bucket holds one
// dtype and device), each bucket is averaged over the ranks with one
// all_reduce_mean, and every parameter's .grad becomes its slice of the
// averaged bucket. Buckets turn the model's many small tensors (norms, biases,
// D) into a few large messages, which is what a collective is fast at.
//
// Overlap with backward. The buckets are laid out in reverse parameter order,
// the order in which backward finishes the gradients (the last layer's
// first), and GradientReducer::leaf_done, given to Variable::backward as its
// leaf_done, starts a bucket's reduction as soon as every gradient in it is
// final, while backward goes on with the earlier layers. Buckets are started
// strictly in index order on every rank (a collective must be called in the
// same order everywhere), so a bucket that completes early waits for the ones
// before it. With NcclCommunicator the reduction is queued on the GPU stream
// behind the kernels that made the gradients; with ThreadCommunicator (the
// CPU tests) the rank threads meet at each bucket.
#pragma once

#include <cstddef>
#include <unordered_map>
#include <vector>

#include "autograd/variable.h"
#include "train/communicator.h"

namespace simba {

// 25 MiB, PyTorch DDP's default bucket: large enough that a bucket's transfer
// time dwarfs the per-call latency on NVLink, small enough to pipeline.
constexpr size_t kGradientBucketBytes = size_t{25} << 20;

// One backward's reduction of `params`' gradients: made before the backward,
// fed leaf_done during it, finish()ed after it. Every rank must make it with
// the same parameters in the same order. A parameter without a gradient on
// this rank counts as a zero one, and has the (averaged) gradient afterwards.
class GradientReducer {
 public:
  GradientReducer(Communicator& comm, std::vector<Variable> params, size_t bucket_bytes = kGradientBucketBytes);

  // The gradient of `leaf` is final: starts every bucket, in order, whose
  // gradients are all final. Leaves that are not among the parameters are
  // ignored.
  void leaf_done(const VariableImpl& leaf);
  // Starts the buckets not started yet (their missing gradients count as
  // zero), then sets every parameter's .grad to its averaged slice.
  void finish();

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    int64_t numel = 0;
    size_t pending = 0;          // gradients not final yet
    Tensor flat;                 // defined once started
  };
  void start(Bucket& b);

  Communicator& comm_;
  std::vector<Variable> params_;
  std::vector<Bucket> buckets_;
  std::unordered_map<const VariableImpl*, size_t> bucket_of_;  // parameter -> its bucket
  size_t next_ = 0;  // the first bucket not started
};

// Every rank's gradients become the mean over ranks, all at once, after
// backward (GradientReducer without leaf_done). World size 1 changes nothing
// (the gradients keep their tensors and bits).
void all_reduce_gradients(Communicator& comm, const std::vector<Variable>& params,
                          size_t bucket_bytes = kGradientBucketBytes);

}  // namespace simba
