// nn/embedding.cpp: Embedding's parameter and its forward through the
// differentiable row gather of autograd/ops.h.
#include "nn/embedding.h"

#include "autograd/ops.h"

namespace simba {

Embedding::Embedding(int64_t V, int64_t D, Generator* g, DType dtype) : num_embeddings(V), dim(D) {
  SIMBA_CHECK(V > 0 && D > 0, "Embedding: sizes must be positive, got V " << V << ", D " << D);
  Tensor w = Tensor::empty({V, D}, dtype);
  if (g) normal_(w, *g);
  weight = register_parameter("weight", w);
}

Variable Embedding::forward(const Tensor& ids) const {
  SIMBA_CHECK(ids.dtype() == DType::I64,
              "Embedding: token ids must be int64, got " << dtype_name(ids.dtype()) << " of shape "
                                                         << shape_str(ids.shape()));
  return embedding(weight, ids);
}

}  // namespace simba
