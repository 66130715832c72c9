//! Host copies for the CPU forward: strided f16 / bf16 storage gathered into the contiguous
//! f64 tensors the reference reads, index tensors read as i32, results rounded back.
//!
//! The gather is a copy by design: the reference is an f64 oracle over contiguous BSHD, so
//! the CPU forward widens every element once anyway, and gathering by the layout on the way
//! costs nothing extra. Any strides and start offset work here.

use candle_core::{CpuStorage, DType as CDType, Layout, Tensor};

use super::args::bad;
use crate::shape::DType;

/// The elements of a CPU storage under `layout`, in row-major order of the layout's shape,
/// widened to f64. The last dimension must be contiguous (checked before the op runs).
pub(super) fn gather_f64(name: &'static str, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<Vec<f64>> {
    match storage {
        CpuStorage::F16(data) => gather(name, data, layout, |x| x.to_f64()),
        CpuStorage::BF16(data) => gather(name, data, layout, |x| x.to_f64()),
        other => Err(bad(name, format!("dtype {:?}; q, k and v must be f16 or bf16", other_dtype(other)))),
    }
}

fn other_dtype(s: &CpuStorage) -> CDType {
    use candle_core::backend::BackendStorage;
    s.dtype()
}

/// Walks every row (all dimensions but the last) by the strides and copies the contiguous
/// last dimension. Indexing is checked: a layout that reached past its storage would be a
/// candle bug, reported as an error rather than a panic.
fn gather<T: Copy>(name: &'static str, data: &[T], layout: &Layout, widen: impl Fn(T) -> f64) -> candle_core::Result<Vec<f64>> {
    let dims = layout.dims();
    let stride = layout.stride();
    let Some((&row_len, outer)) = dims.split_last() else {
        return Err(bad(name, "is a scalar; expected a tensor of head vectors"));
    };
    let rows: usize = outer.iter().product();
    let mut out = Vec::with_capacity(rows * row_len);
    let mut index = vec![0usize; outer.len()];
    for _ in 0..rows {
        let start = layout.start_offset() + index.iter().zip(stride).map(|(i, s)| i * s).sum::<usize>();
        let row = data
            .get(start..start + row_len)
            .ok_or_else(|| bad(name, format!("its layout addresses elements {start}..{} of a storage of {}", start + row_len, data.len())))?;
        out.extend(row.iter().map(|&x| widen(x)));
        // Odometer over the outer dimensions, last fastest.
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < outer[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(out)
}

/// An index tensor (i32, or u32 read with the same bits the device reads: values past
/// `i32::MAX` become negative, which every format treats as "no entry" or rejects) as a
/// flat host vector.
pub(super) fn index_i32(name: &'static str, t: &Tensor) -> candle_core::Result<Vec<i32>> {
    let flat = t.flatten_all()?;
    match t.dtype() {
        CDType::I32 => flat.to_vec1::<i32>(),
        CDType::U32 => Ok(flat.to_vec1::<u32>()?.into_iter().map(|x| x as i32).collect()),
        other => Err(bad(name, format!("dtype {other:?}; index tensors must be i32 or u32"))),
    }
}

/// The f32 sinks as a host vector.
pub(super) fn sinks_f32(sinks: Option<&Tensor>) -> candle_core::Result<Option<Vec<f32>>> {
    sinks.map(|s| s.to_vec1::<f32>()).transpose()
}

/// f64 results rounded once to the output dtype (round to nearest even, as `half` does).
pub(super) fn round_out(dtype: DType, out: &[f64]) -> CpuStorage {
    match dtype {
        DType::F16 => CpuStorage::F16(out.iter().map(|&x| half::f16::from_f64(x)).collect()),
        DType::BF16 => CpuStorage::BF16(out.iter().map(|&x| half::bf16::from_f64(x)).collect()),
    }
}

/// An f64 LSE as the f32 the kernels write.
pub(super) fn lse_f32(lse: &[f64]) -> CpuStorage {
    CpuStorage::F32(lse.iter().map(|&x| x as f32).collect())
}
