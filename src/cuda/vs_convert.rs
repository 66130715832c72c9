//! Vertical-slash index conversion on the GPU (`vertical_slash_convert` in kernels/vs_convert.cu).

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use crate::error::{Error, Result};
use crate::mask::SparsePattern;
use crate::params::VsConvertParams;
use crate::pattern::vertical_slash::VerticalSlash;
use crate::pattern::vs_convert::{row_blocks, VsIndex, VsIndexDims};
use crate::shape::AttnShape;

/// The four converted tensors in device memory (layout as [`VsIndex`]).
pub struct VsIndexDevice {
    pub block_count: CudaSlice<i32>,
    pub block_offset: CudaSlice<i32>,
    pub column_count: CudaSlice<i32>,
    pub column_index: CudaSlice<i32>,
    pub dims: VsIndexDims,
}

impl VsIndexDevice {
    /// Allocates zeroed output tensors for `dims` on `stream`.
    pub fn alloc(stream: &Arc<CudaStream>, dims: VsIndexDims) -> Result<Self> {
        let lens = dims.lens()?;
        let alloc = |n: usize| stream.alloc_zeros::<i32>(n.max(1)).map_err(driver);
        Ok(Self {
            block_count: alloc(lens.rows)?,
            block_offset: alloc(lens.block_offset)?,
            column_count: alloc(lens.rows)?,
            column_index: alloc(lens.column_index)?,
            dims,
        })
    }

    /// Copies the tensors back to the host.
    pub fn to_host(&self, stream: &Arc<CudaStream>) -> Result<VsIndex> {
        let d = self.dims;
        let lens = d.lens()?;
        let fetch = |s: &CudaSlice<i32>, n: usize| -> Result<Vec<i32>> {
            let mut v = stream.clone_dtoh(s).map_err(driver)?;
            v.truncate(n);
            Ok(v)
        };
        Ok(VsIndex {
            block_count: fetch(&self.block_count, lens.rows)?,
            block_offset: fetch(&self.block_offset, lens.block_offset)?,
            column_count: fetch(&self.column_count, lens.rows)?,
            column_index: fetch(&self.column_index, lens.column_index)?,
            dims: d,
        })
    }
}

fn driver(e: cudarc::driver::DriverError) -> Error {
    Error::Driver(e.to_string())
}

fn check_buffer(tensor: &'static str, len: usize, needed: usize) -> Result<()> {
    if len < needed {
        return Err(Error::BufferTooSmall { tensor, needed, len });
    }
    Ok(())
}

/// Converts device-resident vertical and slash indexes (`[B, H, NNZ_V]`, `[B, H, NNZ_S]`,
/// as [`VerticalSlash`] describes them) into `out`, asynchronously on `stream`.
///
/// Buffer sizes are checked here; the index values are not (they live on the device), and
/// the kernel skips whatever is out of range or out of order without touching memory
/// outside the buffers. `out.dims` must match `shape` and the input sizes.
pub fn vertical_slash_convert(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    vertical_indexes: &CudaSlice<i32>,
    slash_indexes: &CudaSlice<i32>,
    out: &mut VsIndexDevice,
) -> Result<()> {
    shape.validate()?;
    let d = out.dims;
    if d.row_blocks != row_blocks(shape.seq_q) || (d.heads != shape.heads_q && d.heads != shape.heads_kv) || d.batch != shape.batch
    {
        return Err(Error::DescriptorMismatch {
            reason: format!("output dims {d:?} do not fit the problem {shape:?}"),
        });
    }
    let lens = d.lens()?;
    let check = |name, s: &CudaSlice<i32>| super::launch::check_context(stream, name, s);
    check("vertical_indexes", vertical_indexes)?;
    check("slash_indexes", slash_indexes)?;
    check("block_count", &out.block_count)?;
    check("block_offset", &out.block_offset)?;
    check("column_count", &out.column_count)?;
    check("column_index", &out.column_index)?;
    check_buffer("vertical_indexes", vertical_indexes.len(), lens.vertical)?;
    check_buffer("slash_indexes", slash_indexes.len(), lens.slash)?;
    check_buffer("block_count", out.block_count.len(), lens.rows)?;
    check_buffer("block_offset", out.block_offset.len(), lens.block_offset)?;
    check_buffer("column_count", out.column_count.len(), lens.rows)?;
    check_buffer("column_index", out.column_index.len(), lens.column_index)?;

    let to_i32 = |dim: &'static str, value: usize| {
        i32::try_from(value).map_err(|_| Error::DimensionTooLarge { dim, value, max: i32::MAX as usize })
    };
    let (v_ptr, _v_guard) = vertical_indexes.device_ptr(stream);
    let (s_ptr, _s_guard) = slash_indexes.device_ptr(stream);
    let (bc_ptr, _bc_guard) = out.block_count.device_ptr_mut(stream);
    let (bo_ptr, _bo_guard) = out.block_offset.device_ptr_mut(stream);
    let (cc_ptr, _cc_guard) = out.column_count.device_ptr_mut(stream);
    let (ci_ptr, _ci_guard) = out.column_index.device_ptr_mut(stream);
    let params = VsConvertParams {
        vertical_indexes: v_ptr,
        slash_indexes: s_ptr,
        block_count: bc_ptr,
        block_offset: bo_ptr,
        column_count: cc_ptr,
        column_index: ci_ptr,
        batch: to_i32("batch", d.batch)?,
        heads: to_i32("heads", d.heads)?,
        seq_q: to_i32("seq_q", shape.seq_q)?,
        seq_k: to_i32("seq_k", shape.seq_k)?,
        nnz_v: to_i32("nnz_v", d.nnz_v)?,
        nnz_s: to_i32("nnz_s", d.nnz_s)?,
        row_blocks: to_i32("row_blocks", d.row_blocks)?,
        pad0: 0,
    };
    let plan = crate::plan::vs_convert(&params)?;
    // SAFETY: the plan is `plan::vs_convert`'s own, unmodified (params, grid and shared
    // memory agree); every address in `params` comes from a live CudaSlice of this stream's
    // context, and each length was checked above against what the kernel addresses for
    // these dims (both checked above); the guards keep cudarc's read/write ordering until
    // the launch is enqueued.
    unsafe { super::launch(stream, &plan) }
}

/// Uploads a host descriptor, converts it on the GPU and downloads the result; the GPU
/// counterpart of [`crate::pattern::vs_convert::convert`].
pub fn convert_on_gpu(stream: &Arc<CudaStream>, vs: &VerticalSlash, shape: &AttnShape) -> Result<VsIndex> {
    vs.validate(shape)?;
    let dims = VsIndexDims::of(vs, shape);
    let upload = |v: &[i32]| stream.clone_htod(if v.is_empty() { &[0][..] } else { v }).map_err(driver);
    let vertical = upload(vs.vertical_indexes())?;
    let slash = upload(vs.slash_indexes())?;
    let mut out = VsIndexDevice::alloc(stream, dims)?;
    vertical_slash_convert(stream, shape, &vertical, &slash, &mut out)?;
    let host = out.to_host(stream)?;
    stream.synchronize().map_err(driver)?;
    Ok(host)
}
