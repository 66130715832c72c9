//! The vertical-slash conversion against (1) a brute-force re-derivation written from the
//! definition in a different form, (2) hand-worked examples, and (3) a re-statement of
//! MInference's merge loop when slash 0 is present.

mod common;

use common::Rng;
use sparse_attn::pattern::vs_convert::{convert, row_blocks, VsIndex};
use sparse_attn::pattern::{VerticalSlash, BLOCK_M, BLOCK_N};
use sparse_attn::AttnShape;

const B: i64 = BLOCK_M as i64;

fn random_vs(rng: &mut Rng, shape: &AttnShape, heads: usize, with_slash_zero: bool) -> VerticalSlash {
    common::random_vertical_slash(rng, shape, heads, 12, with_slash_zero)
}

/// Tiles and columns of one row block, derived from the definition without the
/// incremental range state: windows chain while each starts at or before the end of the
/// chain's tiles, and a chain's tiles are aligned to its first window and reach just past
/// its farthest window end (the closed form of "grow by BLOCK_M while a window sticks out").
fn brute_row_block(seq_q: i64, seq_k: i64, m: i64, verticals: &[i32], slashes: &[i32]) -> (Vec<i32>, Vec<i32>) {
    let offset = seq_k - seq_q;
    let lo = m * B + offset;
    let hi = lo + B;
    let last_row = ((m + 1) * B).min(seq_q) - 1;
    let limit = (last_row + offset + 1).min(seq_k);

    let windows: Vec<(i64, i64)> = slashes
        .iter()
        .map(|&d| d as i64)
        .filter(|&d| d < hi)
        .map(|d| {
            let e = (hi - d).max(B);
            (e - B, e)
        })
        .collect();
    let tiled_end = |anchor: i64, far: i64| anchor + B * (far - anchor + B - 1).div_euclid(B);
    let mut chains: Vec<(i64, i64)> = Vec::new(); // (anchor, farthest window end)
    for &(s, e) in &windows {
        match chains.last_mut() {
            Some((anchor, far)) if s <= tiled_end(*anchor, *far) => *far = (*far).max(e),
            _ => chains.push((s, e)),
        }
    }
    let mut tiles = Vec::new();
    let mut covered = vec![false; limit.max(0) as usize];
    for &(anchor, far) in &chains {
        let mut o = anchor;
        while o < tiled_end(anchor, far) {
            if o < limit {
                tiles.push(o as i32);
                for j in o..(o + BLOCK_N as i64).min(limit) {
                    covered[j as usize] = true;
                }
            }
            o += BLOCK_N as i64;
        }
    }
    // The brute force's own sanity: every visible key of every slash window is covered.
    for &(s, e) in &windows {
        for j in s.max(0)..e.min(limit) {
            assert!(covered[j as usize], "brute force left key {j} of window [{s}, {e}) uncovered");
        }
    }
    let columns =
        verticals.iter().copied().filter(|&v| (v as i64) < limit && !covered[v as usize]).collect();
    (tiles, columns)
}

/// Checks the layout invariants of one converted row block and its -1 padding.
fn check_row_invariants(index: &VsIndex, b: usize, h: usize, m: usize, limit: i64) {
    let d = index.dims;
    let (tiles, columns) = index.row_block(b, h, m).expect("converted index is consistent");
    for pair in tiles.windows(2) {
        assert!(pair[1] as i64 >= pair[0] as i64 + BLOCK_N as i64, "tiles overlap or are unsorted: {tiles:?}");
    }
    for pair in columns.windows(2) {
        assert!(pair[1] > pair[0], "columns unsorted: {columns:?}");
    }
    assert!(tiles.iter().chain(columns).all(|&k| k >= 0 && (k as i64) < limit), "entry past limit {limit}");
    let row = (b * d.heads() + h) * d.row_blocks() + m;
    let tile_tail = &index.block_offset[row * d.nnz_s() + tiles.len()..(row + 1) * d.nnz_s()];
    let column_tail = &index.column_index[row * d.nnz_v() + columns.len()..(row + 1) * d.nnz_v()];
    assert!(tile_tail.iter().chain(column_tail).all(|&x| x == -1), "padding past the counts must be -1");
}

fn compare_with_brute_force(vs: &VerticalSlash, shape: &AttnShape) {
    let index = convert(vs, shape).unwrap();
    let d = index.dims;
    assert_eq!((d.batch(), d.heads(), d.row_blocks(), d.nnz_v(), d.nnz_s()), (vs.batch(), vs.heads(), row_blocks(shape.seq_q()), vs.nnz_v(), vs.nnz_s()));
    assert_eq!(index.block_count.len(), d.batch() * d.heads() * d.row_blocks());
    assert_eq!(index.block_offset.len(), d.batch() * d.heads() * d.row_blocks() * d.nnz_s());
    assert_eq!(index.column_index.len(), d.batch() * d.heads() * d.row_blocks() * d.nnz_v());
    for b in 0..d.batch() {
        for h in 0..d.heads() {
            for m in 0..d.row_blocks() {
                let (seq_q, seq_k) = (shape.seq_q() as i64, shape.seq_k() as i64);
                let want = brute_row_block(seq_q, seq_k, m as i64, vs.verticals(b, h).unwrap(), vs.slashes(b, h).unwrap());
                let (tiles, columns) = index.row_block(b, h, m).unwrap();
                assert_eq!((tiles, columns), (&want.0[..], &want.1[..]), "{shape:?} b={b} h={h} m={m} vs={vs:?}");
                let limit = ((((m + 1) * BLOCK_M).min(shape.seq_q())) as i64 + seq_k - seq_q).min(seq_k);
                check_row_invariants(&index, b, h, m, limit);
            }
        }
    }
}

#[test]
fn matches_brute_force_on_random_descriptors() {
    let mut rng = Rng::new(0x5eed_0001);
    for _ in 0..400 {
        let shape = common::random_shape(&mut rng, 400);
        let heads = if rng.chance(0.5) { shape.heads_q() } else { shape.heads_kv() };
        let with_zero = rng.chance(0.3);
        let vs = random_vs(&mut rng, &shape, heads, with_zero);
        compare_with_brute_force(&vs, &shape);
    }
}

#[test]
fn matches_brute_force_on_edge_shapes() {
    let mut rng = Rng::new(0x5eed_0002);
    // Lengths around tile boundaries, far longer keys than queries and the reverse.
    let seqs = [(1, 1), (1, 300), (300, 1), (63, 63), (64, 64), (65, 65), (127, 129), (129, 127), (64, 1000), (1000, 64), (200, 700)];
    for &(seq_q, seq_k) in &seqs {
        for _ in 0..20 {
            let shape = AttnShape::new(1, seq_q, seq_k, 4, 2, 32).unwrap();
            let heads = if rng.chance(0.5) { 4 } else { 2 };
            let with_zero = rng.chance(0.5);
            let vs = random_vs(&mut rng, &shape, heads, with_zero);
            compare_with_brute_force(&vs, &shape);
        }
    }
}

#[test]
fn dense_slashes_and_verticals_fill_capacity_exactly() {
    // Every distance and every key: each slash adds at most one tile, so the tile rows
    // fill up to NNZ_S at most, and every key lands in a tile (no columns).
    let seq = 200;
    let shape = AttnShape::new(1, seq, seq, 1, 1, 32).unwrap();
    let slashes: Vec<i32> = (0..seq as i32).rev().collect();
    let verticals: Vec<i32> = (0..seq as i32).collect();
    let vs = VerticalSlash::new(1, 1, seq, seq, verticals, slashes).unwrap();
    compare_with_brute_force(&vs, &shape);
    let index = convert(&vs, &shape).unwrap();
    for m in 0..row_blocks(seq) {
        let (tiles, columns) = index.row_block(0, 0, m).unwrap();
        assert!(columns.is_empty(), "m={m}: every key is inside a tile, got columns {columns:?}");
        assert_eq!(tiles.iter().map(|&o| o as usize).collect::<Vec<_>>(), (0..(m + 1) * 64).step_by(64).filter(|&o| o < seq).collect::<Vec<_>>());
    }
}

/// Hand-worked from the rule in src/pattern/vs_convert.rs (the arithmetic is in comments).
#[test]
fn hand_worked_examples() {
    let one = |seq_q, seq_k, verticals: Vec<i32>, slashes: Vec<i32>| {
        let shape = AttnShape::new(1, seq_q, seq_k, 1, 1, 32).unwrap();
        let vs = VerticalSlash::new(1, 1, verticals.len(), slashes.len(), verticals, slashes).unwrap();
        let index = convert(&vs, &shape).unwrap();
        (0..row_blocks(seq_q))
            .map(|m| {
                let (t, c) = index.row_block(0, 0, m).unwrap();
                (t.to_vec(), c.to_vec())
            })
            .collect::<Vec<_>>()
    };
    // seq 128, diagonal only. m=0: hi=64, window [0,64), limit 64: vertical 5 absorbed, 70
    // invisible. m=1: hi=128, window [64,128): 5 is a column, 70 absorbed.
    assert_eq!(one(128, 128, vec![5, 70], vec![0]), vec![(vec![0], vec![]), (vec![64], vec![5])]);
    // seq 256, m=3 (hi=256): d=70 -> e=186, window [122,186); d=10 -> e=246 sticks out by
    // less than a block -> the range grows by 64 to [122,250): tiles 122, 186.
    let blocks = one(256, 256, vec![], vec![70, 10]);
    assert_eq!(blocks[3], (vec![122, 186], vec![]));
    // m=0 (hi=64): d=70 skipped; d=10 -> e=54 is below a block -> window [0,64).
    assert_eq!(blocks[0], (vec![0], vec![]));
    // Windows far apart: d=200 and d=0 in m=3 (hi=256): [-8..) -> e=56 clamps to [0,64),
    // then e=256 starts past 64 -> new range [192,256).
    assert_eq!(one(256, 256, vec![100], vec![200, 0])[3], (vec![0, 192], vec![100]));
    // seq_q=100 < seq_k=300 (offset 200): m=1 spans rows 64..99, hi=328, limit=300; the
    // diagonal window [264,328) gives tile 264; the partial tile 264..300 is kept.
    assert_eq!(one(100, 300, vec![3], vec![0])[1], (vec![264], vec![3]));
    // seq_q=300 > seq_k=100 (offset -200): m=0 sees nothing (hi=-136, limit<0); m=3 (rows
    // 192..255) has hi=56, limit=56: e=max(56,64)=64 -> tile 0 covers vertical 10, and 60 is
    // invisible; m=4 (rows 256..299) has hi=120, limit=100: window [56,120) -> tile 56,
    // vertical 10 becomes a column and 60 is absorbed.
    let blocks = one(300, 100, vec![10, 60], vec![0]);
    assert_eq!(blocks[0], (vec![], vec![]));
    assert_eq!(blocks[3], (vec![0], vec![]));
    assert_eq!(blocks[4], (vec![56], vec![10]));
    // Difference (a): every slash beyond the block -> no tiles, visible verticals are
    // columns. m=0 (hi=64, limit=64): d=200 skipped; verticals 3 kept, 70 invisible.
    assert_eq!(one(256, 256, vec![3, 70], vec![200])[0], (vec![], vec![3]));
    // Difference (b): with no slash 0, a vertical after the last range is still a column.
    // m=3 (hi=256): d=100 -> window [92,156); vertical 200 (< limit 256) stays.
    assert_eq!(one(256, 256, vec![200], vec![100])[3], (vec![92], vec![200]));
    // No slashes, no verticals: nothing anywhere.
    assert!(one(130, 130, vec![], vec![]).iter().all(|(t, c)| t.is_empty() && c.is_empty()));
}

/// MInference's merge loop, re-stated from its description (seq_q == seq_k, full BLOCK_M
/// rows per block, tiles not clipped): verticals and slashes are merged in one pass; a
/// vertical below the running range's end is a column if it is also below its start; once
/// the slashes run out the range is emitted and the loop ends, dropping later verticals.
/// Only called with slash 0 present, so the initial skip always finds a slash.
fn minference_row_block(m: i64, verticals: &[i32], slashes: &[i32]) -> (Vec<i64>, Vec<i64>) {
    let end_m = (m + 1) * B;
    let past = end_m + B; // "no more verticals" sentinel, beyond every range
    let mut verticals = verticals.iter().map(|&v| v as i64);
    let mut slashes = slashes.iter().map(|&d| d as i64).skip_while(|&d| d >= end_m);
    let window_end = |d: i64| (end_m - d).max(B);
    let first = slashes.next().expect("slash 0 is present");
    let (mut start, mut end) = (window_end(first) - B, window_end(first));
    let mut v = verticals.next().unwrap_or(past);
    let (mut tiles, mut columns) = (Vec::new(), Vec::new());
    let save = |tiles: &mut Vec<i64>, start: i64, end: i64| tiles.extend((start..end).step_by(BLOCK_N));
    loop {
        if v < end {
            if v < start {
                columns.push(v);
            }
            v = verticals.next().unwrap_or(past);
            continue;
        }
        let Some(d) = slashes.next() else {
            save(&mut tiles, start, end);
            break;
        };
        let e = window_end(d);
        if e > end + B {
            save(&mut tiles, start, end);
            (start, end) = (e - B, e);
        } else if e > end {
            end += B;
        }
    }
    (tiles, columns)
}

#[test]
fn equals_minference_when_slash_zero_is_present() {
    let mut rng = Rng::new(0x5eed_0003);
    for round in 0..300 {
        let seq = if round % 3 == 0 { rng.range(1, 130) } else { rng.range(1, 700) };
        let heads = rng.range(1, 3);
        let shape = AttnShape::new(rng.range(1, 2), seq, seq, heads, heads, 32).unwrap();
        let vs = random_vs(&mut rng, &shape, heads, true);
        let index = convert(&vs, &shape).unwrap();
        for b in 0..shape.batch() {
            for h in 0..heads {
                for m in 0..row_blocks(seq) {
                    let (want_tiles, want_columns) = minference_row_block(m as i64, vs.verticals(b, h).unwrap(), vs.slashes(b, h).unwrap());
                    // Difference (d): MInference can emit tiles at or past seq_k in a partial last block.
                    let want_tiles: Vec<i32> = want_tiles.into_iter().filter(|&o| o < seq as i64).map(|o| o as i32).collect();
                    let want_columns: Vec<i32> = want_columns.into_iter().map(|c| c as i32).collect();
                    let (tiles, columns) = index.row_block(b, h, m).unwrap();
                    assert_eq!((tiles, columns), (&want_tiles[..], &want_columns[..]), "seq={seq} b={b} h={h} m={m} vs={vs:?}");
                }
            }
        }
    }
}

#[test]
fn minference_restatement_differs_only_where_documented() {
    // Without slash 0 the two disagree exactly on difference (b): MInference drops the
    // vertical past its last range, ours keeps it. Shows the re-statement is not vacuous.
    let shape = AttnShape::new(1, 256, 256, 1, 1, 32).unwrap();
    let vs = VerticalSlash::new(1, 1, 1, 1, vec![200], vec![100]).unwrap();
    let (tiles, columns) = minference_row_block(3, vs.verticals(0, 0).unwrap(), vs.slashes(0, 0).unwrap());
    assert_eq!((tiles, columns), (vec![92], vec![]));
    let index = convert(&vs, &shape).unwrap();
    assert_eq!(index.row_block(0, 0, 3).unwrap(), (&[92][..], &[200][..]));
}

// ---- the CUDA kernel's source, run on the host ------------------------------------------
//
// No GPU here and the simulator is not ready, so the kernel's own source
// (kernels/vs_convert.cu with kernels/common/vs_index.cuh) is compiled as host C++ with the CUDA
// qualifiers defined away, and its grid is run thread by thread under AddressSanitizer.
// That checks the device logic and indexing against the CPU conversion exactly, and that
// no input makes it touch memory outside its (exactly sized) buffers.

const HOST_HARNESS: &str = r#"
#include <cstdint>
#include <cstdio>
#include <vector>
#define __global__
#define __device__
#define __forceinline__ inline
#define __grid_constant__
#define __launch_bounds__(n)
struct HostDim3 { unsigned x = 0, y = 0, z = 0; };
static HostDim3 blockIdx, blockDim, threadIdx;
#include "vs_convert.cu"

static void print(const char* name, const std::vector<int32_t>& t) {
    printf("%s", name);
    for (int32_t x : t) printf(" %d", x);
    printf("\n");
}

int main() {
    long long batch, heads, seq_q, seq_k, nnz_v, nnz_s, row_blocks;
    while (scanf("%lld %lld %lld %lld %lld %lld %lld", &batch, &heads, &seq_q, &seq_k, &nnz_v, &nnz_s, &row_blocks) == 7) {
        std::vector<int32_t> verticals(batch * heads * nnz_v), slashes(batch * heads * nnz_s);
        for (auto& x : verticals) if (scanf("%d", &x) != 1) return 2;
        for (auto& x : slashes) if (scanf("%d", &x) != 1) return 2;
        const size_t rows = batch * heads * row_blocks;
        // Poisoned, exactly sized outputs: every entry must be written, none past the end.
        const int32_t poison = 0x5a5a5a5a;
        std::vector<int32_t> block_count(rows, poison), block_offset(rows * nnz_s, poison);
        std::vector<int32_t> column_count(rows, poison), column_index(rows * nnz_v, poison);
        VsConvertParams p = {};
        p.vertical_indexes = (uint64_t)verticals.data();
        p.slash_indexes = (uint64_t)slashes.data();
        p.block_count = (uint64_t)block_count.data();
        p.block_offset = (uint64_t)block_offset.data();
        p.column_count = (uint64_t)column_count.data();
        p.column_index = (uint64_t)column_index.data();
        p.batch = batch; p.heads = heads; p.seq_q = seq_q; p.seq_k = seq_k;
        p.nnz_v = nnz_v; p.nnz_s = nnz_s; p.row_blocks = row_blocks;
        const unsigned threads = 128;
        blockDim.x = threads;
        for (size_t b = 0; b < (rows + threads - 1) / threads; ++b) {
            for (unsigned t = 0; t < threads; ++t) {
                blockIdx.x = b;
                threadIdx.x = t;
                vertical_slash_convert(p);
            }
        }
        print("block_count", block_count);
        print("block_offset", block_offset);
        print("column_count", column_count);
        print("column_index", column_index);
    }
    return 0;
}
"#;

/// One conversion problem for the harness: dims then the raw index tensors.
struct HostCase {
    dims: [usize; 7], // batch heads seq_q seq_k nnz_v nnz_s row_blocks
    verticals: Vec<i32>,
    slashes: Vec<i32>,
}

/// Builds the harness with g++ (AddressSanitizer when it links) and runs every case
/// through it; returns the four tensors per case, or None when g++ is unavailable.
fn run_kernel_source_on_host(cases: &[HostCase]) -> Option<Vec<[Vec<i32>; 4]>> {
    use std::process::{Command, Stdio};
    if Command::new("g++").arg("--version").output().is_err() {
        return None;
    }
    let kernels = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    // Tests run in parallel threads of one process: each build gets its own folder.
    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let build_id = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sparse_attn_vs_host_{}_{build_id}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (src, exe) = (dir.join("harness.cpp"), dir.join("harness"));
    std::fs::write(&src, HOST_HARNESS).unwrap();
    let build = |sanitize: bool| {
        let mut cmd = Command::new("g++");
        cmd.args(["-std=c++17", "-O1", "-g", "-Wall", "-Werror"]);
        if sanitize {
            cmd.args(["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]);
        }
        cmd.arg("-I").arg(&kernels).arg(&src).arg("-o").arg(&exe).output().unwrap()
    };
    let mut out = build(true);
    if !out.status.success() {
        eprintln!("g++ could not build with sanitizers; running the kernel source without them");
        out = build(false);
    }
    assert!(out.status.success(), "kernel source does not compile as host C++:\n{}", String::from_utf8_lossy(&out.stderr));

    let mut input = String::new();
    for c in cases {
        input.push_str(&c.dims.map(|d| d.to_string()).join(" "));
        input.push('\n');
        for x in c.verticals.iter().chain(&c.slashes) {
            input.push_str(&format!("{x} "));
        }
        input.push('\n');
    }
    let mut child = Command::new(&exe).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, input.as_bytes()).unwrap());
    let result = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(result.status.success(), "kernel source failed on the host (sanitizer report?):\n{}", String::from_utf8_lossy(&result.stderr));

    let text = String::from_utf8(result.stdout).unwrap();
    let mut lines = text.lines();
    let mut tensor = |name: &str| -> Vec<i32> {
        let line = lines.next().expect("harness printed too few lines");
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some(name));
        words.map(|w| w.parse().unwrap()).collect()
    };
    Some(cases.iter().map(|_| [tensor("block_count"), tensor("block_offset"), tensor("column_count"), tensor("column_index")]).collect())
}

#[test]
fn kernel_source_matches_cpu_conversion() {
    let mut rng = Rng::new(0x5eed_0004);
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for round in 0..150 {
        let shape = if round % 10 == 0 {
            AttnShape::new(1, rng.range(1, 3000), rng.range(1, 3000), 2, 1, 32).unwrap()
        } else {
            common::random_shape(&mut rng, 400)
        };
        let heads = if rng.chance(0.5) { shape.heads_q() } else { shape.heads_kv() };
        let with_zero = rng.chance(0.5);
        let vs = random_vs(&mut rng, &shape, heads, with_zero);
        let index = convert(&vs, &shape).unwrap();
        let dims = [shape.batch(), heads, shape.seq_q(), shape.seq_k(), vs.nnz_v(), vs.nnz_s(), row_blocks(shape.seq_q())];
        cases.push(HostCase { dims, verticals: vs.vertical_indexes().to_vec(), slashes: vs.slash_indexes().to_vec() });
        expected.push(index);
    }
    let Some(got) = run_kernel_source_on_host(&cases) else {
        eprintln!("g++ not found: the kernel source was not run (it is still compiled by build/main.rs)");
        return;
    };
    for ((index, [block_count, block_offset, column_count, column_index]), case) in expected.iter().zip(got).zip(&cases) {
        assert_eq!(block_count, index.block_count, "block_count, dims {:?}", case.dims);
        assert_eq!(block_offset, index.block_offset, "block_offset, dims {:?}", case.dims);
        assert_eq!(column_count, index.column_count, "column_count, dims {:?}", case.dims);
        assert_eq!(column_index, index.column_index, "column_index, dims {:?}", case.dims);
    }
}

#[test]
fn kernel_source_stays_in_bounds_on_garbage_indices() {
    // Unvalidated tensors (negative, huge, unsorted, repeated) and a row_blocks that does not
    // match seq_q: the sanitizer fails the run on any stray access; the outputs must still
    // respect the capacities, be padded with -1 and only name keys in [0, seq_k).
    let mut rng = Rng::new(0x5eed_0005);
    let specials = [i32::MIN, i32::MIN + 1, -65, -64, -1, 0, 1, 63, 64, 65, 127, 128, i32::MAX - 64, i32::MAX];
    let mut cases = Vec::new();
    for _ in 0..300 {
        let (batch, heads) = (rng.range(1, 2), rng.range(1, 3));
        let (seq_q, seq_k) = (rng.range(1, 300), rng.range(1, 300));
        let (nnz_v, nnz_s) = (rng.range(0, 9), rng.range(0, 9));
        let row_blocks = if rng.chance(0.7) { row_blocks(seq_q) } else { rng.range(1, 8) };
        let mut value = || match rng.below(3) {
            0 => specials[rng.below(specials.len())],
            1 => rng.range(0, seq_k + 70) as i32 - 3,
            _ => rng.next_u64() as i32,
        };
        let verticals: Vec<i32> = (0..batch * heads * nnz_v).map(|_| value()).collect();
        let slashes: Vec<i32> = (0..batch * heads * nnz_s).map(|_| value()).collect();
        cases.push(HostCase { dims: [batch, heads, seq_q, seq_k, nnz_v, nnz_s, row_blocks], verticals, slashes });
    }
    let Some(got) = run_kernel_source_on_host(&cases) else {
        eprintln!("g++ not found: the kernel source was not run on garbage indices");
        return;
    };
    for (case, [block_count, block_offset, column_count, column_index]) in cases.iter().zip(got) {
        let [_, _, _, seq_k, nnz_v, nnz_s, _] = case.dims;
        for (counts, entries, cap) in [(&block_count, &block_offset, nnz_s), (&column_count, &column_index, nnz_v)] {
            for (row, &count) in counts.iter().enumerate() {
                assert!((0..=cap as i32).contains(&count), "count {count} outside 0..={cap}, dims {:?}", case.dims);
                let entries = &entries[row * cap..(row + 1) * cap];
                let (used, tail) = entries.split_at(count as usize);
                assert!(used.iter().all(|&k| (0..seq_k as i32).contains(&k)), "entry outside [0, {seq_k}): {used:?}");
                assert!(tail.iter().all(|&x| x == -1), "padding must be -1: {tail:?}");
            }
        }
    }
}

#[test]
fn kernel_is_compiled_without_spills() {
    // The build script compiles kernels/vs_convert.cu when a CUDA compiler exists; its
    // ptxas report must list the conversion kernel for every target with no spill traffic.
    let Some(report) = sparse_attn::ptx::resource_report() else {
        eprintln!("built without a CUDA compiler: no ptxas report to check");
        return;
    };
    let rows: Vec<Vec<&str>> = report.lines().skip(1).map(|l| l.split('\t').collect()).filter(|r: &Vec<&str>| r.get(1) == Some(&"vertical_slash_convert")).collect();
    assert!(!rows.is_empty(), "vertical_slash_convert missing from the ptxas report:\n{report}");
    for row in rows {
        assert_eq!((row[4], row[5]), ("0", "0"), "spills in {row:?}");
    }
}
