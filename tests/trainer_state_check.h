// tests/trainer_state_check.h: what the trainer tests (tests/test_trainer.cpp,
// tests/test_cuda_train.cpp) share: a tiny model config and the bit-for-bit comparison of two
// trainers' whole state (parameters, optimiser state, step, data cursor), wherever each keeps
// its tensors.
#pragma once

#include <doctest/doctest.h>

#include <cstring>

#include "train/trainer.h"

namespace simba {

// The demo config (byte vocabulary) shrunk to a few thousand parameters.
inline MambaConfig tiny_train_config() {
  MambaConfig c = demo_model_config();
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.state_size = 4;
  c.time_step_rank = MambaConfig::auto_time_step_rank(c.hidden_size);
  return c;
}

// Same shape, dtype and bytes; either tensor may live on a GPU.
inline bool same_bytes(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor ca = a.to(cpu()).contiguous(), cb = b.to(cpu()).contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), static_cast<size_t>(ca.numel()) * dtype_size(ca.dtype())) == 0;
}

inline void check_same_state(const Trainer& a, const Trainer& b) {
  const auto pa = a.model().state_tensors(), pb = b.model().state_tensors();
  REQUIRE(pa.size() == pb.size());
  for (const auto& [name, t] : pa) {
    INFO("parameter " << name);
    CHECK(same_bytes(t, pb.at(name)));
  }
  const NamedTensors sa = a.optimizer().state_tensors(), sb = b.optimizer().state_tensors();
  REQUIRE(sa.size() == sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    INFO("optimiser state " << sa[i].first);
    CHECK(sa[i].first == sb[i].first);
    CHECK(same_bytes(sa[i].second, sb[i].second));
  }
  CHECK(a.step() == b.step());
  CHECK(a.data().cursor_state() == b.data().cursor_state());
}

}  // namespace simba
