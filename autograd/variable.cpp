#include "autograd/variable.h"

#include <unordered_map>
#include <unordered_set>

#include "tensor/elementwise.h"

namespace simba {

namespace {
thread_local bool t_grad_enabled = true;

// Add g into slot, allocating on first use. Shapes must agree exactly: a
// backward function returning a wrongly shaped gradient is a bug we want to
// catch where it happens, not three ops later.
// Gradients are never modified in place (a sum makes a new tensor), so an
// intermediate gradient may share memory with whatever a backward returned;
// a leaf's .grad is handed to the user and optimisers, so it gets memory of its
// own: a copy, unless g is a dense tensor whose storage nothing but g refers to
// (a backward's fresh result), which is then the leaf's alone already.
void accumulate(Tensor& slot, const Tensor& g, const std::string& where, bool own) {
  SIMBA_CHECK(g.defined(), "internal: undefined gradient accumulated into " << where);
  if (!slot.defined()) {
    const bool alone = g.is_contiguous() && g.storage() && g.storage().use_count() == 1;
    slot = own && !alone ? g.clone() : g;
    return;
  }
  SIMBA_CHECK(slot.shape() == g.shape(), "gradient shape mismatch in " << where << ": have "
                                                                       << shape_str(slot.shape()) << ", got "
                                                                       << shape_str(g.shape()));
  slot = add(slot, g);
}
}  // namespace

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

Variable::Variable(Tensor data, bool requires_grad) : impl_(std::make_shared<VariableImpl>()) {
  impl_->data = std::move(data);
  set_requires_grad(requires_grad);
}

void Variable::set_requires_grad(bool r) {
  SIMBA_CHECK(!r || is_floating(impl_->data.dtype()),
              "requires_grad on a " << dtype_name(impl_->data.dtype()) << " tensor: only float tensors have gradients");
  SIMBA_CHECK(is_leaf() || r, "requires_grad(false) on a non-leaf; use detach()");
  impl_->requires_grad = r;
}

void Variable::zero_grad() { impl_->grad = Tensor(); }

void Variable::set_grad(const Tensor& g) {
  SIMBA_CHECK(!g.defined() || g.shape() == shape(),
              "set_grad: gradient shape " << shape_str(g.shape()) << " vs variable shape " << shape_str(shape()));
  impl_->grad = g;
}

Variable Variable::detach() const { return Variable(impl_->data, false); }

namespace {
// Attaches a Node named `name` to out when grad mode is on and any input requires a gradient;
// returns it for the caller to give its backward, or null when nothing is recorded.
std::shared_ptr<Node> record(Variable& out, const char* name, const std::vector<Variable>& inputs) {
  if (!grad_enabled()) return nullptr;
  bool any = false;
  for (const Variable& v : inputs) any = any || v.requires_grad();
  if (!any) return nullptr;
  auto node = std::make_shared<Node>();
  node->name = name;
  node->inputs.reserve(inputs.size());
  // Undefined Variables (an absent optional input) stay as empty edges, so
  // gradient i still belongs to input i.
  for (const Variable& v : inputs) {
    Edge e;
    if (v.defined()) {  // a leaf that takes no gradient needs nothing: an empty edge
      if (!v.is_leaf())
        e.node = v.grad_fn();
      else if (v.requires_grad())
        e.leaf = v.impl();
      e.shape = v.shape();
    }
    node->inputs.push_back(std::move(e));
  }
  out.impl()->requires_grad = true;
  out.impl()->grad_fn = node;
  return node;
}

// Whether an accumulated gradient may be handed to a BackwardIntoFn to be written in place:
// dense, and no other tensor shares its memory.
bool writable(const Tensor& t) { return t.is_contiguous() && t.storage() && t.storage().use_count() == 1; }
}  // namespace

Variable make_result(Tensor data, const char* name, const std::vector<Variable>& inputs, BackwardFn backward) {
  Variable out(std::move(data));
  if (auto node = record(out, name, inputs)) node->backward = std::move(backward);
  return out;
}

Variable make_result_into(Tensor data, const char* name, const std::vector<Variable>& inputs,
                          BackwardIntoFn backward_into) {
  Variable out(std::move(data));
  if (auto node = record(out, name, inputs)) node->backward_into = std::move(backward_into);
  return out;
}

void Variable::backward(const Tensor& grad_output, bool retain_graph, const LeafDone& leaf_done) const {
  SIMBA_CHECK(defined(), "backward() on an undefined Variable");
  SIMBA_CHECK_HINT(requires_grad(), "backward() on a Variable that does not require grad",
                   "set requires_grad on the parameters, and do not call backward inside a NoGradGuard");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    SIMBA_CHECK_HINT(numel() == 1, "backward() without a gradient on a non-scalar of shape " << shape_str(shape()),
                     "pass the upstream gradient, or reduce to a scalar loss first");
    seed = Tensor::ones(shape(), dtype(), data().device());
  }
  SIMBA_CHECK(seed.shape() == shape(), "backward(): gradient of shape " << shape_str(seed.shape())
                                                                       << " for an output of shape "
                                                                       << shape_str(shape()));
  if (is_leaf()) {
    accumulate(impl_->grad, seed, "leaf", /*own=*/true);
    if (leaf_done && impl_->requires_grad) leaf_done(*impl_);
    return;
  }

  // Reverse topological order by iterative post-order DFS over nodes. `order`
  // owns the nodes: freeing one below drops its input edges, which may be the
  // last owners of nodes that still have to run.
  std::vector<std::shared_ptr<Node>> order;
  std::unordered_set<Node*> visited;
  std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack{{impl_->grad_fn, 0}};
  visited.insert(impl_->grad_fn.get());
  while (!stack.empty()) {
    auto& [node, next] = stack.back();
    SIMBA_CHECK_HINT(!node->freed,
                     "backward through a graph that was already freed (node '" << node->name << "')",
                     "a graph is freed by backward(); call backward(g, /*retain_graph=*/true) the first time "
                     "to backpropagate twice, or run the forward again");
    if (next < node->inputs.size()) {
      const Edge& in = node->inputs[next++];
      if (in.node && visited.insert(in.node.get()).second) stack.push_back({in.node, 0});
    } else {
      order.push_back(node);
      stack.pop_back();
    }
  }

  // For leaf_done: the edges still to run into each leaf that wants a gradient.
  std::unordered_map<const VariableImpl*, int> pending;
  if (leaf_done)
    for (const auto& node : order)
      for (const Edge& in : node->inputs)
        if (in.leaf && in.leaf->requires_grad) ++pending[in.leaf.get()];
  auto finish_edges = [&](const Node& node) {
    for (const Edge& in : node.inputs)
      if (in.leaf && in.leaf->requires_grad && --pending[in.leaf.get()] == 0) leaf_done(*in.leaf);
  };
  // Whether an edge takes a gradient: every recorded result does; a leaf when it requires one.
  auto wants = [](const Edge& in) { return in.node || (in.leaf && in.leaf->requires_grad); };

  std::unordered_map<Node*, Tensor> grads;
  grads[impl_->grad_fn.get()] = seed;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* node = it->get();
    auto found = grads.find(node);
    if (found == grads.end()) {  // no gradient reached this node
      if (leaf_done) finish_edges(*node);
      continue;
    }
    Tensor g = std::move(found->second);
    grads.erase(found);
    const size_t n = node->inputs.size();
    // Where input i's gradient accumulates: its node's pending gradient, or the leaf's .grad.
    auto slot = [&](const Edge& in) -> Tensor& { return in.node ? grads[in.node.get()] : in.leaf->grad; };
    std::vector<Tensor> input_grads;
    std::vector<bool> taken(n, false);  // input i's gradient so far was handed to backward_into
    if (node->backward_into) {
      input_grads.resize(n);
      for (size_t i = 0; i < n; ++i) {
        const Edge& in = node->inputs[i];
        if (!wants(in)) continue;
        bool again = false;  // the same input at an earlier position took the slot
        for (size_t j = 0; j < i; ++j) again = again || node->inputs[j].id() == in.id();
        if (again) continue;
        if (in.node && grads.find(in.node.get()) == grads.end()) continue;
        Tensor& s = slot(in);
        if (!s.defined() || !writable(s)) continue;
        input_grads[i] = std::move(s);
        s = Tensor();
        taken[i] = true;
      }
      node->backward_into(g, input_grads);
    } else {
      input_grads = node->backward(g);
    }
    SIMBA_CHECK(input_grads.size() == n, "internal: backward of '" << node->name << "' returned " << input_grads.size()
                                                                   << " gradients for " << n << " inputs");
    for (size_t i = 0; i < n; ++i) {
      const Edge& in = node->inputs[i];
      if (!wants(in)) continue;
      SIMBA_CHECK(!taken[i] || input_grads[i].defined(),
                  "internal: backward of '" << node->name << "' dropped input " << i << "'s gradient");
      if (!input_grads[i].defined()) continue;
      SIMBA_CHECK(input_grads[i].shape() == in.shape,
                  "internal: backward of '" << node->name << "' gave input " << i << " a gradient of shape "
                                            << shape_str(input_grads[i].shape()) << ", the input has shape "
                                            << shape_str(in.shape));
      if (taken[i])
        slot(in) = std::move(input_grads[i]);
      else if (in.node)
        accumulate(slot(in), input_grads[i], "node '" + in.node->name + "'", /*own=*/false);
      else
        accumulate(slot(in), input_grads[i], "leaf gradient", /*own=*/true);
    }
    if (leaf_done) finish_edges(*node);
    if (!retain_graph) {
      node->backward = nullptr;  // releases the saved tensors
      node->backward_into = nullptr;
      node->inputs.clear();
      node->freed = true;
    }
  }
}

}  // namespace simba
