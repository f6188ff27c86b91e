#include "tensor/random.h"

#include <cmath>
#include <sstream>

namespace simba {

Generator::Generator(uint64_t seed) { this->seed(seed); }

void Generator::seed(uint64_t seed) {
  engine_.seed(seed);
  has_spare_ = false;
  spare_ = 0.0;
}

uint64_t Generator::next_u64() { return engine_(); }

double Generator::uniform() { return static_cast<double>(engine_() >> 11) * (1.0 / 9007199254740992.0); }

double Generator::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  // Box-Muller: two uniforms give two independent N(0,1). 1 - u keeps the log finite.
  const double u1 = 1.0 - uniform(), u2 = uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double two_pi = 6.283185307179586476925286766559;
  spare_ = r * std::sin(two_pi * u2);
  has_spare_ = true;
  return r * std::cos(two_pi * u2);
}

int64_t Generator::randint(int64_t lo, int64_t hi) {
  SIMBA_CHECK(lo < hi, "randint: empty range [" << lo << ", " << hi << ")");
  const uint64_t span = static_cast<uint64_t>(hi - lo);
  // Rejection sampling removes the modulo bias of engine() % span.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % span;
  uint64_t v;
  do v = engine_();
  while (v >= limit);
  return lo + static_cast<int64_t>(v % span);
}

std::string Generator::state() const {
  std::ostringstream o;
  o << engine_ << ' ' << (has_spare_ ? 1 : 0) << ' ';
  o.precision(17);
  o << std::hexfloat << spare_;
  return o.str();
}

void Generator::set_state(const std::string& s) {
  std::istringstream in(s);
  std::mt19937_64 e;
  int spare_flag = 0;
  std::string spare_text;
  in >> e >> spare_flag >> spare_text;
  SIMBA_CHECK(!in.fail() && (spare_flag == 0 || spare_flag == 1),
              "malformed random generator state (" << s.size() << " characters)");
  engine_ = e;
  has_spare_ = spare_flag == 1;
  spare_ = std::strtod(spare_text.c_str(), nullptr);
}

namespace {
template <class Draw>
void fill_random(Tensor& t, const char* op, Draw draw) {
  SIMBA_CHECK(is_floating(t.dtype()), op << ": expected a float tensor, got " << dtype_name(t.dtype()));
  // Draw in row-major order into a contiguous buffer so that the values do not
  // depend on the view's strides, then copy through the view.
  Tensor buf = Tensor::empty(t.shape(), DType::F64);
  double* p = buf.numel() ? buf.data<double>() : nullptr;
  for (int64_t i = 0; i < buf.numel(); ++i) p[i] = draw();
  t.copy_(buf);
}
}  // namespace

void uniform_(Tensor& t, Generator& g, double lo, double hi) {
  fill_random(t, "uniform_", [&] { return lo + (hi - lo) * g.uniform(); });
}

void normal_(Tensor& t, Generator& g, double mean, double std) {
  fill_random(t, "normal_", [&] { return mean + std * g.normal(); });
}

Tensor randn(const Shape& shape, Generator& g, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  normal_(t, g);
  return t;
}

Tensor rand(const Shape& shape, Generator& g, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  uniform_(t, g);
  return t;
}

}  // namespace simba
