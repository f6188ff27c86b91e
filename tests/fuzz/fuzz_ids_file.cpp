// tests/fuzz/fuzz_ids_file.cpp: the --ids reader (train/ids_file.h), for a
// byte-vocabulary model (V = 256) and sequences of at least 2 ids, as
// `simba forward` asks.
//
// Any input either yields ids that meet the documented contract (int64, 2-D,
// B >= 1, L >= 2, every id in [0, V)) or throws simba::Error.
#include "tensor/error.h"
#include "tests/fuzz/fuzz_util.h"
#include "train/ids_file.h"

using namespace simba;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr int64_t V = 256, kMinLength = 2;
  const std::string path = fuzz_input_file(data, size, "ids.safetensors");
  Tensor ids;
  try {
    ids = read_input_ids(path, V, kMinLength, "fuzz: next-token loss");
  } catch (const Error&) {
    return 0;  // rejected with a message
  }
  fuzz_require(ids.dtype() == DType::I64 && ids.dim() == 2, "accepted ids are int64 (B, L)");
  fuzz_require(ids.size(0) >= 1 && ids.size(1) >= kMinLength, "accepted ids have B >= 1 and L >= the minimum");
  for (int64_t id : ids.to_ints()) fuzz_require(id >= 0 && id < V, "accepted ids lie in [0, V)");
  return 0;
}
