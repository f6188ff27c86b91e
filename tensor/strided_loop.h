// tensor/strided_loop.h: the one loop nest behind every elementwise kernel.
//
// Visits every index of `shape` for N operands that each have their own
// strides (0 for broadcast dims). Adjacent dims that are laid out back to back
// in every operand are merged first, so contiguous operands become one flat
// row and the kernel's inner loop is a plain `for (i < n)` that the compiler
// vectorises. Rows (and, for one huge row, chunks of it) are spread over
// OpenMP threads once there is enough work to pay for it.
//
//   for_each_strided<2>(shape, {out.strides(), in.strides()},
//     [&](const std::array<int64_t,2>& off, int64_t n, const std::array<int64_t,2>& step) {
//       for (int64_t i = 0; i < n; ++i) po[off[0] + i*step[0]] = f(pi[off[1] + i*step[1]]);
//     });
// Offsets are in elements, relative to each operand's element 0.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "tensor/strided_layout.h"
#include "tensor/tensor.h"

namespace simba {

// Below this many elements a kernel runs on the calling thread only.
constexpr int64_t kParallelGrain = 32768;

template <size_t N, class Inner>
void for_each_strided(const Shape& shape, const std::array<Shape, N>& strides, Inner inner) {
  Shape sh;
  std::array<Shape, N> st;
  coalesce_dims<N>(shape, strides, sh, st);
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  if (numel == 0) return;
  if (sh.empty()) {  // a single element
    std::array<int64_t, N> off{}, step{};
    inner(off, int64_t(1), step);
    return;
  }
  const int nd = static_cast<int>(sh.size());
  const int64_t n = sh.back();
  const int64_t rows = numel / n;
  std::array<int64_t, N> step;
  for (size_t k = 0; k < N; ++k) step[k] = st[k].back();
  // Split long rows so that even a single contiguous row uses every thread.
  const int64_t chunk = n > kParallelGrain ? kParallelGrain : n;
  const int64_t chunks_per_row = (n + chunk - 1) / chunk;
  const int64_t tasks = rows * chunks_per_row;
#pragma omp parallel for schedule(static) if (numel > kParallelGrain)
  for (int64_t task = 0; task < tasks; ++task) {
    int64_t row = task / chunks_per_row, c = task % chunks_per_row;
    std::array<int64_t, N> off{};
    int64_t r = row;
    for (int d = nd - 2; d >= 0; --d) {
      int64_t i = r % sh[d];
      r /= sh[d];
      for (size_t k = 0; k < N; ++k) off[k] += i * st[k][d];
    }
    int64_t begin = c * chunk, len = (begin + chunk <= n) ? chunk : n - begin;
    for (size_t k = 0; k < N; ++k) off[k] += begin * step[k];
    inner(off, len, step);
  }
}

}  // namespace simba
