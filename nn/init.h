// nn/init.h: seeded parameter initialisation rules shared by the layers.
//
// The raw draws (uniform_, normal_) live in tensor/random.h; this file adds
// the PyTorch default rules on top of them, so that a layer built here starts
// from the same distribution as its torch.nn counterpart (Mamba's training
// recipe keeps those defaults for every Linear weight and for the conv1d),
// plus the inverse softplus used for the dt bias.
#pragma once

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace simba {

// Inputs feeding one output of a weight laid out as (out, in, *kernel):
// in · Π kernel. Linear (out, in) -> in; depthwise Conv1d (C, 1, K) -> K.
int64_t fan_in(const Shape& weight_shape);

// PyTorch's default for Linear and Conv weights: kaiming_uniform_ with
// a = sqrt(5), i.e. gain = sqrt(2 / (1 + a²)) = sqrt(1/3) and
// bound = gain · sqrt(3 / fan_in) = 1 / sqrt(fan_in); draws U(−bound, bound).
void kaiming_uniform_(Tensor& weight, Generator& g);

// PyTorch's default bias for a layer whose weight has this shape:
// U(−1/sqrt(fan_in), 1/sqrt(fan_in)).
void default_bias_uniform_(Tensor& bias, const Shape& weight_shape, Generator& g);

// The x with softplus(x) = y, for y > 0: y + log(−expm1(−y)). expm1 keeps it
// exact for the small dt values (1e-3..1e-1) Mamba stores in dt_proj.bias,
// where log(1 − exp(−y)) would lose most digits.
double inverse_softplus(double y);
Tensor inverse_softplus(const Tensor& y);  // elementwise, float tensors, same dtype

}  // namespace simba
