// nn/init.cpp: the PyTorch default initialisation rules and inverse softplus.
#include "nn/init.h"

#include <cmath>

namespace simba {

int64_t fan_in(const Shape& weight_shape) {
  SIMBA_CHECK(weight_shape.size() >= 2,
              "fan_in: expected a weight of shape (out, in, ...), got " << shape_str(weight_shape));
  int64_t n = 1;
  for (size_t d = 1; d < weight_shape.size(); ++d) n *= weight_shape[d];
  SIMBA_CHECK(n > 0, "fan_in: weight of shape " << shape_str(weight_shape) << " has no inputs");
  return n;
}

void kaiming_uniform_(Tensor& weight, Generator& g) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in(weight.shape())));
  uniform_(weight, g, -bound, bound);
}

void default_bias_uniform_(Tensor& bias, const Shape& weight_shape, Generator& g) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in(weight_shape)));
  uniform_(bias, g, -bound, bound);
}

double inverse_softplus(double y) {
  SIMBA_CHECK(y > 0, "inverse_softplus: softplus only takes positive values, got " << y);
  return y + std::log(-std::expm1(-y));
}

Tensor inverse_softplus(const Tensor& y) {
  SIMBA_CHECK(is_floating(y.dtype()), "inverse_softplus: expected a float tensor, got " << dtype_name(y.dtype()));
  std::vector<double> v = y.to_vector();
  for (double& e : v) e = inverse_softplus(e);
  return Tensor::from_vector(y.shape(), v, y.dtype());
}

}  // namespace simba
