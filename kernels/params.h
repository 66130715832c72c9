// Launch-parameter structs shared by the kernels and the Rust host code.
// src/params.rs mirrors each struct field for field (#[repr(C)]); a test asserts that
// size, alignment and every field offset agree. Structs are passed by value as kernel
// parameters (FlashAttention style), so adding a field never changes a kernel signature.
#pragma once
#include <stdint.h>
