//! The Rust mirrors in src/params.rs against the C structs in kernels/params.h: size,
//! alignment and every field offset. The C numbers come from compiling a small host
//! program with gcc against the real header; where gcc is missing the test says so and
//! checks against the numbers the C layout rules give (recorded below).

use std::mem::{align_of, offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use sparse_attn::params::VsConvertParams;

/// One struct's layout as (name, value) pairs: "sizeof", "alignof", then each field.
type Layout = Vec<(String, usize)>;

fn rust_vs_convert() -> Layout {
    let mut l = vec![("sizeof".to_string(), size_of::<VsConvertParams>()), ("alignof".to_string(), align_of::<VsConvertParams>())];
    macro_rules! fields {
        ($($f:ident),*) => { $( l.push((stringify!($f).to_string(), offset_of!(VsConvertParams, $f))); )* };
    }
    fields!(
        vertical_indexes, slash_indexes, block_count, block_offset, column_count, column_index,
        cu_seqlens_q, cu_seqlens_k, seqlens_k, batch, heads, seq_q, seq_k, nnz_v, nnz_s, row_blocks, pad0
    );
    l
}

/// The C layout of VsConvertParams by the rules every 64-bit ABI shares: nine 8-byte
/// fields, then eight 4-byte fields, no padding, 8-byte alignment.
fn expected_vs_convert() -> Layout {
    let names = [
        "vertical_indexes", "slash_indexes", "block_count", "block_offset", "column_count", "column_index",
        "cu_seqlens_q", "cu_seqlens_k", "seqlens_k", "batch", "heads", "seq_q", "seq_k", "nnz_v", "nnz_s", "row_blocks", "pad0",
    ];
    let mut l = vec![("sizeof".to_string(), 104), ("alignof".to_string(), 8)];
    for (k, name) in names.iter().enumerate() {
        let offset = if k < 9 { 8 * k } else { 72 + 4 * (k - 9) };
        l.push((name.to_string(), offset));
    }
    l
}

/// The host program: prints `name value` lines for every entry of `layout`.
fn c_program(layout: &Layout) -> String {
    c_program_for("VsConvertParams", layout)
}

/// The same program for the C struct `ty`.
fn c_program_for(ty: &str, layout: &Layout) -> String {
    let mut src = String::from("#include <stdio.h>\n#include <stddef.h>\n#include \"params.h\"\nint main(void) {\n");
    for (name, _) in layout {
        let expr = match name.as_str() {
            "sizeof" => format!("sizeof({ty})"),
            "alignof" => format!("_Alignof({ty})"),
            field => format!("offsetof({ty}, {field})"),
        };
        src.push_str(&format!("    printf(\"{name} %zu\\n\", (size_t)({expr}));\n"));
    }
    src.push_str("    return 0;\n}\n");
    src
}

/// Compiles and runs the program with gcc, or returns None when gcc is not installed.
fn c_layout(layout: &Layout) -> Option<Layout> {
    c_layout_of(&c_program(layout))
}

/// Compiles and runs a layout program with gcc, or returns None when gcc is not installed.
fn c_layout_of(program: &str) -> Option<Layout> {
    let text = c_output_of(program)?;
    Some(
        text.lines()
            .map(|line| {
                let (name, value) = line.split_once(' ').unwrap();
                (name.to_string(), value.parse().unwrap())
            })
            .collect(),
    )
}

/// Compiles a host program against params.h with gcc and returns what it prints, or None
/// when gcc is not installed.
fn c_output_of(program: &str) -> Option<String> {
    if Command::new("gcc").arg("--version").output().is_err() {
        return None;
    }
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let tag = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        program.hash(&mut h);
        h.finish()
    };
    let dir: PathBuf = std::env::temp_dir().join(format!("sparse_attn_params_layout_{}_{tag:016x}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (src, exe) = (dir.join("layout.c"), dir.join("layout"));
    std::fs::write(&src, program).unwrap();
    let out = Command::new("gcc")
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(out.status.success(), "params.h does not compile as host C:\n{}", String::from_utf8_lossy(&out.stderr));
    let run = Command::new(&exe).output().unwrap();
    assert!(run.status.success());
    let _ = std::fs::remove_dir_all(&dir);
    Some(String::from_utf8(run.stdout).unwrap())
}

#[test]
fn vs_convert_params_matches_the_c_struct() {
    let rust = rust_vs_convert();
    // The recorded numbers and the Rust mirror must agree whether or not gcc exists.
    assert_eq!(rust, expected_vs_convert());
    match c_layout(&rust) {
        Some(c) => assert_eq!(rust, c, "src/params.rs and kernels/params.h disagree"),
        None => eprintln!("gcc not found: compared VsConvertParams against the recorded C layout only"),
    }
}

#[test]
fn vs_convert_params_is_plain_bytes() {
    // Pod: the launcher passes the struct as its raw bytes; a zeroed struct is valid.
    let p: VsConvertParams = bytemuck::Zeroable::zeroed();
    assert_eq!(bytemuck::bytes_of(&p).len(), 104);
    assert!(bytemuck::bytes_of(&p).iter().all(|&b| b == 0));
}

#[test]
fn vs_convert_params_for_problem_fills_the_sizes() {
    use sparse_attn::pattern::vs_convert::index_dims;
    use sparse_attn::pattern::VerticalSlash;
    use sparse_attn::plan::{vs_convert, DeviceBuffer};
    use sparse_attn::source::VsIndex;
    use sparse_attn::{AttnShape, SparsePattern};
    let buf = |n: u64| DeviceBuffer { addr: n << 20, len: 1 << 20 };
    let out = |dims| VsIndex { dims, block_count: buf(1), block_offset: buf(2), column_count: buf(3), column_index: buf(4) };
    let shape = AttnShape::new(2, 130, 200, 4, 2, 64).unwrap();
    // H = heads_kv = 2, three verticals and two slashes per head.
    let vs = VerticalSlash::new(2, 2, 3, 2, [0, 5, 9].repeat(4), [7, 0].repeat(4)).unwrap();
    let p = vs_convert::params(&shape, buf(5), buf(6), &out(index_dims(&vs, &shape).unwrap())).unwrap();
    assert_eq!(
        (p.batch, p.heads, p.seq_q, p.seq_k, p.nnz_v, p.nnz_s, p.row_blocks, p.pad0),
        (2, 2, 130, 200, 3, 2, 3, 0) // ceil(130 / 64) = 3 row blocks
    );
    assert_eq!([p.vertical_indexes, p.slash_indexes, p.block_count, p.block_offset, p.column_count, p.column_index], [5 << 20, 6 << 20, 1 << 20, 2 << 20, 3 << 20, 4 << 20]);
    // 2 * 2 * 3 = 12 row blocks fit one 128-thread block.
    let plan = vs_convert::plan(&shape, buf(5), buf(6), &out(index_dims(&vs, &shape).unwrap())).unwrap();
    assert_eq!(plan.grid(), [1, 1, 1]);
    let many = AttnShape::new(3, 64 * 64, 64, 50, 50, 64).unwrap();
    let dims = sparse_attn::source::VsIndexDims::new(3, 50, 64, 3, 2).unwrap();
    assert_eq!(vs_convert::plan(&many, buf(5), buf(6), &out(dims)).unwrap().grid(), [(3 * 50 * 64u32).div_ceil(128), 1, 1]);
    // An invalid descriptor is refused before any size is computed.
    let bad = VerticalSlash::new(2, 2, 3, 2, [0, 5, 500].repeat(4), [7, 0].repeat(4)).unwrap();
    assert!(matches!(bad.source(&shape), Err(sparse_attn::Error::IndexOutOfRange { .. })));
}

fn rust_tensors() -> Layout {
    use sparse_attn::params::AttnTensorParams;
    let mut l = vec![("sizeof".to_string(), size_of::<AttnTensorParams>()), ("alignof".to_string(), align_of::<AttnTensorParams>())];
    macro_rules! fields {
        ($($f:ident),*) => { $( l.push((stringify!($f).to_string(), offset_of!(AttnTensorParams, $f))); )* };
    }
    fields!(
        q, k, v, out, lse,
        q_batch_stride, q_seq_stride, q_head_stride, k_batch_stride, k_seq_stride, k_head_stride,
        v_batch_stride, v_seq_stride, v_head_stride, out_batch_stride, out_seq_stride, out_head_stride,
        lse_batch_stride, lse_head_stride, cu_seqlens_q, cu_seqlens_k, total_q, total_k,
        block_table, seqlens_k, k_page_stride, v_page_stride, max_pages, num_pages, page_shift, window_left,
        sinks, softcap_in, pad1
    );
    l
}

/// AttnTensorParams by the C rules: 21 eight-byte fields (5 tensor addresses, 14 strides, 2
/// cu_seqlens addresses), 2 four-byte totals, 4 eight-byte paging fields (2 addresses, 2
/// page strides), 3 four-byte paging fields and the window, the sinks address, the softcap
/// float and a pad, no padding: 240 bytes, 8-byte aligned.
fn expected_tensors() -> Layout {
    let mut l = vec![("sizeof".to_string(), TENSORS_BYTES), ("alignof".to_string(), 8)];
    for (k, (name, _)) in rust_tensors().into_iter().skip(2).enumerate() {
        let offset = match k {
            0..21 => 8 * k,
            21..23 => 168 + 4 * (k - 21),
            23..27 => 176 + 8 * (k - 23),
            27..31 => 208 + 4 * (k - 27),
            31 => 224,
            _ => 232 + 4 * (k - 32),
        };
        l.push((name, offset));
    }
    l
}

/// Fields of AttnTensorParams.
const TENSOR_FIELDS: usize = 34;

/// sizeof(AttnTensorParams), the first member of both kernel params structs.
const TENSORS_BYTES: usize = 240;

/// The fields of the `tensors` member of a struct that holds it at offset `base`, named as
/// C's `offsetof` takes them (`tensors.q`).
fn nested_tensors(base: usize) -> Layout {
    rust_tensors().into_iter().skip(2).map(|(name, offset)| (format!("tensors.{name}"), base + offset)).collect()
}

#[test]
fn attn_tensor_params_matches_the_c_struct() {
    let rust = rust_tensors();
    assert_eq!(rust.len(), 2 + TENSOR_FIELDS, "every field is listed");
    assert_eq!(rust, expected_tensors());
    match c_layout_of(&c_program_for("AttnTensorParams", &rust)) {
        Some(c) => assert_eq!(rust, c, "src/params.rs and kernels/params.h disagree on AttnTensorParams"),
        None => eprintln!("gcc not found: compared AttnTensorParams against the recorded C layout only"),
    }
}

fn rust_attn() -> Layout {
    use sparse_attn::params::AttnParams;
    let mut l = vec![("sizeof".to_string(), size_of::<AttnParams>()), ("alignof".to_string(), align_of::<AttnParams>())];
    l.push(("tensors".to_string(), offset_of!(AttnParams, tensors)));
    l.extend(nested_tensors(offset_of!(AttnParams, tensors)));
    macro_rules! fields {
        ($($f:ident),*) => { $( l.push((stringify!($f).to_string(), offset_of!(AttnParams, $f))); )* };
    }
    fields!(
        block_count, block_index, column_count, column_index,
        batch, seq_q, seq_k, heads_q, heads_kv, desc_heads, row_blocks, max_blocks, max_columns, causal,
        softmax_scale, scale_log2
    );
    l
}

/// AttnParams by the C rules: the AttnTensorParams first, then 4 eight-byte index
/// addresses, then 12 four-byte fields, no padding: 240 + 32 + 48 = 320 bytes, 8-byte
/// aligned.
fn expected_attn() -> Layout {
    let mut l = vec![("sizeof".to_string(), TENSORS_BYTES + 32 + 48), ("alignof".to_string(), 8), ("tensors".to_string(), 0)];
    l.extend(nested_tensors(0));
    let own = rust_attn().into_iter().skip(3 + TENSOR_FIELDS);
    for (k, (name, _)) in own.enumerate() {
        let offset = if k < 4 { TENSORS_BYTES + 8 * k } else { TENSORS_BYTES + 32 + 4 * (k - 4) };
        l.push((name, offset));
    }
    l
}

#[test]
fn attn_params_matches_the_c_struct() {
    let rust = rust_attn();
    assert_eq!(rust.len(), 2 + 1 + TENSOR_FIELDS + 16, "every field is listed, the shared tensor fields included");
    assert_eq!(rust, expected_attn());
    match c_layout_of(&c_program_for("AttnParams", &rust)) {
        Some(c) => assert_eq!(rust, c, "src/params.rs and kernels/params.h disagree on AttnParams"),
        None => eprintln!("gcc not found: compared AttnParams against the recorded C layout only"),
    }
}

fn rust_topk() -> Layout {
    use sparse_attn::params::TopkParams;
    let mut l = vec![("sizeof".to_string(), size_of::<TopkParams>()), ("alignof".to_string(), align_of::<TopkParams>())];
    l.push(("tensors".to_string(), offset_of!(TopkParams, tensors)));
    l.extend(nested_tensors(offset_of!(TopkParams, tensors)));
    macro_rules! fields {
        ($($f:ident),*) => { $( l.push((stringify!($f).to_string(), offset_of!(TopkParams, $f))); )* };
    }
    fields!(
        indices, indices_batch_stride,
        batch, seq_q, seq_k, heads_q, heads_kv, topk, head_chunks, causal, softmax_scale, scale_log2
    );
    l
}

/// TopkParams by the C rules: the AttnTensorParams first, then the indices address and
/// their batch stride, then 10 four-byte fields, no padding: 240 + 16 + 40 = 296 bytes,
/// 8-byte aligned.
fn expected_topk() -> Layout {
    let mut l = vec![("sizeof".to_string(), TENSORS_BYTES + 16 + 40), ("alignof".to_string(), 8), ("tensors".to_string(), 0)];
    l.extend(nested_tensors(0));
    let own = rust_topk().into_iter().skip(3 + TENSOR_FIELDS);
    for (k, (name, _)) in own.enumerate() {
        let offset = if k < 2 { TENSORS_BYTES + 8 * k } else { TENSORS_BYTES + 16 + 4 * (k - 2) };
        l.push((name, offset));
    }
    l
}

#[test]
fn topk_params_matches_the_c_struct() {
    let rust = rust_topk();
    assert_eq!(rust.len(), 2 + 1 + TENSOR_FIELDS + 12, "every field is listed, the shared tensor fields included");
    assert_eq!(rust, expected_topk());
    match c_layout_of(&c_program_for("TopkParams", &rust)) {
        Some(c) => assert_eq!(rust, c, "src/params.rs and kernels/params.h disagree on TopkParams"),
        None => eprintln!("gcc not found: compared TopkParams against the recorded C layout only"),
    }
}

fn rust_topk_select() -> Layout {
    use sparse_attn::params::TopkSelectParams;
    let mut l = vec![("sizeof".to_string(), size_of::<TopkSelectParams>()), ("alignof".to_string(), align_of::<TopkSelectParams>())];
    macro_rules! fields {
        ($($f:ident),*) => { $( l.push((stringify!($f).to_string(), offset_of!(TopkSelectParams, $f))); )* };
    }
    fields!(scores, indices, rows, seq_q, heads, seq_k, k, causal);
    l
}

/// TopkSelectParams by the C rules: two 8-byte addresses, then six 4-byte fields, no
/// padding: 40 bytes, 8-byte aligned.
fn expected_topk_select() -> Layout {
    let mut l = vec![("sizeof".to_string(), 40), ("alignof".to_string(), 8)];
    for (k, (name, _)) in rust_topk_select().into_iter().skip(2).enumerate() {
        l.push((name, if k < 2 { 8 * k } else { 16 + 4 * (k - 2) }));
    }
    l
}

#[test]
fn topk_select_params_matches_the_c_struct() {
    let rust = rust_topk_select();
    assert_eq!(rust.len(), 2 + 8, "every field is listed");
    assert_eq!(rust, expected_topk_select());
    match c_layout_of(&c_program_for("TopkSelectParams", &rust)) {
        Some(c) => assert_eq!(rust, c, "src/params.rs and kernels/params.h disagree on TopkSelectParams"),
        None => eprintln!("gcc not found: compared TopkSelectParams against the recorded C layout only"),
    }
}

#[test]
fn topk_select_params_for_problem_fills_the_sizes() {
    use sparse_attn::pattern::topk_select::{ScoreDtype, SelectDims};
    use sparse_attn::plan::{topk_select, DeviceBuffer};
    let buf = |n: u64| DeviceBuffer { addr: n << 20, len: 1 << 20 };
    let dims = SelectDims { batch: 2, seq_q: 3, heads: 4, seq_k: 1000 };
    let p = topk_select::params(&dims, 64, true, ScoreDtype::F32, buf(1), buf(2)).unwrap();
    assert_eq!((p.scores, p.indices, p.rows, p.seq_q, p.heads, p.seq_k, p.k, p.causal), (1 << 20, 2 << 20, 24, 3, 4, 1000, 64, 1));
    let plan = topk_select::plan(&dims, 64, false, ScoreDtype::BF16, buf(1), buf(2)).unwrap();
    assert_eq!((plan.grid(), plan.block(), plan.shared_mem_bytes()), ([24, 1, 1], [topk_select::THREADS, 1, 1], 0));
    assert_eq!(plan.kernel(), "topk_select_bf16");
}

// ---- Kernel constants: the SA_* macros of params.h against their mirrors in src/params.rs ----

/// Every SA_* integer constant of params.h and its Rust mirror.
fn rust_constants() -> Vec<(&'static str, u64)> {
    use sparse_attn::params::*;
    vec![
        ("SA_INDEX_BLOCK_M", INDEX_BLOCK_M as u64),
        ("SA_INDEX_BLOCK_N", INDEX_BLOCK_N as u64),
        ("SA_PREFILL_TILE_M", PREFILL_TILE_M as u64),
        ("SA_PREFILL_TILE_N", PREFILL_TILE_N as u64),
        ("SA_PREFILL_THREADS", PREFILL_THREADS as u64),
        ("SA_PREFILL_ROW_BLOCKS", PREFILL_ROW_BLOCKS as u64),
        ("SA_PREFILL_PAIR_MAX_HEAD_DIM", PREFILL_PAIR_MAX_HEAD_DIM as u64),
        ("SA_TOPK_HEADS_PER_WARP", TOPK_HEADS_PER_WARP as u64),
        ("SA_TOPK_TILE_KEYS", TOPK_TILE_KEYS as u64),
        ("SA_TOPK_THREADS", TOPK_THREADS as u64),
        ("SA_VS_CONVERT_THREADS", VS_CONVERT_THREADS as u64),
        ("SA_DECODE_THREADS", DECODE_THREADS as u64),
        ("SA_DECODE_ROWS", DECODE_ROWS as u64),
        ("SA_DECODE_MAX_Q_LEN", DECODE_MAX_Q_LEN as u64),
        ("SA_MERGE_THREADS", MERGE_THREADS as u64),
        ("SA_TOPK_SELECT_THREADS", TOPK_SELECT_THREADS as u64),
        ("SA_BLOCK_POOL_THREADS", BLOCK_POOL_THREADS as u64),
        ("SA_BLOCK_SELECT_THREADS", BLOCK_SELECT_THREADS as u64),
        ("SA_BLOCK_POOL_MAX_IN", BLOCK_POOL_MAX_IN as u64),
        ("SA_BLOCK_POOL_MAX_OUT", BLOCK_POOL_MAX_OUT as u64),
        ("SA_BLOCK_SELECT_MAX_KEY_BLOCKS", BLOCK_SELECT_MAX_KEY_BLOCKS as u64),
        ("SA_VS_ESTIMATE_THREADS", VS_ESTIMATE_THREADS as u64),
        ("SA_VS_ESTIMATE_SELECT_THREADS", VS_ESTIMATE_SELECT_THREADS as u64),
        ("SA_VS_ESTIMATE_TILE", VS_ESTIMATE_TILE as u64),
        ("SA_INDEXER_THREADS", INDEXER_THREADS as u64),
        ("SA_INDEXER_MAX_QROW", INDEXER_MAX_QROW as u64),
    ]
}

/// The X-macro lists of params.h as the Rust mirrors spell them.
fn rust_dtypes() -> Vec<String> {
    sparse_attn::params::DTYPES.iter().map(|d| d.name().to_string()).collect()
}

fn rust_head_dims() -> Vec<u64> {
    sparse_attn::params::HEAD_DIMS.iter().map(|&d| d as u64).collect()
}

/// What params.h says, read either by the C compiler or from its text.
#[derive(Debug, PartialEq)]
struct HeaderConstants {
    constants: Vec<(String, u64)>,
    dtypes: Vec<String>,
    head_dims: Vec<u64>,
}

/// The host program: prints `const NAME value` for every constant, then `dtype NAME` and
/// `head_dim D` for every entry of the two X-macro lists, expanded by the preprocessor.
fn constants_program() -> String {
    let mut src = String::from("#include <stdio.h>\n#include \"params.h\"\n");
    src.push_str("#define PRINT_DTYPE(name) printf(\"dtype %s\\n\", #name);\n");
    src.push_str("#define PRINT_HEAD_DIM(d) printf(\"head_dim %lld\\n\", (long long)(d));\n");
    src.push_str("int main(void) {\n");
    for (name, _) in rust_constants() {
        src.push_str(&format!("    printf(\"const {name} %lld\\n\", (long long)({name}));\n"));
    }
    src.push_str("    SA_FOR_EACH_DTYPE(PRINT_DTYPE)\n    SA_FOR_EACH_HEAD_DIM(PRINT_HEAD_DIM)\n    return 0;\n}\n");
    src
}

fn parse_constants_output(text: &str) -> HeaderConstants {
    let mut h = HeaderConstants { constants: Vec::new(), dtypes: Vec::new(), head_dims: Vec::new() };
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            ["const", name, value] => h.constants.push((name.to_string(), value.parse().unwrap())),
            ["dtype", name] => h.dtypes.push(name.to_string()),
            ["head_dim", d] => h.head_dims.push(d.parse().unwrap()),
            _ => panic!("unexpected line from the constants program: {line}"),
        }
    }
    h
}

fn params_h_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/params.h")).unwrap()
}

/// The name of every `#define SA_...` in params.h (X-macros without their parameter list).
fn defined_sa_names(header: &str) -> Vec<String> {
    header
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("#define "))
        .map(|rest| rest.split(|c: char| c == '(' || c.is_whitespace()).next().unwrap().to_string())
        .filter(|name| name.starts_with("SA_"))
        .collect()
}

/// params.h read as text, for when gcc is missing: `#define SA_NAME <integer>` lines and the
/// `X(...)` entries of the two list macros.
fn constants_from_text(header: &str) -> HeaderConstants {
    let define = |name: &str| -> &str {
        header
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("#define "))
            .find_map(|rest| rest.strip_prefix(name).filter(|r| r.starts_with(|c: char| c == '(' || c.is_whitespace())))
            .unwrap_or_else(|| panic!("params.h has no #define {name}"))
    };
    let list = |name: &str| -> Vec<String> {
        let body = define(name).trim_start().strip_prefix("(X)").unwrap_or_else(|| panic!("{name} is not an X-macro"));
        body.split("X(").skip(1).map(|item| item.split(')').next().unwrap().trim().to_string()).collect()
    };
    HeaderConstants {
        constants: rust_constants()
            .into_iter()
            .map(|(name, _)| (name.to_string(), define(name).trim().parse().unwrap_or_else(|_| panic!("{name} is not an integer"))))
            .collect(),
        dtypes: list("SA_FOR_EACH_DTYPE"),
        head_dims: list("SA_FOR_EACH_HEAD_DIM").iter().map(|d| d.parse().unwrap()).collect(),
    }
}

#[test]
fn kernel_constants_match_params_h() {
    let rust = HeaderConstants {
        constants: rust_constants().into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
        dtypes: rust_dtypes(),
        head_dims: rust_head_dims(),
    };
    let header = params_h_text();
    // Every SA_* macro of params.h has a mirror here: a new constant cannot go unchecked.
    let mut known: Vec<String> = rust.constants.iter().map(|(n, _)| n.clone()).collect();
    known.extend(["SA_FOR_EACH_DTYPE".to_string(), "SA_FOR_EACH_HEAD_DIM".to_string()]);
    let (mut defined, mut expected) = (defined_sa_names(&header), known);
    defined.sort();
    expected.sort();
    assert_eq!(defined, expected, "params.h's SA_* macros and the mirrors checked here differ");
    // The text reading works without gcc; gcc, where present, also checks what the
    // preprocessor really makes of the macros.
    assert_eq!(rust, constants_from_text(&header), "src/params.rs and kernels/params.h disagree (read as text)");
    match c_output_of(&constants_program()) {
        Some(out) => assert_eq!(rust, parse_constants_output(&out), "src/params.rs and kernels/params.h disagree"),
        None => eprintln!("gcc not found: compared the kernel constants against params.h's text only"),
    }
}

fn rust_decode() -> Layout {
    use sparse_attn::params::DecodeParams;
    let mut l = vec![("sizeof".to_string(), size_of::<DecodeParams>()), ("alignof".to_string(), align_of::<DecodeParams>())];
    l.push(("tensors".to_string(), offset_of!(DecodeParams, tensors)));
    l.extend(nested_tensors(offset_of!(DecodeParams, tensors)));
    macro_rules! fields {
        ($($f:ident),*) => { $( l.push((stringify!($f).to_string(), offset_of!(DecodeParams, $f))); )* };
    }
    fields!(
        partial_out, partial_lse, block_count, block_index, indices,
        batch, q_len, seq_k, heads_q, heads_kv, splits, split_slots, row_chunks, block_shift, max_blocks, topk, rows, causal,
        softmax_scale, scale_log2, pad0
    );
    l
}

/// DecodeParams by the C rules: the AttnTensorParams, five addresses, then 16 four-byte
/// fields, no padding: 240 + 40 + 64 = 344 bytes, 8-byte aligned.
fn expected_decode() -> Layout {
    let mut l = vec![("sizeof".to_string(), TENSORS_BYTES + 40 + 64), ("alignof".to_string(), 8), ("tensors".to_string(), 0)];
    l.extend(nested_tensors(0));
    let own = rust_decode().into_iter().skip(3 + TENSOR_FIELDS);
    for (k, (name, _)) in own.enumerate() {
        let offset = if k < 5 { TENSORS_BYTES + 8 * k } else { TENSORS_BYTES + 40 + 4 * (k - 5) };
        l.push((name, offset));
    }
    l
}

#[test]
fn decode_params_matches_the_c_struct() {
    let rust = rust_decode();
    assert_eq!(rust.len(), 2 + 1 + TENSOR_FIELDS + 21, "every field is listed, the shared tensor fields included");
    assert_eq!(rust, expected_decode());
    match c_layout_of(&c_program_for("DecodeParams", &rust)) {
        Some(c) => assert_eq!(rust, c, "src/params.rs and kernels/params.h disagree on DecodeParams"),
        None => eprintln!("gcc not found: compared DecodeParams against the recorded C layout only"),
    }
}

fn rust_merge() -> Layout {
    use sparse_attn::params::MergeParams;
    let mut l = vec![("sizeof".to_string(), size_of::<MergeParams>()), ("alignof".to_string(), align_of::<MergeParams>())];
    macro_rules! fields {
        ($($f:ident),*) => { $( l.push((stringify!($f).to_string(), offset_of!(MergeParams, $f))); )* };
    }
    fields!(
        partial_out, partial_lse, out, lse, po_state, po_batch, po_seq, po_head, pl_state, pl_batch, pl_head,
        out_batch, out_seq, out_head, lse_batch, lse_head, states, batch, seq, heads, head_dim, pad0
    );
    l
}

/// MergeParams by the C rules: 16 eight-byte fields, then 6 four-byte fields: 152 bytes.
fn expected_merge() -> Layout {
    let mut l = vec![("sizeof".to_string(), 152), ("alignof".to_string(), 8)];
    for (k, (name, _)) in rust_merge().into_iter().skip(2).enumerate() {
        l.push((name, if k < 16 { 8 * k } else { 128 + 4 * (k - 16) }));
    }
    l
}

#[test]
fn merge_params_matches_the_c_struct() {
    let rust = rust_merge();
    assert_eq!(rust.len(), 2 + 22, "every field is listed");
    assert_eq!(rust, expected_merge());
    match c_layout_of(&c_program_for("MergeParams", &rust)) {
        Some(c) => assert_eq!(rust, c, "src/params.rs and kernels/params.h disagree on MergeParams"),
        None => eprintln!("gcc not found: compared MergeParams against the recorded C layout only"),
    }
}

fn rust_merge_in_place() -> Layout {
    use sparse_attn::params::MergeInPlaceParams;
    let mut l = vec![("sizeof".to_string(), size_of::<MergeInPlaceParams>()), ("alignof".to_string(), align_of::<MergeInPlaceParams>())];
    macro_rules! fields {
        ($($f:ident),*) => { $( l.push((stringify!($f).to_string(), offset_of!(MergeInPlaceParams, $f))); )* };
    }
    fields!(
        v, lse, v_other, lse_other, v_batch, v_seq, v_head, lse_batch, lse_head, v_other_batch, v_other_seq, v_other_head,
        lse_other_batch, lse_other_head, batch, seq, heads, head_dim
    );
    l
}

/// MergeInPlaceParams by the C rules: 14 eight-byte fields, then 4 four-byte fields: 128
/// bytes, no padding.
fn expected_merge_in_place() -> Layout {
    let mut l = vec![("sizeof".to_string(), 128), ("alignof".to_string(), 8)];
    for (k, (name, _)) in rust_merge_in_place().into_iter().skip(2).enumerate() {
        l.push((name, if k < 14 { 8 * k } else { 112 + 4 * (k - 14) }));
    }
    l
}

#[test]
fn merge_in_place_params_matches_the_c_struct() {
    let rust = rust_merge_in_place();
    assert_eq!(rust.len(), 2 + 18, "every field is listed");
    assert_eq!(rust, expected_merge_in_place());
    match c_layout_of(&c_program_for("MergeInPlaceParams", &rust)) {
        Some(c) => assert_eq!(rust, c, "src/params.rs and kernels/params.h disagree on MergeInPlaceParams"),
        None => eprintln!("gcc not found: compared MergeInPlaceParams against the recorded C layout only"),
    }
}

// ---- Chunked index launches: IndexRowsParams, TopkSelectRowsParams, IndexerParams ----

const INDEX_ROWS_FIELDS: [&str; 11] = ["cu_seqlens_q", "cu_seqlens_k", "seqlens_k", "batch", "seq_q", "seq_k", "total_q", "total_k", "first_row", "rows", "causal"];

fn rust_index_rows() -> Layout {
    use sparse_attn::params::IndexRowsParams;
    let mut l = vec![("sizeof".to_string(), size_of::<IndexRowsParams>()), ("alignof".to_string(), align_of::<IndexRowsParams>())];
    macro_rules! fields {
        ($($f:ident),*) => { $( l.push((stringify!($f).to_string(), offset_of!(IndexRowsParams, $f))); )* };
    }
    fields!(cu_seqlens_q, cu_seqlens_k, seqlens_k, batch, seq_q, seq_k, total_q, total_k, first_row, rows, causal);
    l
}

/// IndexRowsParams's fields nested at `base`, named as C's offsetof takes them.
fn nested_rows(base: usize) -> Layout {
    expected_index_rows().into_iter().skip(2).map(|(name, offset)| (format!("rows.{name}"), base + offset)).collect()
}

/// IndexRowsParams by the C rules: three addresses, eight 4-byte fields: 56 bytes.
fn expected_index_rows() -> Layout {
    let mut l = vec![("sizeof".to_string(), 56), ("alignof".to_string(), 8)];
    for (k, name) in INDEX_ROWS_FIELDS.iter().enumerate() {
        l.push((name.to_string(), if k < 3 { 8 * k } else { 24 + 4 * (k - 3) }));
    }
    l
}

fn check_against_c(ty: &str, rust: &Layout) {
    match c_layout_of(&c_program_for(ty, rust)) {
        Some(c) => assert_eq!(rust, &c, "src/params.rs and kernels/params.h disagree on {ty}"),
        None => eprintln!("gcc not found: compared {ty} against the recorded C layout only"),
    }
}

#[test]
fn index_rows_params_matches_the_c_struct() {
    let rust = rust_index_rows();
    assert_eq!(rust, expected_index_rows());
    check_against_c("IndexRowsParams", &rust);
}

#[test]
fn topk_select_rows_params_matches_the_c_struct() {
    use sparse_attn::params::TopkSelectRowsParams;
    let mut rust = vec![("sizeof".to_string(), size_of::<TopkSelectRowsParams>()), ("alignof".to_string(), align_of::<TopkSelectRowsParams>())];
    rust.push(("scores".to_string(), offset_of!(TopkSelectRowsParams, scores)));
    rust.push(("indices".to_string(), offset_of!(TopkSelectRowsParams, indices)));
    rust.extend(nested_rows(offset_of!(TopkSelectRowsParams, rows)));
    rust.push(("heads".to_string(), offset_of!(TopkSelectRowsParams, heads)));
    rust.push(("k".to_string(), offset_of!(TopkSelectRowsParams, k)));
    rust.push(("group".to_string(), offset_of!(TopkSelectRowsParams, group)));
    rust.push(("pad0".to_string(), offset_of!(TopkSelectRowsParams, pad0)));
    // Two addresses, the 56-byte rows, four 4-byte fields: 88 bytes.
    let mut expected = vec![("sizeof".to_string(), 88), ("alignof".to_string(), 8), ("scores".to_string(), 0), ("indices".to_string(), 8)];
    expected.extend(nested_rows(16));
    expected.extend([("heads".to_string(), 72), ("k".to_string(), 76), ("group".to_string(), 80), ("pad0".to_string(), 84)]);
    assert_eq!(rust, expected);
    check_against_c("TopkSelectRowsParams", &rust);
}

#[test]
fn indexer_params_matches_the_c_struct() {
    use sparse_attn::params::IndexerParams;
    let mut rust = vec![("sizeof".to_string(), size_of::<IndexerParams>()), ("alignof".to_string(), align_of::<IndexerParams>())];
    macro_rules! fields {
        ($($f:ident),*) => { $( rust.push((stringify!($f).to_string(), offset_of!(IndexerParams, $f))); )* };
    }
    fields!(q, k, w, scores, block_table);
    rust.extend(nested_rows(offset_of!(IndexerParams, rows)));
    fields!(groups, heads, w_same_dtype, max_pages, page_shift, num_pages);
    // Five addresses, the 56-byte rows, six 4-byte fields: 120 bytes.
    let mut expected = vec![("sizeof".to_string(), 120), ("alignof".to_string(), 8)];
    for (k, name) in ["q", "k", "w", "scores", "block_table"].iter().enumerate() {
        expected.push((name.to_string(), 8 * k));
    }
    expected.extend(nested_rows(40));
    for (k, name) in ["groups", "heads", "w_same_dtype", "max_pages", "page_shift", "num_pages"].iter().enumerate() {
        expected.push((name.to_string(), 96 + 4 * k));
    }
    assert_eq!(rust, expected);
    check_against_c("IndexerParams", &rust);
}

fn rust_vs_estimate() -> Layout {
    use sparse_attn::params::VsEstimateParams;
    let mut l = vec![("sizeof".to_string(), size_of::<VsEstimateParams>()), ("alignof".to_string(), align_of::<VsEstimateParams>())];
    macro_rules! fields {
        ($($f:ident),*) => { $( l.push((stringify!($f).to_string(), offset_of!(VsEstimateParams, $f))); )* };
    }
    fields!(
        q, k, cu_seqlens_q, cu_seqlens_k, scores, row_stats, vertical_scores, slash_scores, vertical_indexes, slash_indexes,
        q_batch, q_seq, q_head, k_batch, k_seq, k_head,
        batch, seq_q, seq_k, heads_q, heads_kv, head_dim, last_q, heads_per_unit, units, rows, nnz_v, nnz_s,
        forced_columns, forced_diagonals, total_q, total_k, softmax_scale, pad0
    );
    l
}

/// VsEstimateParams by the C rules: ten addresses and six strides (8 bytes each), then
/// eighteen 4-byte fields, no padding: 200 bytes, 8-byte aligned.
fn expected_vs_estimate() -> Layout {
    let mut l = vec![("sizeof".to_string(), 200), ("alignof".to_string(), 8)];
    for (k, (name, _)) in rust_vs_estimate().into_iter().skip(2).enumerate() {
        l.push((name, if k < 16 { 8 * k } else { 128 + 4 * (k - 16) }));
    }
    l
}

#[test]
fn vs_estimate_params_matches_the_c_struct() {
    let rust = rust_vs_estimate();
    assert_eq!(rust.len(), 2 + 34, "every field is listed");
    assert_eq!(rust, expected_vs_estimate());
    match c_layout_of(&c_program_for("VsEstimateParams", &rust)) {
        Some(c) => assert_eq!(rust, c, "src/params.rs and kernels/params.h disagree on VsEstimateParams"),
        None => eprintln!("gcc not found: compared VsEstimateParams against the recorded C layout only"),
    }
}

// ---- Block selection (kernels/block_select.cu) ----

/// A struct's layout from its field list: `wide` 8-byte fields, then 4-byte ones, no
/// padding (every one of these structs is laid out that way).
fn packed_layout(size: usize, names: &[&str], wide: usize) -> Layout {
    let mut l = vec![("sizeof".to_string(), size), ("alignof".to_string(), 8)];
    for (k, name) in names.iter().enumerate() {
        l.push((name.to_string(), if k < wide { 8 * k } else { 8 * wide + 4 * (k - wide) }));
    }
    l
}

macro_rules! rust_layout {
    ($ty:ident, $($f:ident),*) => {{
        use sparse_attn::params::$ty;
        let mut l = vec![("sizeof".to_string(), size_of::<$ty>()), ("alignof".to_string(), align_of::<$ty>())];
        $( l.push((stringify!($f).to_string(), offset_of!($ty, $f))); )*
        (l, vec![$(stringify!($f)),*])
    }};
}

fn check_block_struct(ty: &str, (rust, names): (Layout, Vec<&str>), size: usize, wide: usize) {
    assert_eq!(rust, packed_layout(size, &names, wide), "{ty}: no padding, as listed");
    match c_layout_of(&c_program_for(ty, &rust)) {
        Some(c) => assert_eq!(rust, c, "src/params.rs and kernels/params.h disagree on {ty}"),
        None => eprintln!("gcc not found: compared {ty} against the recorded C layout only"),
    }
}

#[test]
fn block_select_params_match_the_c_structs() {
    let pool = rust_layout!(
        BlockPoolParams, x, cu_seqlens, cu_seqlens_other, weight, out, batch_stride, seq_stride, head_stride, batch, seq, total, seq_other,
        total_other, heads, out_heads, head_dim, blocks, block, pool_max_min, out_dim, rope, rope_from_end, rope_log2_theta, reserved
    );
    assert_eq!(pool.1.len(), 24, "every field is listed");
    check_block_struct("BlockPoolParams", pool, 128, 8);
    let score = rust_layout!(
        BlockScoreParams, q_features, k_features, scores, cu_seqlens_q, cu_seqlens_k, batch, seq_q, seq_k, total_q, total_k, q_heads,
        k_heads, sel_heads, row_blocks, key_blocks, dim, causal, scale, reserved
    );
    assert_eq!(score.1.len(), 19, "every field is listed");
    check_block_struct("BlockScoreParams", score, 96, 5);
    let select = rust_layout!(
        BlockSelectParams, scores, cu_seqlens_q, cu_seqlens_k, block_count, block_index, batch, heads, seq_q, seq_k, total_q, total_k,
        row_blocks, key_blocks, sort_len, max_blocks, top_k, causal, force_sink, force_diagonal, mass_scores, threshold
    );
    assert_eq!(select.1.len(), 21, "every field is listed");
    check_block_struct("BlockSelectParams", select, 104, 5);
    let xattn = rust_layout!(
        XattnScoreParams, q, k, scores, cu_seqlens_q, cu_seqlens_k, q_batch_stride, q_seq_stride, q_head_stride, k_batch_stride,
        k_seq_stride, k_head_stride, batch, seq_q, seq_k, total_q, total_k, heads_q, heads_kv, sel_heads, head_dim, row_blocks, key_blocks,
        stride, causal, scale
    );
    assert_eq!(xattn.1.len(), 25, "every field is listed");
    check_block_struct("XattnScoreParams", xattn, 144, 11);
}
