// train/gradient_buckets.cpp: bucketed gradient averaging (see train/gradient_buckets.h).
#include "train/gradient_buckets.h"

#include "tensor/error.h"

namespace simba {

namespace {

void reduce_bucket(Communicator& comm, std::vector<Variable>& bucket, int64_t numel) {
  const Tensor& first = bucket.front().data();
  const Tensor flat = Tensor::empty({numel}, first.dtype(), first.device());
  int64_t offset = 0;
  for (const Variable& p : bucket) {
    Tensor slice = flat.narrow(0, offset, p.numel());
    if (p.grad().defined()) slice.copy_(p.grad().reshape({p.numel()}));
    else slice.zero_();
    offset += p.numel();
  }
  all_reduce_mean(comm, flat);
  offset = 0;
  for (Variable& p : bucket) {
    p.set_grad(flat.narrow(0, offset, p.numel()).view(p.shape()));
    offset += p.numel();
  }
  bucket.clear();
}

}  // namespace

void all_reduce_gradients(Communicator& comm, const std::vector<Variable>& params, size_t bucket_bytes) {
  SIMBA_CHECK(bucket_bytes > 0, "all_reduce_gradients: the bucket size must be > 0 bytes");
  if (comm.world_size() == 1) return;
  std::vector<Variable> bucket;
  int64_t numel = 0;
  size_t bytes = 0;
  for (const Variable& p : params) {
    const size_t p_bytes = static_cast<size_t>(p.numel()) * dtype_size(p.dtype());
    const bool fits = !bucket.empty() && bucket.front().dtype() == p.dtype() &&
                      bucket.front().data().device() == p.data().device() && bytes + p_bytes <= bucket_bytes;
    if (!bucket.empty() && !fits) {
      reduce_bucket(comm, bucket, numel);
      numel = 0;
      bytes = 0;
    }
    bucket.push_back(p);
    numel += p.numel();
    bytes += p_bytes;
  }
  if (!bucket.empty()) reduce_bucket(comm, bucket, numel);
}

}  // namespace simba
