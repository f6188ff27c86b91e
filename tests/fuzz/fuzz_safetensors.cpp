// tests/fuzz/fuzz_safetensors.cpp: the safetensors reader (nn/safetensors.h).
//
// Any input either loads or throws simba::Error. A file that loads must hold
// exactly the bytes its header promises (every element is read, so ASan sees
// a short buffer), and must survive the writer: saving what was read and
// reading it back gives the same tensors, bit for bit, and the same metadata.
#include <cstring>

#include "nn/safetensors.h"
#include "tensor/error.h"
#include "tests/fuzz/fuzz_util.h"

using namespace simba;

namespace {

bool same_bytes(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  if (a.numel() == 0) return true;  // an empty tensor may have no buffer (memcmp needs non-null)
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), static_cast<size_t>(ca.numel()) * dtype_size(ca.dtype())) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz_input_file(data, size, "input.safetensors");
  TensorMap tensors;
  SafetensorsMetadata meta;
  try {
    tensors = load_safetensors(path, &meta);
  } catch (const Error&) {
    return 0;  // rejected with a message: the expected outcome for most inputs
  }
  for (const auto& [name, t] : tensors) {
    fuzz_require(t.numel() == shape_numel(t.shape()), "a loaded tensor's numel equals its shape's product");
    fuzz_require(t.to_vector().size() == static_cast<size_t>(t.numel()), "every element of a loaded tensor reads");
  }
  const std::string copy = fuzz_scratch_path("copy.safetensors");
  save_safetensors(copy, tensors, meta);
  SafetensorsMetadata meta2;
  const TensorMap tensors2 = load_safetensors(copy, &meta2);
  fuzz_require(meta2 == meta, "metadata survives save + load");
  fuzz_require(tensors2.size() == tensors.size(), "every tensor survives save + load");
  for (const auto& [name, t] : tensors)
    fuzz_require(tensors2.count(name) && same_bytes(tensors2.at(name), t), "tensors survive save + load bit for bit");
  return 0;
}
