// train/gradient_buckets.cpp: bucketed gradient averaging (see train/gradient_buckets.h).
#include "train/gradient_buckets.h"

#include "tensor/error.h"

namespace simba {

GradientReducer::GradientReducer(Communicator& comm, std::vector<Variable> params, size_t bucket_bytes)
    : comm_(comm), params_(std::move(params)) {
  SIMBA_CHECK(bucket_bytes > 0, "GradientReducer: the bucket size must be > 0 bytes");
  if (comm_.world_size() == 1) return;  // nothing to reduce: no buckets (the trainer makes one a step)
  size_t bytes = 0;
  for (size_t k = params_.size(); k-- > 0;) {  // reverse parameter order: backward's
    const Variable& p = params_[k];
    const size_t p_bytes = static_cast<size_t>(p.numel()) * dtype_size(p.dtype());
    const bool fits = !buckets_.empty() && params_[buckets_.back().params.front()].dtype() == p.dtype() &&
                      params_[buckets_.back().params.front()].data().device() == p.data().device() &&
                      bytes + p_bytes <= bucket_bytes;
    if (!fits) {
      buckets_.emplace_back();
      bytes = 0;
    }
    Bucket& b = buckets_.back();
    b.params.push_back(k);
    b.numel += p.numel();
    ++b.pending;
    bytes += p_bytes;
    bucket_of_[p.impl().get()] = buckets_.size() - 1;
  }
}

void GradientReducer::start(Bucket& b) {
  const Tensor& first = params_[b.params.front()].data();
  b.flat = Tensor::empty({b.numel}, first.dtype(), first.device());
  int64_t offset = 0;
  for (size_t k : b.params) {
    const Variable& p = params_[k];
    Tensor slice = b.flat.narrow(0, offset, p.numel());
    if (p.grad().defined()) slice.copy_(p.grad().reshape({p.numel()}));
    else slice.zero_();
    offset += p.numel();
  }
  all_reduce_mean(comm_, b.flat);
}

void GradientReducer::leaf_done(const VariableImpl& leaf) {
  if (comm_.world_size() == 1) return;
  auto it = bucket_of_.find(&leaf);
  if (it == bucket_of_.end()) return;
  Bucket& b = buckets_[it->second];
  SIMBA_CHECK(b.pending > 0, "GradientReducer: a gradient reported final twice");
  --b.pending;
  while (next_ < buckets_.size() && buckets_[next_].pending == 0) start(buckets_[next_++]);
}

void GradientReducer::finish() {
  if (comm_.world_size() == 1) return;
  while (next_ < buckets_.size()) start(buckets_[next_++]);
  for (Bucket& b : buckets_) {
    int64_t offset = 0;
    for (size_t k : b.params) {
      Variable& p = params_[k];
      p.set_grad(b.flat.narrow(0, offset, p.numel()).view(p.shape()));
      offset += p.numel();
    }
  }
}

void all_reduce_gradients(Communicator& comm, const std::vector<Variable>& params, size_t bucket_bytes) {
  GradientReducer(comm, params, bucket_bytes).finish();
}

}  // namespace simba
