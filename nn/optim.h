// nn/optim.h: optimisers (SGD, AdamW), parameter groups and gradient clipping.
//
// An optimiser updates parameters in place, through Variable::data(), from
// the gradients that backward() accumulated into them. Parameters are grouped
// (ParamGroup) so that each group has its own weight decay: language-model
// training decays the matrices but not norms, biases, A_log or D.
//
// Semantics shared by every optimiser here:
// - step() skips a parameter whose grad is undefined: neither the parameter
//   nor its optimiser state changes (PyTorch's rule for p.grad is None).
// - One learning rate for all groups, changed with set_lr() (the schedule in
//   nn/lr_schedule.h gives the value per step).
// - The state (momentum / moment buffers, per-parameter step counts and the
//   number of step() calls) is a list of named tensors, so a checkpoint can
//   store it and load_state() can restore it exactly: a run resumed from a
//   checkpoint is bit-identical to one that never stopped.
// - Parameters must be contiguous float32 or float64 leaves on one device, each
//   under one unique name; gradients must have the parameter's dtype. bfloat16
//   parameters are an error naming the parameter: the update and the state
//   stay in full precision (an update smaller than half a weight's bfloat16
//   rounding step would vanish), so mixed precision keeps float32 master
//   weights here and runs the model on bfloat16 copies. The kernels below are
//   float and double only for the same reason. The moment and
//   momentum buffers live on the parameters' device (create the optimiser after
//   Module::to); the step counts are host bookkeeping.
// - step() updates a group's parameters with one multi-tensor kernel call per
//   dtype (per step count t for AdamW): one launch per group on a GPU.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.h"
#include "nn/module.h"
#include "tensor/half_types.h"

namespace simba {

// ---------------------------------------------------------------- kernels
//
// The update and gradient-norm kernels, multi-tensor: one call covers any number of parameter
// tensors, each described by an OptimTensor (on the CUDA side the descriptors are one device
// array, so a whole model's step is one launch). Three variants with identical signatures:
//   *_ref:  plain sequential loops, the specification the others are tested against.
//   *_cpu:  the fast CPU path (OpenMP within each tensor). nn/optim.cpp.
//   *_cuda: the CUDA kernels. nn/optim.cu, built with the CUDA backend only; T = float or double; the
//           descriptor array, every pointer in it and every other pointer argument are CUDA
//           device memory on the current device; the call returns once the work is queued on
//           that device's stream, reading nothing back (the trainer reads the norm once per
//           step, when it needs it).
// All are deterministic (the updates are elementwise; the norm is summed in a fixed order).

// One parameter tensor: n contiguous elements of param (updated in place), grad, and the
// optimiser state m (AdamW's exp_avg, SGD's momentum buffer; null for SGD without momentum)
// and v (AdamW's exp_avg_sq; null for SGD). decay != 0: the step's weight decay applies to it.
// copy (n) or null: the updated param rounded once to bfloat16 is stored there too, in the
// same pass (mixed precision's compute copy; Optimizer::set_bfloat16_copies).
template <class T>
struct OptimTensor {
  T* param;
  const T* grad;
  T* m;
  T* v;
  int64_t n;
  int32_t decay;
  bfloat16* copy = nullptr;
};

// One AdamW step's settings; t >= 1 is the step count of every tensor in the call (tensors
// at different counts take separate calls).
struct AdamWStep {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t t;
};

// One SGD step's settings (the update of class SGD below).
struct SGDStep {
  double lr, momentum, weight_decay;
};

// The AdamW update of class AdamW below for every tensor, with g = grad·(*grad_scale) (the
// factor grad_norm_* writes; grad_scale null means 1). A *grad_scale that is not finite skips the
// call: nothing is written (the step of a non-finite gradient norm, decided where the norm is
// computed, without the host reading it first). m and v must be non-null.
template <class T>
void adamw_step_ref(const OptimTensor<T>* tensors, int64_t count, const AdamWStep& step, const T* grad_scale);
template <class T>
void adamw_step_cpu(const OptimTensor<T>* tensors, int64_t count, const AdamWStep& step, const T* grad_scale);
template <class T>
void adamw_step_cuda(const OptimTensor<T>* tensors, int64_t count, const AdamWStep& step, const T* grad_scale);

// The SGD update of class SGD below for every tensor, with g = grad·(*grad_scale) and the skip
// on a non-finite *grad_scale as above.
// m (the momentum buffer) must be non-null when momentum > 0.
template <class T>
void sgd_step_ref(const OptimTensor<T>* tensors, int64_t count, const SGDStep& step, const T* grad_scale);
template <class T>
void sgd_step_cpu(const OptimTensor<T>* tensors, int64_t count, const SGDStep& step, const T* grad_scale);
template <class T>
void sgd_step_cuda(const OptimTensor<T>* tensors, int64_t count, const SGDStep& step, const T* grad_scale);

// The global gradient norm of clip_grad_norm below over the tensors' grads (param, m, v
// unused): *norm = sqrt(Σ g²) summed in double, and, if clip_scale is non-null, the factor
// *clip_scale = step_scale(*norm, max_norm), to pass as grad_scale to the step (clipping without
// rewriting the gradients or reading the norm; max_norm = +inf: no clipping).
template <class T>
void grad_norm_ref(double* norm, T* clip_scale, const OptimTensor<T>* tensors, int64_t count, double max_norm);
template <class T>
void grad_norm_cpu(double* norm, T* clip_scale, const OptimTensor<T>* tensors, int64_t count, double max_norm);
template <class T>
void grad_norm_cuda(double* norm, T* clip_scale, const OptimTensor<T>* tensors, int64_t count, double max_norm);

// Mixed precision's hand-over of the gradients (Optimizer-side of --dtype bfloat16): for every
// tensor, dst (n float32) = src (n bfloat16), widened exactly (so every variant gives the same
// bits); one call, one launch on a GPU, for a whole model's gradients.
struct WidenTensor {
  float* dst;
  const bfloat16* src;
  int64_t n;
};
void widen_gradients_ref(const WidenTensor* tensors, int64_t count);
void widen_gradients_cpu(const WidenTensor* tensors, int64_t count);
void widen_gradients_cuda(const WidenTensor* tensors, int64_t count);

// The per-element constants of one AdamW step, formed in double once (shared by every variant,
// so all of them round the same constants):
//   decay = 1 − lr·wd,  step_size = lr / (1 − β1^t),  bc2_sqrt = sqrt(1 − β2^t).
struct AdamWCoefficients {
  double decay, beta1, beta2, step_size, bc2_sqrt, eps;
};
AdamWCoefficients adamw_coefficients(const AdamWStep& step);

// The clipping factor of clip_grad_norm for a norm: max_norm / (norm + 1e-6) if norm > max_norm
// and norm is finite, else 1.
double clip_factor(double norm, double max_norm);
// The grad_scale of a step from its gradient norm: clip_factor(norm, max_norm) if norm is finite,
// NaN (the step is skipped) if it is not.
double step_scale(double norm, double max_norm);

// ---------------------------------------------------------------- optimiser classes

using NamedVariables = std::vector<std::pair<std::string, Variable>>;
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct ParamGroup {
  NamedVariables params;
  double weight_decay = 0.0;
};

// Splits module.named_parameters() into two groups, in this order:
//   [0] every parameter for which no_decay(name) is false, with `weight_decay`;
//   [1] every parameter for which no_decay(name) is true, with weight decay 0.
// Registration order is kept inside each group. Either group may be empty.
std::vector<ParamGroup> split_decay_groups(const Module& module, double weight_decay,
                                           const std::function<bool(const std::string&)>& no_decay);

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Updates every parameter that has a gradient (runs under NoGradGuard).
  virtual void step() = 0;
  // Mixed precision: from now on every step() also writes each updated parameter, rounded once
  // to bfloat16, into the tensor `copies` gives under the parameter's name, in the same kernel
  // pass as the update (one launch instead of one copy a tensor). Each copy must be a
  // contiguous bfloat16 tensor of its parameter's shape on its device; parameters without one
  // are updated as before. A parameter skipped by a step (no gradient) keeps its copy as it was.
  // The copies are written, never read: fill them once (Tensor::copy_) before the first step.
  void set_bfloat16_copies(const NamedTensors& copies);
  void zero_grad();  // drops the gradient of every parameter

  void set_lr(double lr);  // lr >= 0 and finite
  double lr() const { return lr_; }
  // The next step() uses s·g for each gradient g, s the value of `scale` (one element, on the
  // parameters' device, float32 or float64; the step reads it where it is, when it runs): the
  // factor of gradient_norm below, applied inside the update's pass where clip_grad_norm rewrites
  // every gradient in a pass of its own. The gradients themselves are not changed. If s is not
  // finite when the step runs, nothing is updated (parameters, state and copies keep their
  // values); the host's step counts still advance, and retract_step() takes them back. The
  // scale applies to that one step; undefined or unset: 1.
  void set_grad_scale(const Tensor& scale);
  // Takes back the step counts of the last step() (the optimiser's and each updated parameter's):
  // for a step whose grad_scale turned out not finite, which updated nothing. Once per step().
  void retract_step();
  int64_t step_count() const;  // number of step() calls, restored by load_state
  const std::vector<ParamGroup>& groups() const { return groups_; }

  // A copy of the whole state, in a fixed order: "step" (int64, shape ()),
  // then the optimiser's per-parameter entries "<slot>.<parameter name>"
  // (the subclass lists its slots). Save all of them to resume exactly.
  NamedTensors state_tensors() const;
  // Restores a state_tensors() result. Every entry must be present, with the
  // same shape and dtype, and nothing else may be there; otherwise an error
  // names the offending entry and nothing is changed. Order does not matter.
  void load_state(const NamedTensors& state);

 protected:
  Optimizer(std::vector<ParamGroup> groups, double lr, const char* name);
  // The live state tensors (aliasing the buffers step() updates), in the
  // order of state_tensors(), "step" first.
  virtual NamedTensors live_state() const = 0;
  // Counts a step() call; subclasses call it once per step(), after the kernel calls. It clears
  // the grad_scale of set_grad_scale.
  void count_step();
  // Takes back a subclass's per-parameter counts of its last step() (retract_step).
  virtual void retract_counts() {}
  // The gradient of `p` as a contiguous tensor, checked against p's dtype;
  // undefined if p has none (skip it).
  Tensor grad_of(const std::string& name, const Variable& p) const;

  // The bfloat16 copy of groups_[g].params[p], or undefined (set_bfloat16_copies).
  bfloat16* copy_of(size_t g, size_t p) const;

  // set_grad_scale's tensor in dtype dt, for the kernels' grad_scale argument, checked to be on
  // the parameters' device dev; undefined when none was set (the kernels then take nullptr).
  Tensor grad_scale_as(DType dt, Device dev) const;

  std::vector<ParamGroup> groups_;
  double lr_;
  Tensor grad_scale_;  // set_grad_scale's, for the next step() only
  const char* name_;  // "SGD", "AdamW": prefixes every error message
  Tensor step_count_;  // int64, shape ()
  std::vector<std::vector<Tensor>> copies_;  // [group][param]; empty until set_bfloat16_copies
};

struct SGDOptions {
  double lr = 1e-2;
  double momentum = 0.0;
};

// Stochastic gradient descent with heavy-ball momentum and L2 weight decay,
// as torch.optim.SGD (dampening 0, no Nesterov). Per parameter, with wd the
// group's weight decay and μ the momentum:
//   g ← g + wd·p;  b ← μ·b + g;  p ← p − lr·b        (μ > 0)
//   g ← g + wd·p;  p ← p − lr·g                      (μ = 0)
// The buffer b starts at zero, so the first step sets b = g exactly as
// PyTorch's lazily created buffer does. State slot (μ > 0 only):
// "momentum_buffer".
class SGD : public Optimizer {
 public:
  SGD(std::vector<ParamGroup> groups, const SGDOptions& options);
  void step() override;

 private:
  NamedTensors live_state() const override;

  double momentum_;
  std::vector<std::vector<Tensor>> buffers_;  // [group][param], empty if μ = 0
};

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

// The weight decay torch.optim.AdamW uses when none is given.
constexpr double kAdamWDefaultWeightDecay = 0.01;

// Adam with decoupled weight decay, the update of torch.optim.AdamW
// (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", Alg. 2).
// Per parameter, with wd the group's weight decay and t its own step count
// (1 on its first update; a step where it had no gradient does not count, as
// in PyTorch):
//   p ← p·(1 − lr·wd)
//   m ← β1·m + (1 − β1)·g
//   v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
// which is p − lr·m̂/(sqrt(v̂) + eps) with m̂ = m/(1 − β1^t), v̂ = v/(1 − β2^t),
// grouped as PyTorch groups it. State slots: "exp_avg" (m), "exp_avg_sq" (v),
// "step" (t, int64, shape ()).
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<ParamGroup> groups, const AdamWOptions& options);
  // All parameters in one group with weight decay `weight_decay`.
  AdamW(const NamedVariables& params, const AdamWOptions& options,
        double weight_decay = kAdamWDefaultWeightDecay);
  void step() override;

 private:
  NamedTensors live_state() const override;
  void retract_counts() override;

  AdamWOptions options_;
  std::vector<std::vector<Tensor>> exp_avg_, exp_avg_sq_, steps_;  // [group][param]
  std::vector<Tensor> counted_;  // the steps_ entries the last step() advanced
};

// Rescales gradients so that their global L2 norm is at most max_norm
// (torch.nn.utils.clip_grad_norm_): total = sqrt(Σ over every element of every
// defined gradient of g²), accumulated in double. If total > max_norm every
// gradient is multiplied by max_norm / (total + 1e-6). Returns total, the norm
// BEFORE clipping; if it is inf or NaN nothing is scaled and the caller
// decides what to do (the trainer stops). Parameters without a gradient are
// ignored; a bfloat16 gradient is an error (clipping belongs to the float32
// master weights' step, as above). The sum is formed from fixed-size chunks added in a fixed order, so
// the result does not depend on the number of threads. The norm is computed where
// the gradients live (grad_norm_*, one multi-tensor call per dtype) and read by the
// host once; all gradients must share a device.
double clip_grad_norm(const std::vector<Variable>& params, double max_norm);

// The total of clip_grad_norm without the rescaling and without reading it (the same checks):
// norm (float64, one element) and scale = step_scale(norm, max_norm) (the gradients' dtype, one
// element), both computed where the gradients live, for a trainer to pass scale to
// Optimizer::set_grad_scale and read norm when it needs it. max_norm > 0; +inf: no clipping.
// Every gradient must have the same dtype. Without any gradient: norm 0, scale 1.
struct GradientNorm {
  Tensor norm, scale;
};
GradientNorm gradient_norm(const std::vector<Variable>& params, double max_norm);

// Mixed precision: for each (copy, master) pair, master's gradient becomes copy's bfloat16
// gradient widened to float32 and copy's gradient is dropped, with one widen_gradients kernel
// call for all pairs. A pair whose copy has no gradient is left alone. Every copy is bfloat16,
// every master float32 of its copy's shape, all on one device.
void widen_gradients(const std::vector<std::pair<Variable, Variable>>& copy_and_master);

}  // namespace simba
