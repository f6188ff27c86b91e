// tensor/error.h: the one checked-error facility of simba.
//
// Every failure a user can cause (bad shapes, bad files, bad flags) and every
// broken internal invariant is reported by throwing simba::Error. The message
// always carries the source location that detected the problem and, where we
// know how to fix it, a hint. Nothing in simba calls abort() or exit() on bad
// input: the CLI catches Error at the top, prints what(), and exits non-zero.
//
//   SIMBA_CHECK(a.dim() == 2, "matmul: expected a 2-D tensor, got " << shape_str(a.shape()));
//   SIMBA_CHECK_HINT(f, "cannot open '" << path << "'", "check that the file exists");
//   SIMBA_FAIL("unknown criterion '" << name << "'");
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace simba {

class Error : public std::runtime_error {
 public:
  Error(const char* file, int line, const std::string& message, const std::string& hint);
  const std::string& message() const { return message_; }  // without location and hint
  const std::string& hint() const { return hint_; }
  const char* file() const { return file_; }
  int line() const { return line_; }

 private:
  const char* file_;
  int line_;
  std::string message_;
  std::string hint_;
};

[[noreturn]] void throw_error(const char* file, int line, const std::string& message,
                              const std::string& hint = "");

}  // namespace simba

#define SIMBA_FAIL_HINT(msg, hint)                                        \
  do {                                                                    \
    std::ostringstream simba_msg_, simba_hint_;                           \
    simba_msg_ << msg;                                                    \
    simba_hint_ << hint;                                                  \
    ::simba::throw_error(__FILE__, __LINE__, simba_msg_.str(), simba_hint_.str()); \
  } while (0)

#define SIMBA_FAIL(msg) SIMBA_FAIL_HINT(msg, "")

#define SIMBA_CHECK_HINT(cond, msg, hint) \
  do {                                    \
    if (!(cond)) SIMBA_FAIL_HINT(msg, hint); \
  } while (0)

#define SIMBA_CHECK(cond, msg) SIMBA_CHECK_HINT(cond, msg, "")
