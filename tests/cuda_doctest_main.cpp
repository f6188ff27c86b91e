// tests/cuda_doctest_main.cpp: the doctest runner of the CUDA tests (tests/test_cuda_*.cpp).
//
// Without a usable CUDA device (no GPU, no driver, or a build without the CUDA backend) it runs
// nothing, prints "SKIPPED: <test>: no CUDA device (<reason>)" and exits 77, the code CMake
// registers as SKIP_RETURN_CODE for these tests, so ctest reports them as skipped, not passed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "tensor/cuda_device.h"

int main(int argc, char** argv) {
  const std::string reason = simba::cuda_unavailable_reason();
  if (!reason.empty()) {
    const std::string path = argc > 0 ? argv[0] : "test_cuda";
    const std::string name = path.substr(path.find_last_of('/') + 1);
    std::printf("SKIPPED: %s: no CUDA device (%s)\n", name.c_str(), reason.c_str());
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
