// ssm/decode_step.cpp: DecodeStep (ssm/decode_step.h).
#include "ssm/decode_step.h"

#include <algorithm>

#include "autograd/variable.h"
#include "nn/linear.h"
#include "tensor/error.h"

namespace simba {

int DecodeStep::default_parts(int64_t batch, Device device, DType dtype) {
  return !device.is_cpu() && dtype == DType::F32 && batch >= kMinRowsToSplit ? 2 : 1;
}

DecodeStep::DecodeStep(const MambaLM& model, int64_t batch, int parts) : model_(model) {
  SIMBA_CHECK(batch >= 1, "DecodeStep: batch must be >= 1, got " << batch);
  const Device dev = model.device();
  if (parts == 0) parts = default_parts(batch, dev, model.head_weight().dtype());
  const int64_t most = std::min<int64_t>(batch, kMaxCudaBranches);
  SIMBA_CHECK(parts >= 1 && parts <= most,
              "DecodeStep: " << parts << " parts for a batch of " << batch << ", expected 1 to " << most);
  ids = Tensor::zeros({batch}, DType::I64, dev);
  logits = Tensor::empty({batch, model.config().vocab_size}, model.head_weight().dtype(), dev);
  state = model.new_state(batch);
  for (int p = 0; p <= parts; ++p) rows_.push_back(batch * p / parts);
  if (parts > 1) {
    hidden_ = Tensor::empty({batch, model.config().hidden_size}, model.head_weight().dtype(), dev);
    for (int p = 0; p < parts; ++p) {
      std::vector<MixerState> views;
      for (const MixerState& s : state) {
        const int64_t r0 = rows_[p], n = rows_[p + 1] - rows_[p];
        views.push_back(MixerState{s.conv.narrow(0, r0, n), s.ssm.narrow(0, r0, n)});
      }
      part_state_.push_back(std::move(views));
    }
  }
  if (dev.is_cpu()) return;
  // One step outside capture first: it creates what the kernels need once (the cuBLAS handles
  // and their workspaces, one a part, which must not become graph allocations) and checks every
  // operand.
  step();
  reset();
  graph_ = std::make_unique<CudaGraph>(dev.index, [this] { step(); });
}

void DecodeStep::step() {
  if (parts() == 1) {
    logits.copy_(model_.step(ids, state));
    return;
  }
  const auto part = [this](int p) {
    const int64_t r0 = rows_[p], n = rows_[p + 1] - rows_[p];
    hidden_.narrow(0, r0, n).copy_(model_.step_hidden(ids.narrow(0, r0, n), part_state_[p]));
  };
  const Device dev = ids.device();
  if (dev.is_cpu()) {
    for (int p = 0; p < parts(); ++p) part(p);
  } else {
    cuda_branches(dev.index, parts(), part);
  }
  NoGradGuard no_grad;
  logits.copy_(linear(Variable(hidden_), model_.head_weight(), Variable()).data());
}

void DecodeStep::reset() {
  for (MixerState& s : state) {
    s.conv.fill_(0.0);
    s.ssm.fill_(0.0);
  }
}

void DecodeStep::run() {
  if (graph_)
    graph_->replay();
  else
    step();
}

}  // namespace simba
