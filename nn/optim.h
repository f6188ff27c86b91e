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
// - Parameters must be contiguous CPU float leaves, each under one unique
//   name; gradients must have the parameter's dtype.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.h"
#include "nn/module.h"

namespace simba {

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
  void zero_grad();  // drops the gradient of every parameter

  void set_lr(double lr);  // lr >= 0 and finite
  double lr() const { return lr_; }
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
  // Counts a step() call; subclasses call it once per step().
  void count_step();
  // The gradient of `p` as a contiguous tensor, checked against p's dtype;
  // undefined if p has none (skip it).
  Tensor grad_of(const std::string& name, const Variable& p) const;

  std::vector<ParamGroup> groups_;
  double lr_;
  const char* name_;  // "SGD", "AdamW": prefixes every error message
  Tensor step_count_;  // int64, shape ()
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

  AdamWOptions options_;
  std::vector<std::vector<Tensor>> exp_avg_, exp_avg_sq_, steps_;  // [group][param]
};

// Rescales gradients so that their global L2 norm is at most max_norm
// (torch.nn.utils.clip_grad_norm_): total = sqrt(Σ over every element of every
// defined gradient of g²), accumulated in double. If total > max_norm every
// gradient is multiplied by max_norm / (total + 1e-6). Returns total, the norm
// BEFORE clipping; if it is inf or NaN nothing is scaled and the caller
// decides what to do (the trainer stops). Parameters without a gradient are
// ignored. The sum is formed from fixed-size chunks added in a fixed order, so
// the result does not depend on the number of threads.
double clip_grad_norm(const std::vector<Variable>& params, double max_norm);

}  // namespace simba
