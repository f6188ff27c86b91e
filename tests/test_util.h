// tests/test_util.h: small helpers shared by the test files.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <utility>

#include <filesystem>
#include <functional>
#include <string>

#include "tensor/error.h"

namespace simba {

// The what() of the simba::Error that f throws, or "" if it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A scratch directory unique to this test process ("simba_<tag>_<pid>" under
// the system temp dir), created empty and removed when the object dies.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag) {
    path = std::filesystem::temp_directory_path() / ("simba_" + tag + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;  // a leftover temp dir is harmless; a throwing destructor is not
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// The trainers' toy corpus: `repeats` sentences, varied enough that batches differ, repetitive
// enough to be learnable.
inline std::string toy_text(int repeats = 120) {
  std::string s;
  const char* lines[] = {"In the beginning was the word. ", "And the word was with the trainer. ",
                         "The quick brown fox jumps over the lazy dog. ", "Mamba scans its state in order. "};
  for (int i = 0; i < repeats; ++i) s += lines[(i * 7 + i / 3) % 4];
  return s;
}

// The `simba` program built next to the test executables (CMakeLists.txt
// builds it before every test target).
inline std::filesystem::path simba_binary() {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path() / "simba";
}

// Runs `simba_binary() args` through the shell; returns (exit status, stdout + stderr).
inline std::pair<int, std::string> run_simba(const std::string& args) {
  std::string output;
  FILE* p = ::popen((simba_binary().string() + " " + args + " 2>&1").c_str(), "r");
  if (!p) return {-1, "popen failed"};
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) output.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

}  // namespace simba
