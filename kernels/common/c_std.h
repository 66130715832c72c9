// The C standard-library names the kernels use: fixed-width integers and INFINITY.
//
// nvcc (and gcc, which reads params.h for the layout test) take them from the C headers.
// NVRTC ships no C library headers, so under it they are defined here, with the LP64
// widths every CUDA target has.
#pragma once

#ifdef __CUDACC_RTC__
typedef signed char int8_t;
typedef short int16_t;
typedef int int32_t;
typedef long long int64_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif
#else
#include <math.h>
#include <stdint.h>
#endif
