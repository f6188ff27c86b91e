// train/metrics_log.h: what a training run reports about itself: a JSONL
// metrics file for plots and scripts, a one-line progress summary for the
// terminal, a wall clock, and the bits-per-byte conversion of a loss.
//
// The metrics file is written one flushed line at a time, so a crashed or
// killed run leaves every record it completed readable, and `tail -f` or a
// plotting script can follow a live run. Every record has a "step".
//
// A run that starts at step s (0 for a new run, the checkpoint's step for a
// resumed one) first rewrites the file, atomically, to what the run up to
// that checkpoint logged: the records of steps < s and the training record
// (the one with "loss") of step s. Records a killed process wrote after its
// last checkpoint are dropped, since the resumed run repeats those steps, and
// so is its validation at step s, which the resumed run logs again: no step
// appears twice. A new run (s = 0) starts an empty file.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace simba {

class MetricsLog {
 public:
  // Rewrites `path` for a run starting at `start_step` (see above), creating
  // missing parent directories, and opens it for appending. Errors name the
  // path, and the line of a record that is not a JSON object with a "step".
  MetricsLog(const std::string& path, int64_t start_step);
  // Appends `record` (a JSON object) as one line and flushes it.
  void write(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

// "step  120/1000 | loss 2.3412 | lr 1.20e-03 | 5,210 tok/s | elapsed 0:41 | ETA 5:00"
// The step is right-aligned to the width of total_steps so successive lines
// line up. Durations are m:ss, or h:mm:ss from one hour on, rounded down.
// ETA = elapsed / step · (total_steps - step), assuming a constant step time;
// at step 0 there is no rate yet and it reads "ETA --:--".
std::string progress_line(int64_t step, int64_t total_steps, double loss, double tokens_per_sec,
                          double elapsed_seconds, double lr);

// Wall-clock seconds since construction or the last reset(), on the
// monotonic clock (immune to system clock changes during a long run).
class Stopwatch {
 public:
  Stopwatch() { reset(); }
  void reset() { start_ = std::chrono::steady_clock::now(); }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// A mean cross-entropy in nats per token as bits per byte of text:
// nats / ln 2 gives bits per token, / bytes_per_token gives bits per byte
// (bytes_per_token = 1 for ByteTokenizer; for BPE, text bytes / tokens). It
// makes losses of models with different tokenizers comparable.
double bits_per_byte(double mean_nats_per_token, double bytes_per_token = 1.0);

}  // namespace simba
