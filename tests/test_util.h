// tests/test_util.h: small helpers shared by the test files.
#pragma once

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

}  // namespace simba
