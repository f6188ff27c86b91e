// tensor/checked_math.h: int64 size arithmetic that cannot overflow
// silently, and the memory budget that sizes are checked against before
// anything large is allocated.
//
// Shapes, strides, byte counts, parameter counts and batch·length products
// come from files and flags a user controls; a product that wraps around
// 64 bits becomes a small, negative or plausible number that the allocator
// then trusts. Every such product goes through these helpers, which throw a
// simba::Error naming what was being computed instead:
//
//   int64_t di = checked_mul(expand, hidden_size, "intermediate_size = expand x hidden_size");
//   int64_t n = checked_mul(n, d, [&] { return "the element count of shape " + shape_str(s); });
//
// `what` is a string, or a callable returning one when the description
// depends on runtime values: it is only evaluated when the check fails, so
// the fast path builds nothing. Operands are sizes, so a negative operand is
// an error too (a size that is already wrong).
#pragma once

#include <cstdint>
#include <string>

namespace simba {

// Throws the error of a failed check: the operands as given and the fact that
// the exact result exceeds 2^63 - 1 (or that an operand is negative), never a
// wrapped number.
[[noreturn]] void size_overflow(const char* op, int64_t a, int64_t b, const std::string& what);

namespace detail {
inline std::string describe(const char* what) { return what; }
inline std::string describe(const std::string& what) { return what; }
template <class F>
std::string describe(const F& what) {
  return what();
}
}  // namespace detail

template <class What>
int64_t checked_mul(int64_t a, int64_t b, const What& what) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) size_overflow("x", a, b, detail::describe(what));
  return r;
}

template <class What>
int64_t checked_add(int64_t a, int64_t b, const What& what) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r)) size_overflow("+", a, b, detail::describe(what));
  return r;
}

// Bytes of physical memory of this host (sysconf(_SC_PHYS_PAGES) pages).
uint64_t host_memory_bytes();

// Throws unless `bytes` fit in host_memory_bytes(). `what` says what needs
// them and names the config field or flag that asked for them ("the logits of
// --batch-size x --seq-len x vocab_size"); `hint` says how to ask for less.
// A request beyond physical memory can only end in an allocation failure or
// swapping for minutes, so it is refused before the first byte is allocated.
void check_memory_budget(int64_t bytes, const std::string& what, const std::string& hint);

}  // namespace simba
