// Conversions and special-function instructions for ptx-sim's tests.
#include <stdint.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

extern "C" __global__ void convert_ops(const float* in, uint32_t* out) {
    float x = in[threadIdx.x], y = in[(threadIdx.x + 1) % blockDim.x];
    uint32_t* o = out + 16 * threadIdx.x;
    o[0] = __half_as_ushort(__float2half_rn(x));
    o[1] = __half_as_ushort(__float2half_rz(x));
    o[2] = __half_as_ushort(__float2half_rd(x));
    o[3] = __half_as_ushort(__float2half_ru(x));
    o[4] = __bfloat16_as_ushort(__float2bfloat16_rn(x));
    o[5] = __bfloat16_as_ushort(__float2bfloat16_rz(x));
    o[6] = __bfloat16_as_ushort(__float2bfloat16_rd(x));
    o[7] = __bfloat16_as_ushort(__float2bfloat16_ru(x));
    __half2 h2 = __floats2half2_rn(x, y);
    o[8] = *reinterpret_cast<uint32_t*>(&h2);
    __nv_bfloat162 b2 = __floats2bfloat162_rn(x, y);
    o[9] = *reinterpret_cast<uint32_t*>(&b2);
    o[10] = __float_as_uint(__half2float(__float2half_rn(x)));
    o[11] = __float_as_uint(__bfloat162float(__float2bfloat16_rn(x)));
    o[12] = (uint32_t)__float2int_rn(x);
    o[13] = (uint32_t)__float2int_rd(x);
    o[14] = (uint32_t)__float2int_ru(x);
    o[15] = (uint32_t)__float2uint_rz(x);
}

extern "C" __global__ void sfu_ops(const float* in, float* out) {
    float x = in[threadIdx.x];
    float* o = out + 6 * threadIdx.x;
    o[0] = exp2f(x);
    o[1] = __log2f(fabsf(x) + 1.0f);
    o[2] = __frcp_rn(x);
    o[3] = sqrtf(fabsf(x));
    o[4] = rsqrtf(fabsf(x) + 1.0f);
    o[5] = __expf(x);
}
