// tensor/host_device.h: SIMBA_HOST_DEVICE marks a function that host code and CUDA kernels
// both call (the coalesced-layout indexing, the half-precision conversions). Under nvcc it is
// __host__ __device__; for a C++ compiler it is nothing, so the headers that use it stay
// CUDA-free.
#pragma once

#ifdef __CUDACC__
#define SIMBA_HOST_DEVICE __host__ __device__
#else
#define SIMBA_HOST_DEVICE
#endif
