// tensor/random.h: seeded, reproducible random numbers.
//
// Generator wraps std::mt19937_64, whose output sequence the C++ standard
// fixes, and draws normals with our own Box-Muller transform (std's
// distributions are implementation-defined), so a seed gives the same
// numbers on every compiler and machine. Its state can be saved and restored
// exactly, which a bit-identical training resume needs.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "tensor/tensor.h"

namespace simba {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0);
  void seed(uint64_t seed);
  uint64_t next_u64();
  double uniform();                     // [0, 1), 53 random bits
  double normal();                      // N(0, 1)
  int64_t randint(int64_t lo, int64_t hi);  // uniform integer in [lo, hi)
  std::string state() const;            // exact, for checkpoints
  void set_state(const std::string& s); // throws on a malformed state

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;  // Box-Muller makes normals in pairs
  double spare_ = 0.0;
};

// In-place fills (any float tensor view, on any device), values drawn in row-major order.
// The numbers are drawn on the host and copied: a seed gives the same values on the CPU and on
// a GPU, which is what lets a model initialised on either train to the same numbers.
void uniform_(Tensor& t, Generator& g, double lo = 0.0, double hi = 1.0);
void normal_(Tensor& t, Generator& g, double mean = 0.0, double std = 1.0);

Tensor randn(const Shape& shape, Generator& g, DType dtype = DType::F32, Device device = cpu());
Tensor rand(const Shape& shape, Generator& g, DType dtype = DType::F32, Device device = cpu());  // U[0, 1)

}  // namespace simba
