#include "tensor/checked_math.h"

#include <unistd.h>

#include "tensor/error.h"

namespace simba {

void size_overflow(const char* op, int64_t a, int64_t b, const std::string& what) {
  SIMBA_CHECK(a >= 0 && b >= 0, what << ": " << a << " " << op << " " << b << ": a size cannot be negative");
  SIMBA_FAIL(what << ": " << a << " " << op << " " << b
                  << " is larger than the largest size simba supports (2^63 - 1 = 9223372036854775807)");
}

uint64_t host_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  SIMBA_CHECK(pages > 0 && page > 0, "cannot read the size of the host's physical memory (sysconf)");
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
}

void check_memory_budget(int64_t bytes, const std::string& what, const std::string& hint) {
  const uint64_t memory = host_memory_bytes();
  SIMBA_CHECK_HINT(bytes >= 0 && static_cast<uint64_t>(bytes) <= memory,
                   what << " need " << bytes << " bytes, more than this machine's physical memory of " << memory
                        << " bytes",
                   hint);
}

}  // namespace simba
