// The dtype x head_dim cross product of the X-macro lists in params.h, for generating the
// extern "C" instantiations of a kernel family. Usage, in a kernel file:
//
//   #define SA_INSTANTIATE(dtype_name, cuda_type, head_dim) <one or more kernel definitions>
//   SA_INSTANTIATE_EACH_DTYPE_AND_HEAD_DIM
//   #undef SA_INSTANTIATE
//
// expands SA_INSTANTIATE once per pair: (f16, half, 64), (f16, half, 128), (bf16, ...).
// The preprocessor cannot hand the outer list's dtype to the inner list's callback, so each
// dtype name has one binder below, which also says its CUDA type: adding a dtype is one line
// there (plus the list in params.h); adding a head_dim is only the list in params.h.
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "params.h"

// SA_WITH_DTYPE_<name>(head_dim): the instantiation of dtype <name> at head_dim.
#define SA_WITH_DTYPE_f16(head_dim) SA_INSTANTIATE(f16, half, head_dim)
#define SA_WITH_DTYPE_bf16(head_dim) SA_INSTANTIATE(bf16, __nv_bfloat16, head_dim)

// Every head_dim of one dtype, then every dtype.
#define SA_INSTANTIATE_EACH_HEAD_DIM_OF(dtype_name) SA_FOR_EACH_HEAD_DIM(SA_WITH_DTYPE_##dtype_name)
#define SA_INSTANTIATE_EACH_DTYPE_AND_HEAD_DIM SA_FOR_EACH_DTYPE(SA_INSTANTIATE_EACH_HEAD_DIM_OF)
