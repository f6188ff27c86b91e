#include "train/cli_options.h"

#include <charconv>
#include <cmath>

#include "tensor/checked_math.h"

namespace simba {

CLI::Validator integer_in(int64_t lo, int64_t hi) {
  const bool bounded = hi != std::numeric_limits<int64_t>::max();
  const std::string hi_text = bounded ? std::to_string(hi) : std::to_string(hi) + " (2^63 - 1)";
  const std::string range =
      bounded ? "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]" : ">= " + std::to_string(lo);
  return CLI::Validator(
      [lo, hi, hi_text, range](std::string& s) -> std::string {
        int64_t v = 0;
        const char* end = s.data() + s.size();
        const auto [ptr, ec] = std::from_chars(s.data(), end, v);
        // The message names the bound the value breaks.
        const std::string below = "expected an integer >= " + std::to_string(lo) + ", got '" + s + "'";
        const std::string above = "expected an integer <= " + hi_text + ", got '" + s + "'";
        if (s.empty() || ptr != end || ec == std::errc::invalid_argument)
          return "expected an integer " + range + ", got '" + s + "'";
        if (ec == std::errc::result_out_of_range) return s[0] == '-' ? below : above;
        if (v < lo) return below;
        if (v > hi) return above;
        s = std::to_string(v);
        return "";
      },
      "INT " + range);
}

CLI::Validator seed_value() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        uint64_t v = 0;
        const char* end = s.data() + s.size();
        const auto [ptr, ec] = std::from_chars(s.data(), end, v);
        if (s.empty() || ptr != end || ec != std::errc()) return "expected an integer in [0, 2^64), got '" + s + "'";
        s = std::to_string(v);
        return "";
      },
      "UINT64");
}

CLI::Validator number_in(double lo, bool lo_closed, double hi, bool hi_closed, const std::string& what,
                         const std::string& name) {
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        double v = 0.0;
        const bool ok = CLI::detail::lexical_cast(s, v) && std::isfinite(v) && (lo_closed ? v >= lo : v > lo) &&
                        (hi_closed ? v <= hi : v < hi);
        return ok ? "" : "expected " + what + ", got '" + s + "'";
      },
      name);
}

void check_batch_budget(int64_t batch, const char* batch_flag, int64_t length, const char* length_flag,
                        int64_t vocab) {
  const std::string what = std::string("the float32 logits of one batch, ") + batch_flag + " x " + length_flag +
                           " x vocab_size (" + std::to_string(vocab) + ") x 4 bytes,";
  const int64_t tokens = checked_mul(batch, length, [&] { return std::string(batch_flag) + " x " + length_flag; });
  const int64_t bytes = checked_mul(checked_mul(tokens, vocab, what), 4, what);
  check_memory_budget(bytes, what,
                      std::string("reduce ") + batch_flag + " or " + length_flag + " (" + batch_flag + " " +
                          std::to_string(batch) + ", " + length_flag + " " + std::to_string(length) + ")");
}

}  // namespace simba
