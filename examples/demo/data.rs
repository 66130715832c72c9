//! The demo's synthetic inputs and its ideal top-k token selector.

use sparse_attn::pattern::TopkTokens;
use sparse_attn::reference::RefInputs;
use sparse_attn::{AttnShape, Result};

/// q, k, v as the kernels read them (bf16, contiguous BSHD), and widened for the reference.
pub struct Inputs {
    pub q: Vec<half::bf16>,
    pub k: Vec<half::bf16>,
    pub v: Vec<half::bf16>,
    pub reference: RefInputs,
}

/// Noise plus a rotary-style positional signal (q_i . k_j gains sum_f cos((i - j) w_f), which
/// peaks at i == j) and a strong key 0. Rounded to bf16 like real kernel inputs.
pub fn synthetic_inputs(shape: AttnShape) -> Result<Inputs> {
    let mut state = 0x5eed_u64;
    let mut noise = move || {
        // xorshift64*, summed four times for a roughly normal value of unit variance.
        (0..4)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .sum::<f64>()
            * 3f64.sqrt()
    };
    let positional = |pos: usize, x: usize| {
        let f = (x / 2) as f64;
        let angle = pos as f64 * 0.5 / 10_000f64.powf(2.0 * f / 16.0);
        1.5 * if x.is_multiple_of(2) { angle.cos() } else { angle.sin() }
    };
    let build = |seq: usize, heads: usize, noise: &mut dyn FnMut() -> f64, sink: bool| -> Vec<half::bf16> {
        let mut t = Vec::with_capacity(seq * heads * shape.head_dim());
        for pos in 0..seq {
            for _ in 0..heads {
                for x in 0..shape.head_dim() {
                    let mut value = noise();
                    if x < 16 {
                        value += positional(pos, x);
                    } else if sink && pos == 0 {
                        value += 2.0;
                    } else if !sink {
                        value += 0.25;
                    }
                    t.push(half::bf16::from_f64(value));
                }
            }
        }
        t
    };
    let q = build(shape.seq_q(), shape.heads_q(), &mut noise, false);
    let k = build(shape.seq_k(), shape.heads_kv(), &mut noise, true);
    // V is plain unit-variance noise, the input the kernels' error bounds are stated for.
    let v: Vec<half::bf16> = (0..shape.kv_len()).map(|_| half::bf16::from_f64(noise())).collect();
    let reference = RefInputs::new(shape, &q, &k, &v)?;
    Ok(Inputs { q, k, v, reference })
}

/// Exact top-k keys per (query row, kv head) by the summed scores of the group's query
/// heads: what an ideal DSA-style indexer would pick. Causally hidden keys are never picked.
pub fn select_topk_tokens(inputs: &RefInputs, k: usize, scale: f64) -> Result<TopkTokens> {
    let s = inputs.shape;
    let (d, group) = (s.head_dim(), s.group_size());
    let row = |b: usize, i: usize, h_kv: usize| -> Vec<i32> {
        let visible = s.visible_keys(i, true);
        let mut scored: Vec<(f64, usize)> = (0..visible)
            .map(|j| {
                let kj = &inputs.k[s.kv_layout().offset(b, j, h_kv)..][..d];
                let score: f64 = (0..group)
                    .map(|g| {
                        let qi = &inputs.q[s.q_layout().offset(b, i, h_kv * group + g)..][..d];
                        qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>()
                    })
                    .sum();
                (score * scale, j)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut keys: Vec<i32> = scored.iter().take(k).map(|&(_, j)| j as i32).collect();
        keys.resize(k, -1);
        keys
    };
    let rows: Vec<(usize, usize, usize)> =
        (0..s.batch()).flat_map(|b| (0..s.seq_q()).flat_map(move |i| (0..s.heads_kv()).map(move |h| (b, i, h)))).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = rows.len().div_ceil(threads);
    let indices: Vec<i32> = std::thread::scope(|scope| {
        let workers: Vec<_> = rows
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().flat_map(|&(b, i, h)| row(b, i, h)).collect::<Vec<i32>>()))
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("top-k selection worker panicked")).collect()
    });
    TopkTokens::new(s.batch(), s.seq_q(), s.heads_kv(), k, indices)
}

