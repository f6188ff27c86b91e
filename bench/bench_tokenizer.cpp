// bench/bench_tokenizer.cpp: encoding throughput of the tokenizer.json BPE
// tokenizer (train/bpe_tokenizer.h), in MB of UTF-8 text per second (not a test).
//
// Three measurements on one text file:
//   whole    encode() of the file as one string, one thread (a fresh word cache
//            per call, so every rep starts cold)
//   batch-1  encode_batch() of its lines (each line one document), 1 thread
//   batch-T  the same with T OpenMP threads (T = omp_get_max_threads())
// Each runs `reps` times; the reported rate is the best rep (the machine may be
// shared, and the best rep is the one least disturbed), the median alongside.
// bench/bench_tokenizer_hf.py times Hugging Face tokenizers with the same
// protocol on the same file.
//
// Usage: build/bench_tokenizer TEXT_FILE [TOKENIZER_JSON] [reps]
//   (defaults tests/fixtures/gpt-neox-tokenizer/tokenizer.json, 5; run from the repository root)
// Results are recorded in bench/RESULTS.md (## Tokenizer).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "tensor/error.h"
#include "tensor/file_io.h"
#include "train/bpe_tokenizer.h"

using namespace simba;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Runs f `reps` times; prints the best and median rate over `bytes`.
template <class F>
void report(const char* label, size_t bytes, int reps, F f) {
  std::vector<double> times;
  size_t tokens = 0;
  for (int r = 0; r < reps; ++r) {
    const auto start = std::chrono::steady_clock::now();
    tokens = f();
    times.push_back(seconds_since(start));
  }
  std::sort(times.begin(), times.end());
  std::printf("%-10s %9.2f MB/s best  %9.2f MB/s median  (%zu tokens, %.3f s best)\n", label, bytes / times[0] / 1e6,
              bytes / times[times.size() / 2] / 1e6, tokens, times[0]);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s TEXT_FILE [TOKENIZER_JSON] [reps]\n", argv[0]);
    return 2;
  }
  try {
    const std::string text = read_file(argv[1]);
    const std::string tokenizer_path = argc > 2 ? argv[2] : "tests/fixtures/gpt-neox-tokenizer/tokenizer.json";
    const int reps = argc > 3 ? std::atoi(argv[3]) : 5;
    const auto load_start = std::chrono::steady_clock::now();
    const BpeTokenizer tok = BpeTokenizer::from_file(tokenizer_path);
    std::printf("tokenizer: %s (loaded in %.3f s)\ntext: %s, %zu bytes\n", tokenizer_path.c_str(),
                seconds_since(load_start), argv[1], text.size());

    std::vector<std::string> lines;
    for (size_t begin = 0; begin < text.size();) {
      size_t end = text.find('\n', begin);
      end = end == std::string::npos ? text.size() : end + 1;  // each line keeps its newline
      lines.push_back(text.substr(begin, end - begin));
      begin = end;
    }
    std::printf("documents: %zu lines\n", lines.size());

    const auto batch = [&] {
      size_t n = 0;
      for (const auto& ids : tok.encode_batch(lines)) n += ids.size();
      return n;
    };
#ifdef _OPENMP
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
#else
    const int threads = 1;
#endif
    report("whole", text.size(), reps, [&] { return tok.encode(text).size(); });
    report("batch-1", text.size(), reps, batch);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    const std::string label = "batch-" + std::to_string(threads);
    report(label.c_str(), text.size(), reps, batch);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
    return 1;
  }
  return 0;
}
