#include "tensor/error.h"

#include <cstring>

namespace simba {

namespace {
// Strip the build machine's directory so messages read "tensor/tensor.cpp:42".
const char* project_relative(const char* file) {
  for (const char* top : {"/tensor/", "/autograd/", "/nn/", "/ssm/", "/train/", "/tests/", "/bench/"}) {
    const char* p = std::strstr(file, top);
    if (p) return p + 1;
  }
  return file;
}

std::string format(const char* file, int line, const std::string& message, const std::string& hint) {
  std::string s = std::string(project_relative(file)) + ":" + std::to_string(line) + ": " + message;
  if (!hint.empty()) s += "\n  hint: " + hint;
  return s;
}
}  // namespace

Error::Error(const char* file, int line, const std::string& message, const std::string& hint)
    : std::runtime_error(format(file, line, message, hint)),
      file_(project_relative(file)),
      line_(line),
      message_(message),
      hint_(hint) {}

void throw_error(const char* file, int line, const std::string& message, const std::string& hint) {
  throw Error(file, line, message, hint);
}

}  // namespace simba
