//! The crate's checked arithmetic on caller-provided sizes, in one place: products of
//! dimensions (element counts) and conversions to the i32 the kernels index with. Every
//! overflow is an error that names the tensor or dimension, never a wrap or a panic.

use crate::error::{Error, Result};

/// `dims[0] * dims[1] * ...`, or an error naming `tensor` when the product overflows usize.
/// The error names the product and the factor that overflowed, with the largest value that
/// factor could have taken.
pub(crate) fn product(tensor: &'static str, dims: &[usize]) -> Result<usize> {
    let mut acc = 1usize;
    for &d in dims {
        // Lazily: after a zero factor acc is 0, and the bound would divide by it.
        acc = acc.checked_mul(d).ok_or_else(|| Error::DimensionTooLarge { dim: tensor, value: d, max: usize::MAX / acc })?;
    }
    Ok(acc)
}

/// `value` as the i32 a kernel parameter holds, or an error naming `dim`.
pub(crate) fn to_i32(dim: &'static str, value: usize) -> Result<i32> {
    i32::try_from(value).map_err(|_| Error::DimensionTooLarge { dim, value, max: i32::MAX as usize })
}

/// `value` as a u32 launch-grid dimension, or an error naming `dim`.
pub(crate) fn to_u32(dim: &'static str, value: usize) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::DimensionTooLarge { dim, value, max: u32::MAX as usize })
}

/// The data to copy into a device allocation: `data` itself, or one default element when it
/// is empty. Zero-length device allocations are awkward on every backend, and a launch whose
/// sizes say "empty" never reads the filler, so both backends upload through this.
pub(crate) fn non_empty<T: Copy + Default>(data: &[T]) -> std::borrow::Cow<'_, [T]> {
    if data.is_empty() {
        std::borrow::Cow::Owned(vec![T::default()])
    } else {
        std::borrow::Cow::Borrowed(data)
    }
}
