//! CPU references of the operator kernels (fp64 accumulation), the number formats they need
//! (bf16 rounding, int8 packing), and the error measure the correctness checks use.

/// Round an f32 to bf16 (round to nearest, ties to even); the bits.
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    let round = 0x7fff + ((b >> 16) & 1);
    (b.wrapping_add(round) >> 16) as u16
}

/// The f32 value of bf16 bits.
pub fn bf16_value(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Pack rows of int8 values (length a multiple of 4) four per i32, little-endian.
pub fn pack_int8(values: &[i8]) -> Vec<i32> {
    values
        .chunks(4)
        .map(|c| i32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8]))
        .collect()
}

/// ‖out − reference‖₂ / ‖reference‖₂ (or ‖out‖₂ when the reference is all zeros); infinite
/// when the lengths differ, so a missing or short result never passes.
pub fn relative_error(out: &[f32], reference: &[f64]) -> f64 {
    if out.len() != reference.len() {
        return f64::INFINITY;
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (o, r) in out.iter().zip(reference) {
        num += (f64::from(*o) - r).powi(2);
        den += r * r;
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// C (m×n) = A (m×k) · B (k×n), row-major.
pub fn matmul(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for p in 0..k {
            let av = f64::from(a[i * k + p]);
            for j in 0..n {
                c[i * n + j] += av * f64::from(b[p * n + j]);
            }
        }
    }
    c
}

/// int8 matmul with per-row scales `sa` and per-column scales `sb`; B given transposed (n×k).
pub fn matmul_int8(
    a: &[i8],
    bt: &[i8],
    sa: &[f32],
    sb: &[f32],
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: i64 = (0..k)
                .map(|p| i64::from(a[i * k + p]) * i64::from(bt[j * k + p]))
                .sum();
            c[i * n + j] = dot as f64 * f64::from(sa[i]) * f64::from(sb[j]);
        }
    }
    c
}

/// Attention shape: `[b][h][l][d]` tensors, `lens[b]` valid tokens per batch row.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    /// Batch.
    pub b: usize,
    /// Heads.
    pub h: usize,
    /// Sequence length (padded).
    pub l: usize,
    /// Head dimension.
    pub d: usize,
    /// Whether query i sees only keys j ≤ i.
    pub causal: bool,
}

/// Attention output (`[b][h][l][d]`): softmax(scale·QKᵀ, masked)·V; padding queries give zeros.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    lens: &[i32],
    s: AttnShape,
    scale: f32,
) -> Vec<f64> {
    let mut out = vec![0.0; s.b * s.h * s.l * s.d];
    for bh in 0..s.b * s.h {
        let len = lens[bh / s.h].max(0) as usize;
        for i in 0..s.l.min(len) {
            let last = if s.causal { (i + 1).min(len) } else { len };
            let row = |j: usize| (bh * s.l + j) * s.d;
            let scores: Vec<f64> = (0..last)
                .map(|j| {
                    let (qi, kj) = (row(i), row(j));
                    (0..s.d)
                        .map(|x| f64::from(q[qi + x]) * f64::from(k[kj + x]))
                        .sum::<f64>()
                        * f64::from(scale)
                })
                .collect();
            let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let total: f64 = w.iter().sum();
            for x in 0..s.d {
                let o: f64 = (0..last).map(|j| w[j] * f64::from(v[row(j) + x])).sum();
                out[(bh * s.l + i) * s.d + x] = o / total;
            }
        }
    }
    out
}

/// Row softmax of `rows` rows of `n`; rows of only −∞ give zeros.
pub fn softmax_rows(x: &[f32], rows: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; rows * n];
    for r in 0..rows {
        let row = &x[r * n..(r + 1) * n];
        let m = row
            .iter()
            .map(|v| f64::from(*v))
            .fold(f64::NEG_INFINITY, f64::max);
        if m == f64::NEG_INFINITY {
            continue;
        }
        let e: Vec<f64> = row.iter().map(|v| (f64::from(*v) - m).exp()).collect();
        let s: f64 = e.iter().sum();
        for (o, v) in out[r * n..(r + 1) * n].iter_mut().zip(e) {
            *o = v / s;
        }
    }
    out
}

/// LayerNorm over rows of `d`.
pub fn layernorm(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    rows: usize,
    d: usize,
    eps: f32,
) -> Vec<f64> {
    let mut out = vec![0.0; rows * d];
    for r in 0..rows {
        let row: Vec<f64> = x[r * d..(r + 1) * d]
            .iter()
            .map(|v| f64::from(*v))
            .collect();
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + f64::from(eps)).sqrt();
        for j in 0..d {
            out[r * d + j] = (row[j] - mean) * rstd * f64::from(gamma[j]) + f64::from(beta[j]);
        }
    }
    out
}

/// RMSNorm over rows of `d`.
pub fn rmsnorm(x: &[f32], w: &[f32], rows: usize, d: usize, eps: f32) -> Vec<f64> {
    let mut out = vec![0.0; rows * d];
    for r in 0..rows {
        let row = &x[r * d..(r + 1) * d];
        let ms = row.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / d as f64;
        let rs = 1.0 / (ms + f64::from(eps)).sqrt();
        for j in 0..d {
            out[r * d + j] = f64::from(row[j]) * rs * f64::from(w[j]);
        }
    }
    out
}

/// GELU, tanh form.
pub fn gelu(x: &[f32]) -> Vec<f64> {
    x.iter()
        .map(|&v| {
            let v = f64::from(v);
            0.5 * v * (1.0 + (0.797_884_560_8 * (v + 0.044_715 * v * v * v)).tanh())
        })
        .collect()
}

/// SiLU: x·σ(x).
pub fn silu(x: &[f32]) -> Vec<f64> {
    x.iter()
        .map(|&v| f64::from(v) / (1.0 + (-f64::from(v)).exp()))
        .collect()
}

/// Embedding rows `ids` of `table` (rows of `d`).
pub fn embedding(ids: &[i32], table: &[f32], d: usize) -> Vec<f64> {
    ids.iter()
        .flat_map(|&i| {
            table[i as usize * d..(i as usize + 1) * d]
                .iter()
                .map(|v| f64::from(*v))
        })
        .collect()
}

/// Transpose of a rows×cols matrix, in fp64.
pub fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    transposed(x, rows, cols)
        .into_iter()
        .map(f64::from)
        .collect()
}

/// Transpose of a rows×cols matrix, in its own element type (an operand to upload).
pub fn transposed<T: Copy + Default>(x: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = vec![T::default(); rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = x[r * cols + c];
        }
    }
    out
}

/// Per-row symmetric int8 quantisation of a rows×cols matrix: the values, and each row's scale
/// (its largest magnitude over 127; 1 for a row of zeros), as [`matmul_int8`] takes them.
pub fn quantize_rows_int8(x: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = vec![0i8; rows * cols];
    let mut scales = vec![0f32; rows];
    for i in 0..rows {
        let row = &x[i * cols..(i + 1) * cols];
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = if max > 0.0 { max / 127.0 } else { 1.0 };
        scales[i] = s;
        for (j, v) in row.iter().enumerate() {
            q[i * cols + j] = (v / s).round().clamp(-127.0, 127.0) as i8;
        }
    }
    (q, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_rows_keep_their_largest_value_and_transposes_undo_each_other() {
        let x = [1.0f32, -0.5, 0.25, 0.0, 0.0, 0.0];
        let (q, s) = quantize_rows_int8(&x, 2, 3);
        assert_eq!(&q[..3], &[127, -64, 32]);
        assert_eq!(s, vec![1.0 / 127.0, 1.0]);
        assert_eq!(transposed(&transposed(&x, 2, 3), 3, 2), x.to_vec());
        assert_eq!(transpose(&x, 2, 3)[1], 0.0);
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(bf16_value(bf16_bits(1.0)), 1.0);
        // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
        assert_eq!(bf16_value(bf16_bits(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(bf16_value(bf16_bits(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert!(bf16_value(bf16_bits(f32::NAN)).is_nan());
    }

    #[test]
    fn references_agree_with_hand_computed_cases() {
        assert_eq!(
            matmul(&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0], 2, 2, 2),
            vec![19.0, 22.0, 43.0, 50.0]
        );
        let p = softmax_rows(&[0.0, 0.0, f32::NEG_INFINITY, f32::NEG_INFINITY], 2, 2);
        assert_eq!(p, vec![0.5, 0.5, 0.0, 0.0]);
        assert_eq!(
            pack_int8(&[1, -1, 2, -2]),
            vec![i32::from_le_bytes([1, 255, 2, 254])]
        );
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
        // One query, one visible key: the output is that key's value row.
        let s = AttnShape {
            b: 1,
            h: 1,
            l: 2,
            d: 2,
            causal: true,
        };
        let out = attention(
            &[1.0, 0.0, 0.0, 1.0],
            &[1.0, 0.0, 0.0, 1.0],
            &[3.0, 4.0, 5.0, 6.0],
            &[2],
            s,
            1.0,
        );
        assert_eq!(&out[..2], &[3.0, 4.0]);
        assert!((relative_error(&[1.0, 1.0], &[1.0, 1.0])).abs() < 1e-12);
        assert!(
            relative_error(&[1.0], &[1.0, 2.0]).is_infinite(),
            "a short result never passes"
        );
    }
}
