// train/gradient_buckets.h: averaging the parameters' gradients over the
// ranks of data-parallel training (train/trainer.h, "Data parallelism").
//
// The gradients are packed, in parameter order, into flat buckets of at most
// bucket_bytes (a parameter larger than that fills a bucket of its own; a
// bucket holds one dtype and device), each bucket is averaged over the ranks
// with one all_reduce_mean, and every parameter's .grad becomes its slice of
// the averaged bucket. Buckets turn the model's many small tensors (norms,
// biases, D) into a few large messages, which is what a collective is fast at.
//
// The reduction runs after backward is complete, not overlapped with it: the
// autograd engine (autograd/variable.h) has no hook that fires when a leaf's
// gradient is final, and under --grad-accum or --dtype bfloat16 the gradient
// that is reduced is only formed after the last micro-batch's backward.
#pragma once

#include <cstddef>
#include <vector>

#include "autograd/variable.h"
#include "train/communicator.h"

namespace simba {

// 25 MiB, PyTorch DDP's default bucket: large enough that a bucket's transfer
// time dwarfs the per-call latency on NVLink, small enough to pipeline.
constexpr size_t kGradientBucketBytes = size_t{25} << 20;

// Every rank's gradients become the mean over ranks. A parameter without a
// gradient on this rank counts as a zero one, and has the (averaged) gradient
// afterwards: every rank must pack the same layout. World size 1 changes
// nothing (the gradients keep their tensors and bits).
void all_reduce_gradients(Communicator& comm, const std::vector<Variable>& params,
                          size_t bucket_bytes = kGradientBucketBytes);

}  // namespace simba
