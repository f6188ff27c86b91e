// tests/fuzz/replay_main.cpp: the plain build of a fuzz target, without
// libFuzzer. It runs LLVMFuzzerTestOneInput on every file of the corpus
// directory given as its argument, so ctest replays the seeds and every crash
// input added to tests/fuzz/corpus/<name>/ with the normal compiler and build.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <vector>

#include "tensor/file_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
// Optional, as with libFuzzer: a target that defines it gets it called once first.
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " CORPUS_DIR\n";
    return 2;
  }
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<std::filesystem::path> inputs;
  for (const auto& e : std::filesystem::directory_iterator(argv[1]))
    if (e.is_regular_file()) inputs.push_back(e.path());
  std::sort(inputs.begin(), inputs.end());
  if (inputs.empty()) {  // an empty corpus would pass without testing anything
    std::cerr << "no input files in " << argv[1] << "\n";
    return 1;
  }
  for (const auto& path : inputs) {
    std::cout << "replaying " << path.filename().string() << std::endl;  // names the input before a crash
    const std::string bytes = simba::read_file(path.string());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  std::cout << "replayed " << inputs.size() << " inputs from " << argv[1] << "\n";
  return 0;
}
