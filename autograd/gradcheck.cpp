#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "tensor/ops.h"

namespace simba {

namespace {
double weighted_sum(const Tensor& y, const Tensor& g) { return sum(mul(y, g)).item(); }

std::string index_str(const Shape& shape, int64_t flat) {
  std::vector<int64_t> idx(shape.size());
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    idx[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  return shape_str(Shape(idx.begin(), idx.end()));
}
}  // namespace

GradcheckResult gradcheck_variables(const std::function<Variable()>& run, const std::vector<Variable>& wrt,
                                    const std::vector<std::string>& names, const GradcheckOptions& opt) {
  for (size_t i = 0; i < wrt.size(); ++i) {
    SIMBA_CHECK_HINT(wrt[i].dtype() == DType::F64 && wrt[i].data().is_contiguous() && wrt[i].is_leaf(),
                     "gradcheck: '" << names[i] << "' must be a contiguous float64 leaf, got "
                                    << dtype_name(wrt[i].dtype()),
                     "finite differences need float64");
  }
  for (Variable v : wrt) v.zero_grad();  // a handle: clears the shared gradient
  // Analytic gradients of Σ y·g.
  Variable y = run();
  Generator gen(opt.seed);
  Tensor g = randn(y.shape(), gen, DType::F64);
  y.backward(g);

  auto eval = [&]() {
    NoGradGuard no_grad;
    return weighted_sum(run().data(), g);
  };
  GradcheckResult result;
  for (size_t i = 0; i < wrt.size(); ++i) {
    Tensor x = wrt[i].data();
    Tensor analytic = wrt[i].grad().defined() ? wrt[i].grad().contiguous() : Tensor::zeros(x.shape(), DType::F64);
    double* p = x.data<double>();
    const double* a = analytic.data<double>();
    for (int64_t k = 0; k < x.numel(); ++k) {
      const double saved = p[k];
      auto at = [&](double step) {
        p[k] = saved + step;
        return eval();
      };
      const double h = opt.eps;
      const double numeric = (8 * (at(h) - at(-h)) - (at(2 * h) - at(-2 * h))) / (12 * h);
      p[k] = saved;
      const double err = std::fabs(a[k] - numeric) / std::max({std::fabs(a[k]), std::fabs(numeric), opt.floor});
      ++result.checked;
      if (!(err <= result.max_error)) {  // also catches NaN
        result.max_error = std::isnan(err) ? INFINITY : err;
        std::ostringstream w;
        w << names[i] << " element " << index_str(x.shape(), k) << ": analytic " << a[k] << ", numeric " << numeric;
        result.where = w.str();
      }
    }
  }
  result.ok = result.max_error <= opt.tolerance;
  return result;
}

GradcheckResult gradcheck(const GradcheckFn& f, const std::vector<Tensor>& inputs, const GradcheckOptions& opt) {
  std::vector<Variable> vars, wrt;
  std::vector<std::string> names;
  for (size_t i = 0; i < inputs.size(); ++i) {
    SIMBA_CHECK_HINT(inputs[i].dtype() == DType::F64, "gradcheck: input " << i << " is " << dtype_name(inputs[i].dtype()),
                     "finite differences need float64 inputs");
    const bool checked = opt.check.empty() || (i < opt.check.size() && opt.check[i]);
    vars.emplace_back(inputs[i].clone(), checked);
    if (checked) {
      wrt.push_back(vars.back());
      names.push_back("input " + std::to_string(i));
    }
  }
  return gradcheck_variables([&] { return f(vars); }, wrt, names, opt);
}

}  // namespace simba
