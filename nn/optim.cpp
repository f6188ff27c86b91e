// nn/optim.cpp: the update kernels of SGD and AdamW, the optimiser state
// bookkeeping and global-norm gradient clipping (see nn/optim.h).
#include "nn/optim.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>

#include "nn/kernel_check.h"
#include "tensor/cuda_device.h"
#include "tensor/dispatch.h"
#include "tensor/elementwise.h"
#include "tensor/strided_loop.h"

namespace simba {

namespace {

// copy[i] = param[i] rounded once to bfloat16 (mixed precision's compute copy), if copy is
// non-null. A second pass over param, which is still in cache for the small tensors and costs
// one read of the large ones: the CPU path is not where the fused write pays.
template <class T>
void round_into(bfloat16* copy, const T* param, int64_t n) {
  if (!copy) return;
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) copy[i] = bfloat16(param[i]);
}

// One SGD step over one parameter (nn/optim.h, SGD).
//   param (n) contiguous, updated in place
//   buf   (n) contiguous momentum buffer, updated in place; null when μ = 0
//   grad  (n) contiguous, used as grad·scale (scale = 1 leaves it exact)
//   copy  (n) contiguous, the updated param rounded to bfloat16; null: none
// Elementwise, so the OpenMP split cannot change any value.
template <class T>
void sgd_update(T* param, T* buf, const T* grad, bfloat16* copy, T scale, int64_t n, double lr, double momentum,
                double weight_decay) {
  const T lr_t = static_cast<T>(lr), mu = static_cast<T>(momentum), wd = static_cast<T>(weight_decay);
  if (buf) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      const T g = grad[i] * scale + wd * param[i];
      const T b = mu * buf[i] + g;
      buf[i] = b;
      param[i] -= lr_t * b;
    }
  } else {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) param[i] -= lr_t * (grad[i] * scale + wd * param[i]);
  }
  round_into(copy, param, n);
}

// One AdamW step over one parameter (nn/optim.h, AdamW).
//   param      (n) contiguous, updated in place
//   exp_avg    (n) contiguous first moment m, updated in place
//   exp_avg_sq (n) contiguous second moment v, updated in place
//   grad       (n) contiguous, used as grad·scale (scale = 1 leaves it exact)
//   copy       (n) contiguous, the updated param rounded to bfloat16; null: none
// decay is c.decay for a decayed tensor and 1 otherwise. Elementwise, so the OpenMP split
// cannot change any value.
template <class T>
void adamw_update(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, bfloat16* copy, T scale, int64_t n,
                  const AdamWCoefficients& c, double decay_factor) {
  const T decay = static_cast<T>(decay_factor), b1 = static_cast<T>(c.beta1), b2 = static_cast<T>(c.beta2);
  const T omb1 = static_cast<T>(1.0 - c.beta1), omb2 = static_cast<T>(1.0 - c.beta2);
  const T step_size = static_cast<T>(c.step_size), bc2_sqrt = static_cast<T>(c.bc2_sqrt), eps = static_cast<T>(c.eps);
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad[i] * scale;
    const T m = b1 * exp_avg[i] + omb1 * g;
    const T v = b2 * exp_avg_sq[i] + omb2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    const T denom = std::sqrt(v) / bc2_sqrt + eps;
    param[i] = param[i] * decay - step_size * (m / denom);
  }
  round_into(copy, param, n);
}

// Σ x_i² in double over x (n) contiguous. Chunks of kParallelGrain elements
// are summed independently (in parallel) and the chunk sums added in chunk
// order, so the result is the same for any thread count: a resumed run on a
// machine with another core count clips exactly as the original did. A
// fused pass instead of sum(square(g)): no temporary, and no float32
// overflow of g² for huge gradients.
template <class T>
double sum_squares(const T* x, int64_t n) {
  const int64_t chunks = (n + kParallelGrain - 1) / kParallelGrain;
  std::vector<double> partial(static_cast<size_t>(chunks));
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kParallelGrain, end = std::min(n, begin + kParallelGrain);
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = begin; i < end; ++i) {
      const double v = static_cast<double>(x[i]);
      s += v * v;
    }
    partial[static_cast<size_t>(c)] = s;
  }
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

// The descriptor array of a multi-tensor call where the kernel variant for `dev` reads it: an
// int64 tensor holding the descriptors' bytes, on the host for the CPU variant and copied to
// the device through the pinned staging buffer for the CUDA one (queued on its stream: a copy
// from pageable memory would first wait for everything queued before it, e.g. the whole
// backward ahead of the gradient norm). The caller keeps the tensor alive until the call has
// been made; the stream-ordered allocator frees it after the kernel.
template <class D>
Tensor descriptor_table(const std::vector<D>& d, Device dev) {
  static_assert(sizeof(D) % sizeof(int64_t) == 0, "descriptors must be whole int64 words");
  const int64_t words = static_cast<int64_t>(d.size() * sizeof(D) / sizeof(int64_t));
  Tensor table = Tensor::empty({words}, DType::I64, dev);
  const size_t bytes = d.size() * sizeof(D);
  if (dev.is_cpu())
    std::memcpy(table.data<int64_t>(), d.data(), bytes);
  else
    cuda_upload_staged(table.device_data<int64_t>(), dev.index, d.data(), bytes);
  return table;
}

template <class D>
const D* descriptors_of(const Tensor& table) {
  return reinterpret_cast<const D*>(table.device_data<int64_t>());
}

}  // namespace

// ---------------------------------------------------------------- kernels

AdamWCoefficients adamw_coefficients(const AdamWStep& step) {
  const double t = static_cast<double>(step.t);
  return {1.0 - step.lr * step.weight_decay, step.beta1, step.beta2,
          step.lr / (1.0 - std::pow(step.beta1, t)), std::sqrt(1.0 - std::pow(step.beta2, t)), step.eps};
}

double clip_factor(double norm, double max_norm) {
  return std::isfinite(norm) && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
}

double step_scale(double norm, double max_norm) {
  return std::isfinite(norm) ? clip_factor(norm, max_norm) : std::numeric_limits<double>::quiet_NaN();
}

template <class T>
void adamw_step_ref(const OptimTensor<T>* tensors, int64_t count, const AdamWStep& step, const T* grad_scale) {
  const char* op = "adamw_step_ref";
  kernel_check::adamw(op, tensors, count, step);
  const AdamWCoefficients c = adamw_coefficients(step);
  const T scale = grad_scale ? *grad_scale : T(1);
  if (!std::isfinite(scale)) return;  // the step is skipped
  for (int64_t k = 0; k < count; ++k) {
    const OptimTensor<T>& d = tensors[k];
    kernel_check::optim_tensor(op, k, d.param, d.grad, d.m, d.v, d.n, true, true, true);
    const T decay = static_cast<T>(d.decay ? c.decay : 1.0);
    for (int64_t i = 0; i < d.n; ++i) {
      const T g = d.grad[i] * scale;
      d.m[i] = static_cast<T>(c.beta1) * d.m[i] + static_cast<T>(1.0 - c.beta1) * g;
      d.v[i] = static_cast<T>(c.beta2) * d.v[i] + static_cast<T>(1.0 - c.beta2) * g * g;
      const T denom = std::sqrt(d.v[i]) / static_cast<T>(c.bc2_sqrt) + static_cast<T>(c.eps);
      d.param[i] = d.param[i] * decay - static_cast<T>(c.step_size) * (d.m[i] / denom);
      if (d.copy) d.copy[i] = bfloat16(d.param[i]);
    }
  }
}

template <class T>
void adamw_step_cpu(const OptimTensor<T>* tensors, int64_t count, const AdamWStep& step, const T* grad_scale) {
  const char* op = "adamw_step_cpu";
  kernel_check::adamw(op, tensors, count, step);
  const AdamWCoefficients c = adamw_coefficients(step);
  const T scale = grad_scale ? *grad_scale : T(1);
  if (!std::isfinite(scale)) return;  // the step is skipped
  for (int64_t k = 0; k < count; ++k) {
    const OptimTensor<T>& d = tensors[k];
    kernel_check::optim_tensor(op, k, d.param, d.grad, d.m, d.v, d.n, true, true, true);
    adamw_update<T>(d.param, d.m, d.v, d.grad, d.copy, scale, d.n, c, d.decay ? c.decay : 1.0);
  }
}

template <class T>
void sgd_step_ref(const OptimTensor<T>* tensors, int64_t count, const SGDStep& step, const T* grad_scale) {
  const char* op = "sgd_step_ref";
  kernel_check::sgd(op, tensors, count, step);
  const T scale = grad_scale ? *grad_scale : T(1);
  if (!std::isfinite(scale)) return;  // the step is skipped
  const T lr = static_cast<T>(step.lr), mu = static_cast<T>(step.momentum);
  for (int64_t k = 0; k < count; ++k) {
    const OptimTensor<T>& d = tensors[k];
    kernel_check::optim_tensor(op, k, d.param, d.grad, d.m, d.v, d.n, true, step.momentum > 0.0, false);
    const T wd = static_cast<T>(d.decay ? step.weight_decay : 0.0);
    for (int64_t i = 0; i < d.n; ++i) {
      T g = d.grad[i] * scale + wd * d.param[i];
      if (step.momentum > 0.0) g = d.m[i] = mu * d.m[i] + g;
      d.param[i] -= lr * g;
      if (d.copy) d.copy[i] = bfloat16(d.param[i]);
    }
  }
}

template <class T>
void sgd_step_cpu(const OptimTensor<T>* tensors, int64_t count, const SGDStep& step, const T* grad_scale) {
  const char* op = "sgd_step_cpu";
  kernel_check::sgd(op, tensors, count, step);
  const T scale = grad_scale ? *grad_scale : T(1);
  if (!std::isfinite(scale)) return;  // the step is skipped
  for (int64_t k = 0; k < count; ++k) {
    const OptimTensor<T>& d = tensors[k];
    kernel_check::optim_tensor(op, k, d.param, d.grad, d.m, d.v, d.n, true, step.momentum > 0.0, false);
    sgd_update<T>(d.param, step.momentum > 0.0 ? d.m : nullptr, d.grad, d.copy, scale, d.n, step.lr,
                  step.momentum, d.decay ? step.weight_decay : 0.0);
  }
}

template <class T>
void grad_norm_ref(double* norm, T* clip_scale, const OptimTensor<T>* tensors, int64_t count, double max_norm) {
  const char* op = "grad_norm_ref";
  kernel_check::grad_norm(op, norm, tensors, count, max_norm);
  double sum = 0.0;
  for (int64_t k = 0; k < count; ++k) {
    const OptimTensor<T>& d = tensors[k];
    kernel_check::optim_tensor(op, k, nullptr, d.grad, nullptr, nullptr, d.n, false, false, false);
    for (int64_t i = 0; i < d.n; ++i) sum += static_cast<double>(d.grad[i]) * d.grad[i];
  }
  *norm = std::sqrt(sum);
  if (clip_scale) *clip_scale = static_cast<T>(step_scale(*norm, max_norm));
}

template <class T>
void grad_norm_cpu(double* norm, T* clip_scale, const OptimTensor<T>* tensors, int64_t count, double max_norm) {
  const char* op = "grad_norm_cpu";
  kernel_check::grad_norm(op, norm, tensors, count, max_norm);
  double sum = 0.0;
  for (int64_t k = 0; k < count; ++k) {
    const OptimTensor<T>& d = tensors[k];
    kernel_check::optim_tensor(op, k, nullptr, d.grad, nullptr, nullptr, d.n, false, false, false);
    sum += sum_squares<T>(d.grad, d.n);
  }
  *norm = std::sqrt(sum);
  if (clip_scale) *clip_scale = static_cast<T>(step_scale(*norm, max_norm));
}

void widen_gradients_ref(const WidenTensor* tensors, int64_t count) {
  const char* op = "widen_gradients_ref";
  kernel_check::optim_tensors(op, tensors, count);
  for (int64_t k = 0; k < count; ++k) {
    const WidenTensor& d = tensors[k];
    kernel_check::widen_tensor(op, k, d.dst, d.src, d.n);
    for (int64_t i = 0; i < d.n; ++i) d.dst[i] = static_cast<float>(d.src[i]);
  }
}

void widen_gradients_cpu(const WidenTensor* tensors, int64_t count) {
  const char* op = "widen_gradients_cpu";
  kernel_check::optim_tensors(op, tensors, count);
  for (int64_t k = 0; k < count; ++k) {
    const WidenTensor d = tensors[k];
    kernel_check::widen_tensor(op, k, d.dst, d.src, d.n);
#pragma omp parallel for schedule(static) if (d.n > kParallelGrain)
    for (int64_t i = 0; i < d.n; ++i) d.dst[i] = static_cast<float>(d.src[i]);
  }
}

#define SIMBA_INSTANTIATE_OPTIM(T, V)                                                                   \
  template void adamw_step_##V<T>(const OptimTensor<T>*, int64_t, const AdamWStep&, const T*);          \
  template void sgd_step_##V<T>(const OptimTensor<T>*, int64_t, const SGDStep&, const T*);              \
  template void grad_norm_##V<T>(double*, T*, const OptimTensor<T>*, int64_t, double);
SIMBA_INSTANTIATE_OPTIM(float, ref)
SIMBA_INSTANTIATE_OPTIM(double, ref)
SIMBA_INSTANTIATE_OPTIM(float, cpu)
SIMBA_INSTANTIATE_OPTIM(double, cpu)
#undef SIMBA_INSTANTIATE_OPTIM

// ---------------------------------------------------------------- parameter groups

std::vector<ParamGroup> split_decay_groups(const Module& module, double weight_decay,
                                           const std::function<bool(const std::string&)>& no_decay) {
  std::vector<ParamGroup> groups(2);
  groups[0].weight_decay = weight_decay;
  groups[1].weight_decay = 0.0;
  for (auto& named : module.named_parameters()) groups[no_decay(named.first) ? 1 : 0].params.push_back(named);
  return groups;
}

// ---------------------------------------------------------------- Optimizer

Optimizer::Optimizer(std::vector<ParamGroup> groups, double lr, const char* name)
    : groups_(std::move(groups)), lr_(0.0), name_(name), step_count_(Tensor::zeros({}, DType::I64)) {
  set_lr(lr);
  // State entries are keyed by parameter name, and a parameter updated twice
  // per step would silently double its learning rate: both must be unique.
  std::set<std::string> names;
  std::set<const VariableImpl*> seen;
  // Every parameter must live on the device of the first one (named *first).
  const std::string* first = nullptr;
  Device device;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const double wd = groups_[gi].weight_decay;
    SIMBA_CHECK(std::isfinite(wd) && wd >= 0.0,
                name_ << ": parameter group " << gi << " has weight_decay " << wd << ", expected a finite value >= 0");
    for (const auto& [pname, p] : groups_[gi].params) {
      SIMBA_CHECK(p.defined(), name_ << ": parameter '" << pname << "' is an undefined Variable");
      SIMBA_CHECK_HINT(p.is_leaf() && p.requires_grad(),
                       name_ << ": parameter '" << pname << "' is not a leaf that requires grad",
                       "pass the module's parameters (Module::named_parameters()), not results of ops");
      SIMBA_CHECK_HINT(p.dtype() == DType::F32 || p.dtype() == DType::F64,
                       name_ << ": parameter '" << pname << "' is " << dtype_name(p.dtype())
                             << ", expected float32 or float64: updates and optimiser state are kept in full "
                                "precision (an update below a 16-bit weight's rounding step would be lost)",
                       "mixed precision keeps float32 master weights for the optimiser and runs the model "
                       "on bfloat16 copies of them");
      SIMBA_CHECK(p.data().is_contiguous(), name_ << ": parameter '" << pname << "' of shape "
                                                  << shape_str(p.shape()) << " is not contiguous");
      if (!first) {
        first = &pname;
        device = p.data().device();
      }
      SIMBA_CHECK_HINT(p.data().device() == device,
                       name_ << ": parameter '" << pname << "' is on " << p.data().device().str() << ", '"
                             << *first << "' on " << device.str(),
                       "move the whole model with Module::to(device) before creating the optimiser");
      SIMBA_CHECK(names.insert(pname).second, name_ << ": two parameters are named '" << pname << "'");
      SIMBA_CHECK(seen.insert(p.impl().get()).second,
                  name_ << ": parameter '" << pname << "' is listed twice (under two names or in two groups)");
    }
  }
}

void Optimizer::zero_grad() {
  for (auto& group : groups_)
    for (auto& named : group.params) named.second.zero_grad();
}

void Optimizer::set_lr(double lr) {
  SIMBA_CHECK(std::isfinite(lr) && lr >= 0.0, name_ << ": learning rate " << lr << ", expected a finite value >= 0");
  lr_ = lr;
}

void Optimizer::set_grad_scale(const Tensor& scale) {
  if (scale.defined())
    SIMBA_CHECK(scale.numel() == 1 && (scale.dtype() == DType::F32 || scale.dtype() == DType::F64),
                name_ << ": gradient scale of shape " << shape_str(scale.shape()) << " and dtype "
                      << dtype_name(scale.dtype()) << ", expected one float32 or float64 element");
  grad_scale_ = scale;
}

Tensor Optimizer::grad_scale_as(DType dt, Device dev) const {
  if (!grad_scale_.defined()) return Tensor();
  SIMBA_CHECK(grad_scale_.device() == dev, name_ << ": the gradient scale is on " << grad_scale_.device().str()
                                                 << ", the parameters on " << dev.str());
  return grad_scale_.dtype() == dt ? grad_scale_.contiguous() : grad_scale_.to(dt);
}

void Optimizer::retract_step() {
  SIMBA_CHECK(step_count() > 0, name_ << ": retract_step before any step");
  --step_count_.data<int64_t>()[0];
  retract_counts();
}

int64_t Optimizer::step_count() const { return step_count_.data<int64_t>()[0]; }

void Optimizer::count_step() {
  ++step_count_.data<int64_t>()[0];
  grad_scale_ = Tensor();
}

Tensor Optimizer::grad_of(const std::string& name, const Variable& p) const {
  const Tensor& g = p.grad();
  if (!g.defined()) return Tensor();
  SIMBA_CHECK(g.dtype() == p.dtype(), name_ << ": gradient of '" << name << "' is " << dtype_name(g.dtype())
                                            << ", the parameter is " << dtype_name(p.dtype()));
  return g.contiguous();
}

void Optimizer::set_bfloat16_copies(const NamedTensors& copies) {
  std::map<std::string, const Tensor*> given;
  for (const auto& [n, t] : copies)
    SIMBA_CHECK(given.emplace(n, &t).second, name_ << "::set_bfloat16_copies: two copies are named '" << n << "'");
  std::vector<std::vector<Tensor>> out(groups_.size());
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    for (const auto& [pname, p] : groups_[gi].params) {
      auto it = given.find(pname);
      out[gi].push_back(it == given.end() ? Tensor() : *it->second);
      if (it == given.end()) continue;
      const Tensor& c = *it->second;
      SIMBA_CHECK(c.defined() && c.dtype() == DType::BF16 && c.shape() == p.shape() && c.is_contiguous() &&
                      c.device() == p.data().device(),
                  name_ << "::set_bfloat16_copies: the copy of '" << pname << "' is "
                        << (c.defined() ? std::string(dtype_name(c.dtype())) + " " + shape_str(c.shape()) + " on " +
                                              c.device().str() + (c.is_contiguous() ? "" : ", not contiguous")
                                        : std::string("undefined"))
                        << ", expected a contiguous bfloat16 " << shape_str(p.shape()) << " on "
                        << p.data().device().str());
      given.erase(it);
    }
  }
  SIMBA_CHECK(given.empty(), name_ << "::set_bfloat16_copies: '" << given.begin()->first
                                   << "' is not a parameter of this optimiser");
  copies_ = std::move(out);
}

bfloat16* Optimizer::copy_of(size_t g, size_t p) const {
  if (copies_.empty() || !copies_[g][p].defined()) return nullptr;
  return copies_[g][p].device_data<bfloat16>();
}

NamedTensors Optimizer::state_tensors() const {
  NamedTensors out = live_state();
  for (auto& entry : out) entry.second = entry.second.clone();
  return out;
}

void Optimizer::load_state(const NamedTensors& state) {
  const char* hint = "the state must come from state_tensors() of the same kind of optimiser over the same "
                     "parameters (same names, shapes and dtypes)";
  std::map<std::string, const Tensor*> given;
  for (const auto& [n, t] : state)
    SIMBA_CHECK_HINT(given.emplace(n, &t).second, name_ << "::load_state: entry '" << n << "' is given twice", hint);
  // Check everything before copying anything, so a bad state leaves the
  // optimiser as it was.
  NamedTensors live = live_state();
  std::set<std::string> expected;
  for (const auto& [n, t] : live) {
    expected.insert(n);
    auto it = given.find(n);
    SIMBA_CHECK_HINT(it != given.end(), name_ << "::load_state: missing entry '" << n << "' (expected "
                                              << dtype_name(t.dtype()) << " " << shape_str(t.shape()) << ")",
                     hint);
    const Tensor& src = *it->second;
    SIMBA_CHECK_HINT(src.defined(), name_ << "::load_state: entry '" << n << "' is an undefined tensor", hint);
    SIMBA_CHECK_HINT(src.shape() == t.shape() && src.dtype() == t.dtype(),
                     name_ << "::load_state: entry '" << n << "' is " << dtype_name(src.dtype()) << " "
                           << shape_str(src.shape()) << ", expected " << dtype_name(t.dtype()) << " "
                           << shape_str(t.shape()),
                     hint);
  }
  for (const auto& entry : given)
    SIMBA_CHECK_HINT(expected.count(entry.first), name_ << "::load_state: unexpected entry '" << entry.first << "'",
                     hint);
  // Same dtype, so copy_ moves the exact bits.
  for (auto& [n, t] : live) t.copy_(*given.at(n));
}

// ---------------------------------------------------------------- SGD

SGD::SGD(std::vector<ParamGroup> groups, const SGDOptions& options)
    : Optimizer(std::move(groups), options.lr, "SGD"), momentum_(options.momentum) {
  SIMBA_CHECK(std::isfinite(momentum_) && momentum_ >= 0.0,
              "SGD: momentum " << momentum_ << ", expected a finite value >= 0");
  if (momentum_ == 0.0) return;
  for (const auto& group : groups_) {
    buffers_.emplace_back();
    for (const auto& named : group.params)
      buffers_.back().push_back(
          Tensor::zeros(named.second.shape(), named.second.dtype(), named.second.data().device()));
  }
}

void SGD::step() {
  NoGradGuard no_grad;
  // One kernel call per (group, dtype): every parameter of a group that has a gradient.
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& group = groups_[gi];
    for (DType dt : {DType::F32, DType::F64}) {
      SIMBA_DISPATCH_FLOAT(dt, "SGD::step", [&] {
        std::vector<OptimTensor<scalar_t>> d;
        std::vector<Tensor> grads;  // the contiguous gradients the descriptors point into
        Device dev;
        for (size_t pi = 0; pi < group.params.size(); ++pi) {
          const auto& [pname, p] = group.params[pi];
          if (p.dtype() != dt) continue;
          const Tensor g = grad_of(pname, p);
          if (!g.defined()) continue;
          const Tensor buffer = buffers_.empty() ? Tensor() : buffers_[gi][pi];
          // A model moved after the optimiser was made would leave its buffers behind.
          dev = op_device("SGD::step", {p.data(), g, buffer});
          grads.push_back(g);
          // p.data() is a view of the parameter: the kernel updates it in place.
          scalar_t* buf = buffer.defined() ? buffer.device_data<scalar_t>() : nullptr;
          d.push_back({p.data().device_data<scalar_t>(), g.device_data<scalar_t>(), buf, nullptr, p.numel(), 1,
                       copy_of(gi, pi)});
        }
        if (d.empty()) return;
        const Tensor table = descriptor_table(d, dev), scale = grad_scale_as(dt, dev);
        SIMBA_DISPATCH_KERNEL(dev, dt, "SGD::step", sgd_step, descriptors_of<OptimTensor<scalar_t>>(table),
                              static_cast<int64_t>(d.size()), SGDStep{lr_, momentum_, group.weight_decay},
                              scale.defined() ? scale.device_data<scalar_t>() : nullptr);
      });
    }
  }
  count_step();
}

NamedTensors SGD::live_state() const {
  NamedTensors out{{"step", step_count_}};
  for (size_t gi = 0; gi < buffers_.size(); ++gi)
    for (size_t pi = 0; pi < buffers_[gi].size(); ++pi)
      out.emplace_back("momentum_buffer." + groups_[gi].params[pi].first, buffers_[gi][pi]);
  return out;
}

// ---------------------------------------------------------------- AdamW

AdamW::AdamW(std::vector<ParamGroup> groups, const AdamWOptions& options)
    : Optimizer(std::move(groups), options.lr, "AdamW"), options_(options) {
  SIMBA_CHECK(options.beta1 >= 0.0 && options.beta1 < 1.0, "AdamW: beta1 " << options.beta1 << ", expected [0, 1)");
  SIMBA_CHECK(options.beta2 >= 0.0 && options.beta2 < 1.0, "AdamW: beta2 " << options.beta2 << ", expected [0, 1)");
  SIMBA_CHECK(std::isfinite(options.eps) && options.eps >= 0.0,
              "AdamW: eps " << options.eps << ", expected a finite value >= 0");
  for (const auto& group : groups_) {
    exp_avg_.emplace_back();
    exp_avg_sq_.emplace_back();
    steps_.emplace_back();
    for (const auto& named : group.params) {
      const Variable& p = named.second;
      // Zero moments and t = 0 are exactly PyTorch's lazily created state.
      exp_avg_.back().push_back(Tensor::zeros(p.shape(), p.dtype(), p.data().device()));
      exp_avg_sq_.back().push_back(Tensor::zeros(p.shape(), p.dtype(), p.data().device()));
      steps_.back().push_back(Tensor::zeros({}, DType::I64));
    }
  }
}

AdamW::AdamW(const NamedVariables& params, const AdamWOptions& options, double weight_decay)
    : AdamW(std::vector<ParamGroup>{ParamGroup{params, weight_decay}}, options) {}

void AdamW::step() {
  NoGradGuard no_grad;
  counted_.clear();
  // One kernel call per (group, dtype, step count t): in a run where every parameter always
  // has a gradient, one per group.
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& group = groups_[gi];
    for (DType dt : {DType::F32, DType::F64}) {
      SIMBA_DISPATCH_FLOAT(dt, "AdamW::step", [&] {
        std::map<int64_t, std::vector<OptimTensor<scalar_t>>> by_t;
        std::vector<Tensor> grads;  // the contiguous gradients the descriptors point into
        Device dev;
        for (size_t pi = 0; pi < group.params.size(); ++pi) {
          const auto& [pname, p] = group.params[pi];
          if (p.dtype() != dt) continue;
          const Tensor g = grad_of(pname, p);
          if (!g.defined()) continue;
          // A model moved after the optimiser was made would leave its moments behind.
          dev = op_device("AdamW::step", {p.data(), g, exp_avg_[gi][pi], exp_avg_sq_[gi][pi]});
          grads.push_back(g);
          const int64_t t = ++steps_[gi][pi].data<int64_t>()[0];
          counted_.push_back(steps_[gi][pi]);
          // p.data() is a view of the parameter: the kernel updates it in place.
          by_t[t].push_back({p.data().device_data<scalar_t>(), g.device_data<scalar_t>(),
                             exp_avg_[gi][pi].device_data<scalar_t>(), exp_avg_sq_[gi][pi].device_data<scalar_t>(),
                             p.numel(), 1, copy_of(gi, pi)});
        }
        if (by_t.empty()) return;
        const Tensor scale = grad_scale_as(dt, dev);
        for (const auto& entry : by_t) {  // not a structured binding: C++17 cannot capture one in the lambda below
          const int64_t t = entry.first;
          const auto& d = entry.second;
          const AdamWStep s{lr_, options_.beta1, options_.beta2, options_.eps, group.weight_decay, t};
          const Tensor table = descriptor_table(d, dev);
          SIMBA_DISPATCH_KERNEL(dev, dt, "AdamW::step", adamw_step, descriptors_of<OptimTensor<scalar_t>>(table),
                                static_cast<int64_t>(d.size()), s,
                                scale.defined() ? scale.device_data<scalar_t>() : nullptr);
        }
      });
    }
  }
  count_step();
}

void AdamW::retract_counts() {
  for (const Tensor& t : counted_) --t.data<int64_t>()[0];
  counted_.clear();
}

NamedTensors AdamW::live_state() const {
  NamedTensors out{{"step", step_count_}};
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
      const std::string& pname = groups_[gi].params[pi].first;
      out.emplace_back("exp_avg." + pname, exp_avg_[gi][pi]);
      out.emplace_back("exp_avg_sq." + pname, exp_avg_sq_[gi][pi]);
      out.emplace_back("step." + pname, steps_[gi][pi]);
    }
  }
  return out;
}

// ---------------------------------------------------------------- clipping

namespace {
// The contiguous gradients of the parameters that have one, checked: float32 or float64, all on
// one device. op names the caller in errors.
std::vector<Tensor> gradients_of(const char* op, const std::vector<Variable>& params) {
  std::vector<Tensor> grads;
  for (size_t i = 0; i < params.size(); ++i) {
    SIMBA_CHECK(params[i].defined(), op << ": parameter " << i << " is an undefined Variable");
    const Tensor& g = params[i].grad();
    if (!g.defined()) continue;
    SIMBA_CHECK_HINT(g.dtype() == DType::F32 || g.dtype() == DType::F64,
                     op << ": the gradient of parameter " << i << " is " << dtype_name(g.dtype())
                                                                  << ", expected float32 or float64: the norm and "
                                                                     "the clipping belong to the optimiser step",
                     "mixed precision clips the gradients of the float32 master weights");
    grads.push_back(g.contiguous());
    check_same_device(op, grads.front(), grads.back());
  }
  return grads;
}

// One grad_norm_* call over the gradients of dtype dt among grads (at least one): *norm and, if
// clip_scale is non-null, its step_scale (a dt), both in memory of the gradients' device.
void launch_grad_norm(const char* op, const std::vector<Tensor>& grads, DType dt, double* norm, void* clip_scale,
                      double max_norm) {
  const Device dev = grads.front().device();
  SIMBA_DISPATCH_FLOAT(dt, op, [&] {
    std::vector<OptimTensor<scalar_t>> d;
    for (const Tensor& g : grads)
      if (g.dtype() == dt) d.push_back({nullptr, g.device_data<scalar_t>(), nullptr, nullptr, g.numel(), 0});
    const Tensor table = descriptor_table(d, dev);
    SIMBA_DISPATCH_KERNEL(dev, dt, op, grad_norm, norm, static_cast<scalar_t*>(clip_scale),
                          descriptors_of<OptimTensor<scalar_t>>(table), static_cast<int64_t>(d.size()), max_norm);
  });
}
}  // namespace

GradientNorm gradient_norm(const std::vector<Variable>& params, double max_norm) {
  const char* op = "gradient_norm";
  SIMBA_CHECK(max_norm > 0.0, op << ": max_norm " << max_norm << ", expected a value > 0 (+inf: no clipping)");
  const std::vector<Tensor> grads = gradients_of(op, params);
  if (grads.empty()) return {Tensor::zeros({}, DType::F64, params.empty() ? cpu() : params.front().data().device()),
                             Tensor()};
  const DType dt = grads.front().dtype();
  for (const Tensor& g : grads)
    SIMBA_CHECK(g.dtype() == dt, op << ": the gradients are " << dtype_name(dt) << " and " << dtype_name(g.dtype())
                                    << ", expected one dtype (the scale is one value of the parameters' dtype)");
  GradientNorm r{Tensor::empty({}, DType::F64, grads.front().device()), Tensor::empty({}, dt, grads.front().device())};
  launch_grad_norm(op, grads, dt, r.norm.device_data<double>(), r.scale.raw_data(), max_norm);
  return r;
}

void widen_gradients(const std::vector<std::pair<Variable, Variable>>& copy_and_master) {
  const char* op = "widen_gradients";
  std::vector<WidenTensor> d;
  std::vector<Tensor> sources;  // the gradients the descriptors read, alive until the call is queued
  std::vector<std::pair<Variable, Tensor>> results;
  Device dev;
  for (const auto& [copy, master] : copy_and_master) {
    const Tensor& g = copy.grad();
    if (!g.defined()) continue;
    SIMBA_CHECK(g.dtype() == DType::BF16 && master.dtype() == DType::F32 && g.shape() == master.shape(),
                op << ": expected a bfloat16 gradient and a float32 master of one shape, got a "
                   << dtype_name(g.dtype()) << " gradient " << shape_str(g.shape()) << " and a "
                   << dtype_name(master.dtype()) << " master " << shape_str(master.shape()));
    const Tensor src = g.contiguous();
    dev = op_device(op, {sources.empty() ? src : sources.front(), src, master.data()});
    Tensor dst = Tensor::empty(g.shape(), DType::F32, dev);
    d.push_back({dst.device_data<float>(), src.device_data<bfloat16>(), src.numel()});
    sources.push_back(src);
    results.emplace_back(master, dst);
  }
  if (d.empty()) return;
  const Tensor table = descriptor_table(d, dev);
  SIMBA_ON_DEVICE(dev, op, widen_gradients, descriptors_of<WidenTensor>(table), static_cast<int64_t>(d.size()));
  for (auto& [master, dst] : results) {
    Variable m = master;  // a handle: set_grad reaches the caller's parameter
    m.set_grad(dst);
  }
  for (const auto& [copy, master] : copy_and_master) {
    Variable c = copy;
    c.zero_grad();
  }
}

double clip_grad_norm(const std::vector<Variable>& params, double max_norm) {
  const char* op = "clip_grad_norm";
  SIMBA_CHECK(std::isfinite(max_norm) && max_norm > 0.0,
              op << ": max_norm " << max_norm << ", expected a finite value > 0");
  const std::vector<Tensor> grads = gradients_of(op, params);
  if (grads.empty()) return 0.0;
  // One norm per dtype, computed where the gradients live, then read together (one copy).
  const DType dtypes[] = {DType::F32, DType::F64};
  Tensor norms = Tensor::zeros({2}, DType::F64, grads.front().device());
  for (int k = 0; k < 2; ++k)
    if (std::any_of(grads.begin(), grads.end(), [&](const Tensor& g) { return g.dtype() == dtypes[k]; }))
      launch_grad_norm(op, grads, dtypes[k], norms.device_data<double>() + k, nullptr, max_norm);
  const std::vector<double> n = norms.to_vector();
  // A single dtype (every model) gives its norm unchanged; mixed ones combine in quadrature.
  const double total = n[1] == 0.0 ? n[0] : (n[0] == 0.0 ? n[1] : std::sqrt(n[0] * n[0] + n[1] * n[1]));
  const double coef = clip_factor(total, max_norm);
  if (coef == 1.0) return total;
  for (Variable p : params) {  // a handle: set_grad reaches the caller's parameter
    if (!p.grad().defined()) continue;
    p.set_grad(affine(p.grad(), coef, 0.0));
  }
  return total;
}

}  // namespace simba
