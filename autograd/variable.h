// autograd/variable.h: reverse-mode automatic differentiation.
//
// A Variable is a shared handle to {data tensor, grad tensor, requires_grad,
// grad_fn}. Ops on Variables (autograd/ops.h) compute their result with the
// tensor layer and, when grad mode is on and some input requires a gradient,
// record a Node: the inputs plus a closure that maps the output's gradient to
// the inputs' gradients by calling the op's *_backward functions. The Node
// only wires; the math lives in tensor/, nn/ and ssm/.
//
// Semantics (each is pinned by a test in tests/test_autograd.cpp):
// - backward() walks the graph from this Variable in reverse topological
//   order, so a Node runs once, after every consumer of its output has
//   contributed: a value used twice, or a diamond, gets the sum of both paths.
// - Gradients ACCUMULATE into leaves' grad (requires_grad, no grad_fn). Call
//   zero_grad() (or the optimiser's) before each step.
// - Only leaves keep .grad; intermediate gradients are dropped after use.
// - The graph is freed by backward() (saved tensors released) unless
//   retain_graph is true. A second backward() through a freed graph is an
//   error that says so, instead of silently returning wrong gradients.
// - Gradients flow through views (reshape, permute, narrow, ...) like any op.
// - NoGradGuard turns recording off in a scope (evaluation, optimiser steps).
// - detach() returns a Variable sharing the data but cut from the graph.
// - The seed gradient is 1 for a one-element output; otherwise it must be
//   given and must have the output's shape.
// - An op whose kernels can add their result where they write it (a GEMM with
//   beta = 1, a norm's epilogue, a slice) records a BackwardIntoFn instead: it
//   is handed what its inputs have accumulated so far and adds to it in place,
//   which saves an add pass and a temporary wherever a value feeds several ops.
//   The sums are the same; only their rounding order may differ.
// - leaf_done, if given, is called once for every leaf that requires a
//   gradient and that the graph reaches, as soon as no node still to run can
//   add to it: its .grad is final for this backward (a data-parallel trainer
//   starts averaging those gradients over the ranks while the rest of the
//   backward runs). Leaves are reported in the order the walk finishes them.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace simba {

class Variable;
struct VariableImpl;

// Maps the gradient of a node's output to the gradients of its inputs (one
// per input, in order; an undefined Tensor means "no gradient to this input").
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

// The accumulating form. On entry grads[i] is input i's gradient accumulated so
// far, or undefined: none has arrived yet, or another tensor shares its memory
// (the engine adds this op's contribution then). A defined grads[i] is dense
// and the engine's alone, so the function may write it in place. On return
// grads[i] is input i's gradient with this op's contribution added (its
// contribution alone where grads[i] was undefined; untouched for no gradient).
using BackwardIntoFn = std::function<void(const Tensor& grad_output, std::vector<Tensor>& grads)>;

// backward()'s notice that a leaf's gradient is final (see the semantics above).
using LeafDone = std::function<void(const VariableImpl& leaf)>;

struct Node;

// A node's edge to one of its inputs: what the backward needs of the input, not the input's
// value. An intermediate result is then kept only by the nodes whose gradients read it (their
// backward functions hold it), not by every node it fed: softplus' input, for one, is freed once
// softplus has run, since its gradient reads the output (docs/training-memory.md).
// Both pointers are null for an absent optional input and for a leaf that takes no gradient.
struct Edge {
  std::shared_ptr<Node> node;          // the input's node: a result of a recorded op
  std::shared_ptr<VariableImpl> leaf;  // the input itself: a leaf that requires a gradient
  Shape shape;                         // the input's shape, which its gradient must have
  const void* id() const { return node ? static_cast<const void*>(node.get()) : leaf.get(); }
};

struct Node {
  std::string name;          // the op, for error messages
  std::vector<Edge> inputs;  // edges to the inputs
  BackwardFn backward;            // one of the two is set
  BackwardIntoFn backward_into;
  bool freed = false;
};

struct VariableImpl {
  Tensor data;
  Tensor grad;  // leaves only; undefined until the first backward reaches it
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;  // null for leaves and for results of no-grad ops
};

class Variable {
 public:
  Variable() = default;  // undefined
  explicit Variable(Tensor data, bool requires_grad = false);

  bool defined() const { return impl_ != nullptr; }
  const Tensor& data() const { return impl_->data; }
  Tensor& data() { return impl_->data; }  // in-place updates of parameters (optimisers)
  const Tensor& grad() const { return impl_->grad; }
  bool requires_grad() const { return impl_ && impl_->requires_grad; }
  void set_requires_grad(bool r);
  bool is_leaf() const { return !impl_->grad_fn; }
  const std::shared_ptr<Node>& grad_fn() const { return impl_->grad_fn; }
  const std::shared_ptr<VariableImpl>& impl() const { return impl_; }

  const Shape& shape() const { return impl_->data.shape(); }
  int64_t size(int d) const { return impl_->data.size(d); }
  int dim() const { return impl_->data.dim(); }
  int64_t numel() const { return impl_->data.numel(); }
  DType dtype() const { return impl_->data.dtype(); }
  double item() const { return impl_->data.item(); }

  void backward(const Tensor& grad_output = Tensor(), bool retain_graph = false,
                const LeafDone& leaf_done = nullptr) const;
  void zero_grad();  // drops .grad (the next backward starts from zero)
  void set_grad(const Tensor& g);  // used by gradient clipping and tests
  Variable detach() const;

 private:
  std::shared_ptr<VariableImpl> impl_;
};

// True unless a NoGradGuard is alive on this thread.
bool grad_enabled();

class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Builds the op's output Variable. When grad mode is on and any input requires
// a gradient, attaches a Node named `name` with `backward`; otherwise the
// result is a plain constant and `backward` is discarded.
Variable make_result(Tensor data, const char* name, const std::vector<Variable>& inputs, BackwardFn backward);
// The same with an accumulating backward.
Variable make_result_into(Tensor data, const char* name, const std::vector<Variable>& inputs,
                          BackwardIntoFn backward_into);

}  // namespace simba
