// tensor/dispatch.h: the one place where an op chooses its implementation by device.
//
// Every kernel family has a CPU variant `name_cpu` and a CUDA variant `name_cuda` with the same
// signature (tensor-level ones take Tensors, nn/ and ssm/ ones raw pointers and sizes). An op
// finds the device its operands share with op_device, then calls
//   SIMBA_ON_DEVICE(dev, "op", name, args...)                 name_cpu(args) or name_cuda(args)
//   SIMBA_DISPATCH_COMPUTE_KERNEL(dev, dtype, "op", name, args...)
//                                                            the same with <scalar_t> bound to
//                                                            the compute dtype (float, double,
//                                                            bfloat16: SIMBA_DISPATCH_COMPUTE)
//   SIMBA_DISPATCH_KERNEL(dev, dtype, "op", name, args...)   float and double only
//                                                            (SIMBA_DISPATCH_FLOAT)
// In a build without the CUDA backend the `_cuda` symbols do not exist: the CUDA branch then
// only raises the "not compiled in" error (cuda_enter), so nothing above this header needs an
// #ifdef. With the backend, cuda_enter checks that the device exists and makes it current, so
// the kernels' "current device" is the operands' device.
#pragma once

#include <initializer_list>

#include "tensor/tensor.h"

namespace simba {

// The device every defined operand of `op` lives on; an error naming the op and the two
// devices when they differ. At least one operand must be defined.
Device op_device(const char* op, std::initializer_list<Tensor> operands);

// Makes device `d` current for the calling thread before a CUDA variant runs; a clear error
// (naming op) when the backend is not compiled in or the device does not exist.
// Implemented by the device layer (tensor/cuda_device.cu, or tensor/cuda_device.cpp).
void cuda_enter(const char* op, Device d);

}  // namespace simba

#ifdef SIMBA_HAS_CUDA
#define SIMBA_DEVICE_CALL(DEV, OPNAME, CPU_FN, CUDA_FN, ...) \
  ((DEV).is_cpu() ? CPU_FN(__VA_ARGS__) : (::simba::cuda_enter(OPNAME, DEV), CUDA_FN(__VA_ARGS__)))
#else
// cuda_enter throws here; the CPU call after it only gives the expression its type.
#define SIMBA_DEVICE_CALL(DEV, OPNAME, CPU_FN, CUDA_FN, ...) \
  ((DEV).is_cpu() ? CPU_FN(__VA_ARGS__) : (::simba::cuda_enter(OPNAME, DEV), CPU_FN(__VA_ARGS__)))
#endif

#define SIMBA_ON_DEVICE(DEV, OPNAME, FN, ...) SIMBA_DEVICE_CALL(DEV, OPNAME, FN##_cpu, FN##_cuda, __VA_ARGS__)

#define SIMBA_DISPATCH_KERNEL(DEV, DT, OPNAME, FN, ...)                                              \
  SIMBA_DISPATCH_FLOAT(DT, OPNAME, [&] {                                                              \
    return SIMBA_DEVICE_CALL(DEV, OPNAME, FN##_cpu<scalar_t>, FN##_cuda<scalar_t>, __VA_ARGS__);      \
  })

#define SIMBA_DISPATCH_COMPUTE_KERNEL(DEV, DT, OPNAME, FN, ...)                                      \
  SIMBA_DISPATCH_COMPUTE(DT, OPNAME, [&] {                                                            \
    return SIMBA_DEVICE_CALL(DEV, OPNAME, FN##_cpu<scalar_t>, FN##_cuda<scalar_t>, __VA_ARGS__);      \
  })
