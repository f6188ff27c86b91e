#include "train/cli_options.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <optional>

#include "tensor/checked_math.h"
#include "tensor/cuda_device.h"
#include "tensor/error.h"

namespace simba {

namespace {

// The device a --device text other than "auto" names; nothing for a malformed text.
std::optional<Device> named_device(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda") return Device{DeviceType::CUDA, 0};
  const std::string prefix = "cuda:";
  if (s.size() <= prefix.size() || s.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  int index = -1;
  const char* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data() + prefix.size(), end, index);  // decimal; "-1" parses
  if (ec != std::errc() || ptr != end || index < 0) return std::nullopt;
  return Device{DeviceType::CUDA, index};
}

std::string device_form_error(const std::string& s) {
  return "expected cpu, cuda, cuda:N or auto, got '" + s + "'";
}

}  // namespace

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

CLI::Validator byte_size() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        const std::string expected =
            "expected a size in bytes > 0 (digits with an optional unit B, KB, MB, GB, TB, KiB, MiB, GiB or TiB), "
            "got '" + s + "'";
        uint64_t v = 0;
        const char* end = s.data() + s.size();
        const auto [ptr, ec] = std::from_chars(s.data(), end, v);
        if (ptr == s.data() || ec == std::errc::invalid_argument) return expected;
        std::string unit(ptr, end);
        for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        const std::pair<const char*, uint64_t> units[] = {
            {"", 1},         {"B", 1},           {"KB", 1000},       {"MB", 1000000},    {"GB", 1000000000},
            {"TB", 1000000000000}, {"KIB", 1ull << 10}, {"MIB", 1ull << 20}, {"GIB", 1ull << 30}, {"TIB", 1ull << 40}};
        for (const auto& [name, scale] : units) {
          if (unit != name) continue;
          if (ec == std::errc::result_out_of_range || v > std::numeric_limits<uint64_t>::max() / scale)
            return "the size '" + s + "' does not fit in 64 bits";
          if (v == 0) return expected;
          s = std::to_string(v * scale);
          return "";
        }
        return expected;
      },
      "SIZE");
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

Device parse_device(const std::string& text, const std::string& flag) {
  if (text == "auto") return cuda_device_count() > 0 ? Device{DeviceType::CUDA, 0} : cpu();
  const std::optional<Device> device = named_device(text);
  SIMBA_CHECK(device, flag << ": " << device_form_error(text));
  return *device;
}

CLI::Option* add_device_option(CLI::App* cmd, Device& device) {
  return cmd
      ->add_option_function<std::string>(
          "--device", [&device](const std::string& text) { device = parse_device(text); },
          "where the model runs: cpu, cuda (= cuda:0), cuda:N, or auto (cuda:0 when a CUDA device is usable, "
          "else cpu)")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string { return s == "auto" || named_device(s) ? "" : device_form_error(s); },
          "DEVICE"))
      ->default_str("cpu");
}

void check_device(Device device, const std::string& flag) {
  if (device.is_cpu()) return;
  const std::string what = flag + " " + device.str();
  SIMBA_CHECK_HINT(cuda_compiled_in(), what << ": CUDA not compiled in (this simba was built without the CUDA backend)",
                   "rebuild simba with the CUDA toolkit installed (cmake -DSIMBA_CUDA=ON), or use " << flag << " cpu");
  const int count = cuda_device_count();
  SIMBA_CHECK_HINT(count > 0, what << ": no CUDA device is usable here (" << cuda_unavailable_reason() << ")",
                   "use " << flag << " cpu, or run on a machine with an NVIDIA GPU and its driver");
  SIMBA_CHECK_HINT(device.index < count, what << ": no such CUDA device (" << count << " usable)",
                   "use " << flag << " cuda:0" << (count > 1 ? " .. cuda:" + std::to_string(count - 1) : std::string()));
}

}  // namespace simba
