// tests/fuzz/fuzz_util.h: what the fuzz targets share.
//
// A target's LLVMFuzzerTestOneInput feeds one input to a parser through its
// public entry point. An input the parser rejects must end in simba::Error
// (the targets catch only that); any other exception, a signal or a sanitizer
// report is a finding. fuzz_require checks a property of an accepted input.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace simba {

// The path of a scratch file `name` in a directory private to this process
// (in the temp dir; rewritten for every input, so it stays small).
inline std::string fuzz_scratch_path(const std::string& name) {
  static const std::filesystem::path dir = [] {
    const auto d = std::filesystem::temp_directory_path() / ("simba_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return (dir / name).string();
}

// Writes the input to the scratch file `name` and returns its path: the
// readers under test take paths, as the CLI gives them.
inline std::string fuzz_input_file(const uint8_t* data, size_t size, const std::string& name) {
  const std::string path = fuzz_scratch_path(name);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  f.close();
  if (!f) {
    std::fprintf(stderr, "fuzz: cannot write the scratch file %s\n", path.c_str());
    std::abort();
  }
  return path;
}

// Aborts (a finding for libFuzzer and a failure for the replay test) when a
// property of an accepted input does not hold.
inline void fuzz_require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz: property violated: %s\n", what);
    std::abort();
  }
}

}  // namespace simba
