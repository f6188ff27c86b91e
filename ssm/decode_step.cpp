// ssm/decode_step.cpp: DecodeStep (ssm/decode_step.h).
#include "ssm/decode_step.h"

#include "autograd/variable.h"
#include "tensor/error.h"

namespace simba {

DecodeStep::DecodeStep(const MambaLM& model, int64_t batch) : model_(model) {
  SIMBA_CHECK(batch >= 1, "DecodeStep: batch must be >= 1, got " << batch);
  const Device dev = model.device();
  ids = Tensor::zeros({batch}, DType::I64, dev);
  logits = Tensor::empty({batch, model.config().vocab_size}, model.head_weight().dtype(), dev);
  state = model.new_state(batch);
  if (dev.is_cpu()) return;
  // One step outside capture first: it creates what the kernels need once (the cuBLAS handle
  // and its workspace, which must not become graph allocations) and checks every operand.
  step();
  reset();
  graph_ = std::make_unique<CudaGraph>(dev.index, [this] { step(); });
}

void DecodeStep::step() { logits.copy_(model_.step(ids, state)); }

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
