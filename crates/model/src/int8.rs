//! Opt-in int8 inference for the encoder's Linear layers on the Flex CPU backend (docs/int8.md).
//!
//! - Weights: symmetric i8 per output channel, `w ~ s_n q`, `s_n = max_k |w[k, n]| / 127`,
//!   quantised once at load and packed in the order the kernels stream them ([`PackedLinear`]).
//! - Activations: asymmetric u8 per row at run time, `x ~ s (u - z)` over a range that includes 0
//!   (so 0 is exact and `z` lies in 0..=255), see [`quantize_row`].
//! - Products: `acc = sum_k u[k] q[k, n]` in i32, exact: `|acc| <= K 255 127 < 2^31` for every
//!   `K <= MAX_DEPTH`. The epilogue computes `y = s s_n (acc - z colsum_n) + b_n` in f32 and fuses
//!   GELU or a residual add.
//!
//! The kernels (scalar, AVX2, AVX-VNNI, AVX512-VNNI) compute the same exact integer sums, so every
//! instruction set gives bit-identical outputs; the scalar one is the reference the tests hold the
//! others to. AVX2 without VNNI has no exact u8 x i8 instruction (`vpmaddubsw` adds two products
//! into a saturating i16: 2 x 255 x 127 > 32767), so it splits `u = 2 (u >> 1) + (u & 1)`: each half
//! fits `vpmaddubsw` without saturation and `vpmaddwd` widens both to i32.

use crate::fast::{self, Out};
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::DType;
use burn_flex::FlexTensor;
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::Arc;

/// Output columns per packed panel (one AVX512 micro-tile: four registers of 16 i32 lanes).
pub const NR: usize = 64;
/// Rows per micro-tile (the AVX512 kernel keeps `MR x 4` accumulators in its 32 registers).
pub const MR: usize = 6;
/// Rows per AMX block: two tiles of 16 rows.
pub const AMX_ROWS: usize = 32;
/// The deepest `d_in` whose i32 accumulation cannot overflow: `K 255 127 < 2^31`.
pub const MAX_DEPTH: usize = (i32::MAX as usize) / (255 * 127);
/// Rows per parallel task: a chunk of u8 activations stays in L2 while every panel passes over it
/// (whole micro-tiles of both kernel shapes).
const ROW_CHUNK: usize = 96;
const _: () = assert!(ROW_CHUNK.is_multiple_of(MR) && ROW_CHUNK.is_multiple_of(AMX_ROWS));

#[derive(Debug, thiserror::Error)]
pub enum Int8Error {
    #[error("int8 inference runs on the CPU (Flex) backend only")]
    Backend,
    #[error("{name}: d_in {d_in} is too deep for exact i32 accumulation (at most {MAX_DEPTH})")]
    TooDeep { name: String, d_in: usize },
}

/// A Linear's weight as i8 per output channel, packed for the kernels, with what the epilogue
/// needs. `source` is the f32 weight it came from: a model whose weights have since been replaced
/// (a different buffer) no longer matches and runs in f32 ([`Int8Linears::get`]).
pub struct PackedLinear {
    d_in: usize,
    d_out: usize,
    /// `d_in` rounded up to a multiple of 4 (padding rows of the weight are 0).
    depth: usize,
    /// `[panel][depth / 4][NR][4]`: for each panel of `NR` columns and each group of 4 inputs, the
    /// 4 weights of column 0, then of column 1, ... (what `vpdpbusd` multiplies one i32 lane by).
    data: Vec<i8>,
    scale: Vec<f32>,
    col_sum: Vec<i32>,
    bias: Option<Vec<f32>>,
    source: FlexTensor,
}

impl std::fmt::Debug for PackedLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedLinear({} x {}, int8)", self.d_in, self.d_out)
    }
}

/// `q` (`[d_in, d_out]` row-major) in the kernels' panel layout (see [`PackedLinear`]): panel `p`
/// is `[d_in.next_multiple_of(4) * NR]` bytes from `p * depth * NR`, zero-padded.
pub fn pack_panels(q: &[i8], d_in: usize, d_out: usize) -> Vec<i8> {
    let depth = d_in.next_multiple_of(4);
    let mut data = vec![0i8; d_out.div_ceil(NR) * depth * NR];
    for (k, row) in q.chunks_exact(d_out).enumerate() {
        for (n, &v) in row.iter().enumerate() {
            let (p, c) = (n / NR, n % NR);
            data[((p * depth / 4 + k / 4) * NR + c) * 4 + k % 4] = v;
        }
    }
    data
}

/// Symmetric i8 quantisation of one output channel: (scale, values). An all-zero channel gets
/// scale 1 (any scale represents it exactly).
#[inline(always)]
pub fn quantize_channel(w: &[f32]) -> (f32, Vec<i8>) {
    let amax = w.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = if amax > 0.0 { amax / 127.0 } else { 1.0 };
    (scale, w.iter().map(|x| (x / scale).round_ties_even().clamp(-127.0, 127.0) as i8).collect())
}

fast::simd_dispatch! {
    /// [`quantize_channel`] of every column of `w` (`[d_in, d_out]` row-major): the values
    /// (row-major), scales and column sums. Compiled for AVX2 where the CPU has it (the same code:
    /// the same values; without SSE4.1 every rounding is a libm call).
    fn quantize_columns(w: &[f32], d_in: usize, d_out: usize) -> (Vec<i8>, Vec<f32>, Vec<i32>) {
        let mut q = vec![0i8; d_in * d_out];
        let (mut scale, mut col_sum) = (Vec::with_capacity(d_out), Vec::with_capacity(d_out));
        let mut column = vec![0f32; d_in];
        for n in 0..d_out {
            column.iter_mut().enumerate().for_each(|(k, c)| *c = w[k * d_out + n]);
            let (s, qn) = quantize_channel(&column);
            scale.push(s);
            col_sum.push(qn.iter().map(|&v| v as i32).sum());
            qn.iter().enumerate().for_each(|(k, &v)| q[k * d_out + n] = v);
        }
        (q, scale, col_sum)
    }
}

impl PackedLinear {
    /// Packs `w` (`[d_in, d_out]`, row-major: burn's Linear layout) and its bias.
    pub fn new(w: &[f32], d_in: usize, d_out: usize, bias: Option<Vec<f32>>, source: FlexTensor) -> Self {
        assert_eq!(w.len(), d_in * d_out, "weight of {d_in} x {d_out}");
        let (q, scale, col_sum) = quantize_columns(w, d_in, d_out);
        let depth = d_in.next_multiple_of(4);
        PackedLinear { d_in, d_out, depth, data: pack_panels(&q, d_in, d_out), scale, col_sum, bias, source }
    }

    /// Quantises a Flex Linear (`name` for errors).
    pub fn from_linear<B: Backend>(layer: &Linear<B>, name: &str) -> Result<Self, Int8Error> {
        if !fast::is_flex::<B>() {
            return Err(Int8Error::Backend);
        }
        let [d_in, d_out] = layer.weight.dims();
        if d_in > MAX_DEPTH {
            return Err(Int8Error::TooDeep { name: name.to_string(), d_in });
        }
        let weight = layer.weight.val();
        let source = fast::to_flex(weight.clone());
        let w: Vec<f32> = weight.into_data().convert::<f32>().to_vec().expect("f32 data");
        let bias =
            layer.bias.as_ref().map(|b| b.val().into_data().convert::<f32>().to_vec().expect("f32 data"));
        Ok(Self::new(&w, d_in, d_out, bias, source))
    }

    pub fn dims(&self) -> (usize, usize) {
        (self.d_in, self.d_out)
    }

    fn panel(&self, p: usize) -> &[i8] {
        &self.data[p * self.depth * NR..(p + 1) * self.depth * NR]
    }

    /// Whether this was packed from `layer`'s current weight buffer.
    fn matches<B: Backend>(&self, layer: &Linear<B>) -> bool {
        fast::same_flex(&self.source, &fast::to_flex(layer.weight.val()))
    }
}

/// The packed int8 weights of a module's Linear layers, filled by `quantize_int8`; empty (f32)
/// otherwise. Shared by clones of the module; skipped by records, so saving a model saves f32.
#[derive(Clone, Default)]
pub struct Int8Linears(Option<Arc<Vec<PackedLinear>>>);

impl std::fmt::Debug for Int8Linears {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Int8Linears(packed)" } else { "Int8Linears(f32)" })
    }
}

impl Int8Linears {
    /// Packs `layers` (in the order `get` will be asked for them).
    pub fn pack<B: Backend>(layers: &[(&Linear<B>, &str)]) -> Result<Self, Int8Error> {
        let packed =
            layers.iter().map(|(l, name)| PackedLinear::from_linear(*l, name)).collect::<Result<_, _>>()?;
        Ok(Int8Linears(Some(Arc::new(packed))))
    }

    /// The packed weights of `layers`, when the int8 path applies: tensors of `B` in f32 on
    /// Flex with the fused kernels on ([`fast::applies`]), and every layer still holding the weight
    /// it was packed from.
    pub fn get<B: Backend, const N: usize>(&self, layers: [&Linear<B>; N]) -> Option<[&PackedLinear; N]> {
        let packed = self.0.as_deref()?;
        if packed.len() != N || !fast::applies::<B>(DType::F32) {
            return None;
        }
        let all = std::array::from_fn(|i| &packed[i]);
        all.iter().zip(layers).all(|(p, l)| p.matches(l)).then_some(all)
    }

    pub fn is_packed(&self) -> bool {
        self.0.is_some()
    }
}

// ---------------------------------------------------------------------------------------------
// Activations
// ---------------------------------------------------------------------------------------------

/// Asymmetric u8 quantisation of one row into `out` (`x.len()` values; the rest of `out` is left
/// as is): returns `(scale, zero)` with `x ~ scale (u - zero)`. The range is widened to include 0;
/// an all-zero row gets scale 1, zero 0. A row with a NaN or infinity gets scale NaN, so that its
/// outputs are NaN rather than finite nonsense.
#[inline(always)]
pub fn quantize_row(x: &[f32], out: &mut [u8]) -> (f32, i32) {
    // Eight independent lanes with plain compares, so that the loop vectorises; `v * 0` is NaN
    // exactly when `v` is NaN or infinite.
    let (mut lo, mut hi, mut poison) = ([0f32; 8], [0f32; 8], [0f32; 8]);
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for j in 0..8 {
            lo[j] = if c[j] < lo[j] { c[j] } else { lo[j] };
            hi[j] = if c[j] > hi[j] { c[j] } else { hi[j] };
            poison[j] += c[j] * 0.0;
        }
    }
    for (j, &v) in tail.iter().enumerate() {
        lo[j] = if v < lo[j] { v } else { lo[j] };
        hi[j] = if v > hi[j] { v } else { hi[j] };
        poison[j] += v * 0.0;
    }
    let lo = lo.iter().fold(0f32, |a, &b| a.min(b));
    let hi = hi.iter().fold(0f32, |a, &b| a.max(b));
    if poison.iter().sum::<f32>().is_nan() {
        out[..x.len()].fill(0);
        return (f32::NAN, 0);
    }
    if hi == lo {
        out[..x.len()].fill(0);
        return (1.0, 0);
    }
    let scale = (hi - lo) / 255.0;
    let inv = 1.0 / scale;
    let zero = (-lo * inv).round_ties_even().clamp(0.0, 255.0);
    for (u, &v) in out.iter_mut().zip(x) {
        let q = (v * inv + zero).round_ties_even().clamp(0.0, 255.0);
        // SAFETY: `q` is finite (the row is) and clamped into 0..=255, so it fits an i32.
        *u = unsafe { q.to_int_unchecked::<i32>() } as u8;
    }
    (scale, zero as i32)
}

/// Rows quantised for the kernels: `depth` bytes per row (padding bytes 0), with each row's scale
/// and zero point.
pub struct QuantRows {
    pub data: Vec<u8>,
    pub depth: usize,
    pub scale: Vec<f32>,
    pub zero: Vec<i32>,
}

impl QuantRows {
    /// Quantises `x` (`rows` contiguous rows of `d_in`), reusing `data`'s allocation.
    pub fn new(x: &[f32], d_in: usize, mut data: Vec<u8>) -> Self {
        let rows = x.len() / d_in;
        let depth = d_in.next_multiple_of(4);
        data.clear();
        data.resize(rows * depth, 0);
        let mut params = vec![(0f32, 0i32); rows];
        data.par_chunks_mut(depth)
            .zip(x.par_chunks(d_in))
            .zip(params.par_iter_mut())
            .with_min_len(16)
            .for_each(|((out, row), p)| *p = quantize_row_simd(row, out));
        let (scale, zero) = params.into_iter().unzip();
        QuantRows { data, depth, scale, zero }
    }

    pub fn rows(&self) -> usize {
        self.scale.len()
    }
}

fast::simd_dispatch! {
    /// [`quantize_row`] compiled for AVX2 where the CPU has it (the same code: same results).
    fn quantize_row_simd(x: &[f32], out: &mut [u8]) -> (f32, i32) {
        quantize_row(x, out)
    }
}

// ---------------------------------------------------------------------------------------------
// Kernels: tile[i][c] = sum_k a[i][k] * panel column c, for i < mr, over the whole depth
// ---------------------------------------------------------------------------------------------

/// An instruction set the kernels are written for, in increasing order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    Avx2,
    AvxVnni,
    Avx512Vnni,
    /// Intel AMX tiles (`tdpbusd`, 16 rows x 16 columns x 64 inputs a step), with the AVX-512 epilogue.
    Amx,
}

impl Isa {
    pub const ALL: [Isa; 5] = [Isa::Scalar, Isa::Avx2, Isa::AvxVnni, Isa::Avx512Vnni, Isa::Amx];

    /// The most rows one [`kernel`] call computes.
    pub fn block_rows(self) -> usize {
        match self {
            Isa::Amx => AMX_ROWS,
            _ => MR,
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            match self {
                Isa::Scalar => true,
                Isa::Avx2 => avx2,
                Isa::AvxVnni => avx2 && is_x86_feature_detected!("avxvnni"),
                Isa::Avx512Vnni => {
                    avx2 && is_x86_feature_detected!("avx512f")
                        && is_x86_feature_detected!("avx512bw")
                        && is_x86_feature_detected!("avx512vnni")
                }
                Isa::Amx => Isa::Avx512Vnni.available() && x86::amx_usable(),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Isa::Scalar
        }
    }
}

/// The best kernel this CPU runs (detected once).
pub fn isa() -> Isa {
    static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *BEST.get_or_init(|| Isa::ALL.into_iter().rev().find(|i| i.available()).unwrap_or(Isa::Scalar))
}

/// One micro-tile in plain Rust: the reference.
fn tile_scalar(a: &[u8], a_stride: usize, mr: usize, panel: &[i8], depth: usize, tile: &mut [i32]) {
    for i in 0..mr {
        let row = &a[i * a_stride..][..depth];
        let out = &mut tile[i * NR..(i + 1) * NR];
        out.fill(0);
        for (g, quad) in row.chunks_exact(4).enumerate() {
            let w = &panel[g * NR * 4..(g + 1) * NR * 4];
            for (c, o) in out.iter_mut().enumerate() {
                for j in 0..4 {
                    *o += quad[j] as i32 * w[c * 4 + j] as i32;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// The four u8 activations `a[k..k + 4]` as one i32 lane value.
    // SAFETY: unsafe because it reads through a raw pointer: `a` must have 4 readable bytes.
    #[inline(always)]
    unsafe fn quad(a: *const u8) -> i32 {
        // SAFETY: the caller passes a pointer with 4 readable bytes.
        unsafe { (a as *const i32).read_unaligned() }
    }

    /// AVX512-VNNI: `M` rows x 64 columns in 4M zmm accumulators, one `vpdpbusd` per 4 inputs x
    /// 16 columns.
    // SAFETY: unsafe because it dereferences raw pointers and uses AVX512 instructions: the
    // operands must have the sizes stated in the body, and the CPU the features.
    #[inline(always)]
    unsafe fn tile512<const M: usize>(
        a: *const u8,
        a_stride: usize,
        panel: *const i8,
        depth: usize,
        tile: *mut i32,
    ) {
        // SAFETY: (whole body) the caller guarantees M rows of `depth` bytes at `a` (stride
        // `a_stride`), a panel of depth x NR bytes and a tile of MR x NR i32; the CPU has AVX512F,
        // AVX512BW and AVX512-VNNI (checked by `Isa::available` before the dispatch).
        unsafe {
            let mut acc = [[_mm512_setzero_si512(); 4]; M];
            for g in 0..depth / 4 {
                let bp = panel.add(g * NR * 4);
                let b = [
                    _mm512_loadu_si512(bp as *const _),
                    _mm512_loadu_si512(bp.add(64) as *const _),
                    _mm512_loadu_si512(bp.add(128) as *const _),
                    _mm512_loadu_si512(bp.add(192) as *const _),
                ];
                for (i, acc) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_epi32(quad(a.add(i * a_stride + g * 4)));
                    for j in 0..4 {
                        acc[j] = _mm512_dpbusd_epi32(acc[j], av, b[j]);
                    }
                }
            }
            for (i, acc) in acc.iter().enumerate() {
                for (j, v) in acc.iter().enumerate() {
                    _mm512_storeu_si512(tile.add(i * NR + j * 16) as *mut _, *v);
                }
            }
        }
    }

    /// See [`super::kernel`] for the contract.
    // SAFETY: unsafe because of the raw operands and the CPU features (`super::kernel` checks both).
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
    pub unsafe fn tile_avx512vnni(
        a: *const u8,
        a_stride: usize,
        mr: usize,
        panel: *const i8,
        depth: usize,
        tile: *mut i32,
    ) {
        // SAFETY: the contract of this function is the contract of `tile512` with M = mr <= MR.
        unsafe {
            match mr {
                1 => tile512::<1>(a, a_stride, panel, depth, tile),
                2 => tile512::<2>(a, a_stride, panel, depth, tile),
                3 => tile512::<3>(a, a_stride, panel, depth, tile),
                4 => tile512::<4>(a, a_stride, panel, depth, tile),
                5 => tile512::<5>(a, a_stride, panel, depth, tile),
                _ => tile512::<MR>(a, a_stride, panel, depth, tile),
            }
        }
    }

    /// How a 256-bit kernel multiplies 4 u8 activations (one i32 broadcast) by 8 columns of 4 i8
    /// weights into 8 i32 lanes.
    trait Dot256 {
        // SAFETY: unsafe because implementations use CPU features their callers must have.
        unsafe fn dot(acc: __m256i, a: i32, b: __m256i) -> __m256i;
    }

    struct Vnni;
    impl Dot256 for Vnni {
        // SAFETY: see the trait.
        #[inline(always)]
        unsafe fn dot(acc: __m256i, a: i32, b: __m256i) -> __m256i {
            // SAFETY: only instantiated inside `tile_avxvnni`, compiled for AVX-VNNI.
            unsafe { _mm256_dpbusd_avx_epi32(acc, _mm256_set1_epi32(a), b) }
        }
    }

    struct Avx2;
    impl Dot256 for Avx2 {
        // SAFETY: see the trait.
        #[inline(always)]
        unsafe fn dot(acc: __m256i, a: i32, b: __m256i) -> __m256i {
            // u = 2 (u >> 1) + (u & 1): each part times i8, summed in pairs, fits an i16 (at most
            // 2 x 127 x 128 and 2 x 1 x 128), so `vpmaddubsw` cannot saturate; `vpmaddwd` by 2 and
            // by 1 widens the pair sums to i32 exactly.
            let (hi, lo) = ((a >> 1) & 0x7f7f_7f7f, a & 0x0101_0101);
            // SAFETY: only instantiated inside `tile_avx2`, compiled for AVX2.
            unsafe {
                let h = _mm256_maddubs_epi16(_mm256_set1_epi32(hi), b);
                let l = _mm256_maddubs_epi16(_mm256_set1_epi32(lo), b);
                let h = _mm256_madd_epi16(h, _mm256_set1_epi16(2));
                let l = _mm256_madd_epi16(l, _mm256_set1_epi16(1));
                _mm256_add_epi32(acc, _mm256_add_epi32(h, l))
            }
        }
    }

    /// 256-bit kernels: the panel as four 16-column quarters, `M` rows x 16 columns each in 2M
    /// ymm accumulators.
    // SAFETY: unsafe because it dereferences raw pointers and uses the features of `D`: the
    // operands must have the sizes stated in the body, and the CPU the features.
    #[inline(always)]
    unsafe fn tile256<D: Dot256, const M: usize>(
        a: *const u8,
        a_stride: usize,
        panel: *const i8,
        depth: usize,
        tile: *mut i32,
    ) {
        // SAFETY: (whole body) as for `tile512`, with the CPU features of `D` checked before the
        // dispatch.
        unsafe {
            for q in 0..4 {
                let mut acc = [[_mm256_setzero_si256(); 2]; M];
                for g in 0..depth / 4 {
                    let bp = panel.add(g * NR * 4 + q * 64);
                    let b = [_mm256_loadu_si256(bp as *const _), _mm256_loadu_si256(bp.add(32) as *const _)];
                    for (i, acc) in acc.iter_mut().enumerate() {
                        let av = quad(a.add(i * a_stride + g * 4));
                        acc[0] = D::dot(acc[0], av, b[0]);
                        acc[1] = D::dot(acc[1], av, b[1]);
                    }
                }
                for (i, acc) in acc.iter().enumerate() {
                    _mm256_storeu_si256(tile.add(i * NR + q * 16) as *mut _, acc[0]);
                    _mm256_storeu_si256(tile.add(i * NR + q * 16 + 8) as *mut _, acc[1]);
                }
            }
        }
    }

    macro_rules! dispatch256 {
        ($name:ident, $dot:ty, $features:literal, $rows:literal) => {
            /// See [`super::kernel`] for the contract.
            // SAFETY: unsafe because of the raw operands and the CPU features (`super::kernel`
            // checks both).
            #[target_feature(enable = $features)]
            pub unsafe fn $name(
                a: *const u8,
                a_stride: usize,
                mr: usize,
                panel: *const i8,
                depth: usize,
                tile: *mut i32,
            ) {
                // SAFETY: the contract of this function is that of `tile256`, in row blocks of at
                // most `$rows`.
                unsafe {
                    let mut i = 0;
                    while i < mr {
                        let (a, tile) = (a.add(i * a_stride), tile.add(i * NR));
                        match mr - i {
                            1 => tile256::<$dot, 1>(a, a_stride, panel, depth, tile),
                            2 => tile256::<$dot, 2>(a, a_stride, panel, depth, tile),
                            _ => tile256::<$dot, $rows>(a, a_stride, panel, depth, tile),
                        }
                        i += $rows.min(mr - i).max(1);
                    }
                }
            }
        };
    }
    dispatch256!(tile_avxvnni, Vnni, "avx2,fma,avxvnni", 3);
    dispatch256!(tile_avx2, Avx2, "avx2,fma", 3);

    /// Whether the CPU has AMX-TILE and AMX-INT8 and the OS lets this process fill the tiles.
    /// Linux hands out the (8 KiB per thread) tile state only on request, once per process, to
    /// every thread; elsewhere AMX is not used.
    pub fn amx_usable() -> bool {
        static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *USABLE.get_or_init(|| {
            // CPUID leaf 7, EDX: bit 24 AMX-TILE, bit 25 AMX-INT8. (The intrinsics became safe
            // functions in a recent Rust; the block keeps older compilers of our MSRV building.)
            // SAFETY: every x86_64 CPU has CPUID, and leaf 7 is read only where leaf 0 lists it.
            #[allow(unused_unsafe)]
            let edx = unsafe {
                if __cpuid(0).eax >= 7 {
                    __cpuid_count(7, 0).edx
                } else {
                    0
                }
            };
            edx & (1 << 24) != 0 && edx & (1 << 25) != 0 && request_tile_data()
        })
    }

    #[cfg(target_os = "linux")]
    fn request_tile_data() -> bool {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: this request takes no memory and only grants the process a register state; a
        // kernel without AMX support answers with an error, which means "not usable".
        unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
    }

    #[cfg(not(target_os = "linux"))]
    fn request_tile_data() -> bool {
        false
    }

    /// What `ldtilecfg` loads (palette 1): the shape of each tile register. tmm0-1 and tmm2-3
    /// accumulate rows 0-15 and 16-31 of the block in i32, for two 16-column quarters of the panel;
    /// tmm4-5 hold those rows' u8 activations for 64 inputs; tmm6-7 the two quarters' i8 weights
    /// for the same inputs (16 groups of 4 inputs x 16 columns: the panel's own layout).
    #[repr(C, align(64))]
    struct TileConfig {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        /// Bytes per row of each tile.
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    impl TileConfig {
        /// `top` rows in the first half of the block (1..=16), `bottom` in the second (0..=16; 0
        /// leaves its tiles unconfigured, and they must not be used).
        fn new(top: usize, bottom: usize) -> Self {
            let mut c =
                TileConfig { palette: 1, start_row: 0, reserved: [0; 14], colsb: [0; 16], rows: [0; 16] };
            for (t, r) in
                [(0, top), (1, top), (4, top), (2, bottom), (3, bottom), (5, bottom), (6, 16), (7, 16)]
            {
                c.rows[t] = r as u8;
                c.colsb[t] = if r > 0 { 64 } else { 0 };
            }
            c
        }
    }

    /// AMX: `mr <= AMX_ROWS` rows x 64 columns, one 32-column half at a time: per 64 inputs one or
    /// two activation tiles, two weight tiles and two or four `tdpbusd`. `depth` must be a
    /// multiple of 64.
    // SAFETY: unsafe because it dereferences raw pointers and uses AMX: `mr` rows of `depth` bytes
    // at `a` (stride `a_stride`), a panel of depth x NR bytes, a tile of mr x NR i32, and a CPU and
    // OS with AMX enabled for this process (`amx_usable`).
    pub unsafe fn tile_amx(
        a: *const u8,
        a_stride: usize,
        mr: usize,
        panel: *const i8,
        depth: usize,
        tile: *mut i32,
    ) {
        let (top, bottom) = (mr.min(16), mr.saturating_sub(16));
        let config = TileConfig::new(top, bottom);
        // SAFETY: the configuration is a valid palette-1 layout (16 rows at most, 64 bytes a row);
        // the contract above covers the operands of `amx_half`; `tilerelease` returns the tiles to
        // their initial state so that nothing of this block outlives the call.
        unsafe {
            std::arch::asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly));
            for half in 0..2 {
                let (b, out) = (panel.add(half * 32 * 4), tile.add(half * 32));
                if bottom > 0 {
                    amx_half::<true>(a, a_stride, b, depth, out);
                } else {
                    amx_half::<false>(a, a_stride, b, depth, out);
                }
            }
            std::arch::asm!("tilerelease", options(nostack, nomem));
        }
    }

    /// One 32-column half: `b` points at its first column in the panel (rows of NR x 4 bytes),
    /// `out` at its first column in the tile (rows of NR i32). Tiles configured by `tile_amx`.
    // SAFETY: unsafe for the reasons of `tile_amx`, whose contract this is.
    #[inline(always)]
    unsafe fn amx_half<const BOTH: bool>(
        a: *const u8,
        a_stride: usize,
        b: *const i8,
        depth: usize,
        out: *mut i32,
    ) {
        let b_stride = NR * 4;
        // SAFETY: (whole body) every load reads 16 (or `top`/`bottom`) rows of 64 bytes inside
        // the operands `tile_amx`'s caller guarantees; every store writes rows of 16 i32 inside
        // the tile.
        unsafe {
            std::arch::asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
            if BOTH {
                std::arch::asm!("tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
            }
            for g in (0..depth / 4).step_by(16) {
                std::arch::asm!(
                    "tileloadd tmm6, [{b} + {bs}*1]",
                    "tileloadd tmm7, [{b} + {bs}*1 + 64]",
                    "tileloadd tmm4, [{a} + {as}*1]",
                    "tdpbusd tmm0, tmm4, tmm6",
                    "tdpbusd tmm1, tmm4, tmm7",
                    a = in(reg) a.add(g * 4),
                    b = in(reg) b.add(g * b_stride),
                    as = in(reg) a_stride,
                    bs = in(reg) b_stride,
                    options(nostack, readonly),
                );
                if BOTH {
                    std::arch::asm!(
                        "tileloadd tmm5, [{a} + {as}*1]",
                        "tdpbusd tmm2, tmm5, tmm6",
                        "tdpbusd tmm3, tmm5, tmm7",
                        a = in(reg) a.add(16 * a_stride + g * 4),
                        as = in(reg) a_stride,
                        options(nostack, readonly),
                    );
                }
            }
            let os = NR * 4;
            std::arch::asm!(
                "tilestored [{o} + {os}*1], tmm0",
                "tilestored [{o} + {os}*1 + 64], tmm1",
                o = in(reg) out,
                os = in(reg) os,
                options(nostack),
            );
            if BOTH {
                std::arch::asm!(
                    "tilestored [{o} + {os}*1], tmm2",
                    "tilestored [{o} + {os}*1 + 64], tmm3",
                    o = in(reg) out.add(16 * NR),
                    os = in(reg) os,
                    options(nostack),
                );
            }
        }
    }
}

/// `tile[i * NR + c] = sum_k a[i * a_stride + k] * w[k][c]` for `i < mr <= isa.block_rows()`,
/// `c < NR`, with `w` the packed `panel` of `depth` inputs, on `isa` (which the CPU must have).
/// AMX needs a depth that is a multiple of 64; other depths run its AVX-512 VNNI fallback.
pub fn kernel(isa: Isa, a: &[u8], a_stride: usize, mr: usize, panel: &[i8], depth: usize, tile: &mut [i32]) {
    assert!(
        (1..=isa.block_rows()).contains(&mr) && depth.is_multiple_of(4),
        "tile of {mr} rows, depth {depth}"
    );
    assert!(a.len() >= (mr - 1) * a_stride + depth && panel.len() >= depth * NR, "operands too short");
    assert!(tile.len() >= mr * NR, "a tile of {mr} x {NR} i32");
    assert!(isa.available(), "{isa:?} on a CPU without it");
    if isa == Isa::Amx && !depth.is_multiple_of(64) {
        for (i, tile) in tile[..mr * NR].chunks_mut(MR * NR).enumerate() {
            kernel(Isa::Avx512Vnni, &a[i * MR * a_stride..], a_stride, tile.len() / NR, panel, depth, tile);
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let (a, panel, out) = (a.as_ptr(), panel.as_ptr(), tile.as_mut_ptr());
        // SAFETY: the asserts above check the operand sizes and that the CPU (and for AMX, the
        // OS) has the features each kernel is compiled for.
        unsafe {
            match isa {
                Isa::Amx => return x86::tile_amx(a, a_stride, mr, panel, depth, out),
                Isa::Avx512Vnni => return x86::tile_avx512vnni(a, a_stride, mr, panel, depth, out),
                Isa::AvxVnni => return x86::tile_avxvnni(a, a_stride, mr, panel, depth, out),
                Isa::Avx2 => return x86::tile_avx2(a, a_stride, mr, panel, depth, out),
                Isa::Scalar => {}
            }
        }
    }
    tile_scalar(a, a_stride, mr, panel, depth, tile)
}

// ---------------------------------------------------------------------------------------------
// The dense layer
// ---------------------------------------------------------------------------------------------

/// What the epilogue adds after the dequantised product and bias.
#[derive(Clone, Copy)]
pub enum Epilogue<'a> {
    None,
    Gelu,
    /// `+ residual`, `[rows, d_out]` contiguous.
    Residual(&'a [f32]),
}

thread_local! {
    /// The u8 activation buffer, kept between calls (taken out while in use, so a nested call on
    /// the same thread allocates its own).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `epilogue(x W_m + b_m)` for every layer `m` of `layers` (all with the same `d_in`), with `x`
/// (`rows` contiguous rows) quantised once, on `isa`. Returns one `[rows * d_out_m]` buffer each.
pub fn dense_rows(isa: Isa, layers: &[&PackedLinear], x: &[f32], epilogue: Epilogue) -> Vec<Vec<f32>> {
    let d_in = layers[0].d_in;
    assert!(layers.iter().all(|l| l.d_in == d_in) && x.len().is_multiple_of(d_in), "inputs of {d_in}");
    let a = QuantRows::new(x, d_in, SCRATCH.with(|s| s.take()));
    let rows = a.rows();
    let mut outs: Vec<Vec<f32>> = layers.iter().map(|l| vec![0f32; rows * l.d_out]).collect();
    let ptrs: Vec<Out> = outs.iter_mut().map(|o| Out(o.as_mut_ptr())).collect();
    // Tasks: (row chunk, layer, panel), chunk-major so that consecutive tasks share activations.
    let panels: Vec<(usize, usize)> =
        layers.iter().enumerate().flat_map(|(m, l)| (0..l.d_out.div_ceil(NR)).map(move |p| (m, p))).collect();
    let chunks = rows.div_ceil(ROW_CHUNK);
    (0..chunks * panels.len()).into_par_iter().for_each(|t| {
        let (chunk, (m, p)) = (t / panels.len(), panels[t % panels.len()]);
        let rows = chunk * ROW_CHUNK..rows.min((chunk + 1) * ROW_CHUNK);
        panel_task(isa, &a, layers[m], p, rows, ptrs[m], epilogue);
    });
    SCRATCH.with(|s| *s.borrow_mut() = a.data);
    outs
}

/// Rows `rows` x the columns of panel `p` of `layer`, into `out` (`[rows, d_out]`); the epilogue
/// compiled for AVX-512 or AVX2 where the kernel is (the same code: the same results).
fn panel_task(
    isa: Isa,
    a: &QuantRows,
    layer: &PackedLinear,
    p: usize,
    rows: std::ops::Range<usize>,
    out: Out,
    epilogue: Epilogue,
) {
    #[cfg(target_arch = "x86_64")]
    {
        // `panel_rows` compiled for `$features`.
        macro_rules! compiled_for {
            ($features:literal) => {{
                // SAFETY: unsafe only because it is compiled for `$features`; the callers below
                // check that the CPU has them.
                #[target_feature(enable = $features)]
                unsafe fn run(
                    isa: Isa,
                    a: &QuantRows,
                    layer: &PackedLinear,
                    p: usize,
                    rows: std::ops::Range<usize>,
                    out: Out,
                    epilogue: Epilogue,
                ) {
                    panel_rows(isa, a, layer, p, rows, out, epilogue)
                }
                run
            }};
        }
        if isa >= Isa::Avx512Vnni && isa.available() {
            // SAFETY: the CPU has AVX-512 F and BW, AVX2 and FMA (checked on the line above).
            let run = compiled_for!("avx512f,avx512bw,avx2,fma");
            return unsafe { run(isa, a, layer, p, rows, out, epilogue) };
        }
        if isa >= Isa::Avx2 && isa.available() {
            // SAFETY: the CPU has AVX2 and FMA (checked on the line above).
            let run = compiled_for!("avx2,fma");
            return unsafe { run(isa, a, layer, p, rows, out, epilogue) };
        }
    }
    panel_rows(isa, a, layer, p, rows, out, epilogue)
}

#[inline(always)]
fn panel_rows(
    isa: Isa,
    a: &QuantRows,
    layer: &PackedLinear,
    p: usize,
    rows: std::ops::Range<usize>,
    out: Out,
    epilogue: Epilogue,
) {
    let c0 = p * NR;
    let width = NR.min(layer.d_out - c0);
    let panel = layer.panel(p);
    let (scale, col_sum) = (&layer.scale[c0..c0 + width], &layer.col_sum[c0..c0 + width]);
    let bias = layer.bias.as_ref().map(|b| &b[c0..c0 + width]);
    let mut tile = [0i32; AMX_ROWS * NR];
    let mut r = rows.start;
    while r < rows.end {
        let mr = isa.block_rows().min(rows.end - r);
        kernel(isa, &a.data[r * a.depth..], a.depth, mr, panel, a.depth, &mut tile);
        for i in 0..mr {
            let row = r + i;
            // SAFETY: row `row`, columns c0..c0+width of the rows x d_out output: this task's own
            // block, inside the buffer (`dense_rows` sized it).
            let y = unsafe { std::slice::from_raw_parts_mut(out.at(row * layer.d_out + c0), width) };
            let residual = match epilogue {
                Epilogue::Residual(res) => Some(&res[row * layer.d_out + c0..][..width]),
                _ => None,
            };
            let acc = &tile[i * NR..i * NR + width];
            dequantize(acc, a.scale[row], a.zero[row], scale, col_sum, bias, residual, y);
            if let Epilogue::Gelu = epilogue {
                fast::gelu_in_place(y)
            }
        }
        r += mr;
    }
}

/// `y = s s_n (acc - z colsum_n) + b_n (+ residual)`, computed in a local row and then copied: the
/// compiler cannot tell that the output (made from a raw pointer) aliases none of the inputs, so
/// written in place the loop ran scalar.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dequantize(
    acc: &[i32],
    s: f32,
    z: i32,
    scale: &[f32],
    col_sum: &[i32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    let n = y.len();
    let mut row = [0f32; NR];
    // Whole vectors of 16 (the loop over `0..n` kept a scalar tail of at least half the row).
    let one = |i: usize| (acc[i] - z * col_sum[i]) as f32 * (s * scale[i]);
    for (c, v) in row[..n].chunks_exact_mut(16).enumerate() {
        let v: &mut [f32; 16] = v.try_into().expect("16");
        let (acc, scale, col_sum): (&[i32; 16], &[f32; 16], &[i32; 16]) = (
            acc[c * 16..][..16].try_into().expect("16"),
            scale[c * 16..][..16].try_into().expect("16"),
            col_sum[c * 16..][..16].try_into().expect("16"),
        );
        for i in 0..16 {
            v[i] = (acc[i] - z * col_sum[i]) as f32 * (s * scale[i]);
        }
    }
    for (i, v) in row.iter_mut().enumerate().take(n).skip(n / 16 * 16) {
        *v = one(i);
    }
    if let Some(b) = bias {
        row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
    }
    if let Some(res) = residual {
        row.iter_mut().zip(res).for_each(|(v, r)| *v += r);
    }
    match <&mut [f32; NR]>::try_from(&mut *y) {
        Ok(y) => *y = row,
        Err(_) => y.copy_from_slice(&row[..n]),
    }
}

/// `x W + b` with int8 weights and activations over the last dimension of `x`, then GELU when
/// `gelu`, then `+ residual` when given (same shape as the output).
pub fn dense<B: Backend, const D: usize>(
    layer: &PackedLinear,
    x: Tensor<B, D>,
    gelu: bool,
    residual: Option<Tensor<B, D>>,
) -> Tensor<B, D> {
    let dims = x.dims();
    let residual = residual.map(|r| fast::to_flex(r).to_contiguous());
    let rows: usize = dims[..D - 1].iter().product();
    let epilogue = match (&residual, gelu) {
        (Some(r), false) => {
            Epilogue::Residual(&r.storage::<f32>()[r.layout().start_offset()..][..rows * layer.d_out])
        }
        (None, true) => Epilogue::Gelu,
        (None, false) => Epilogue::None,
        (Some(_), true) => unreachable!("GELU and a residual are never fused together"),
    };
    let [out] = dense_flex(&[layer], x, epilogue).try_into().expect("one layer");
    out
}

/// [`dense`] for several layers on one input, quantised once (attention's q, k and v).
pub fn dense_many<B: Backend, const D: usize>(
    layers: &[&PackedLinear],
    x: Tensor<B, D>,
) -> Vec<Tensor<B, D>> {
    dense_flex(layers, x, Epilogue::None)
}

fn dense_flex<B: Backend, const D: usize>(
    layers: &[&PackedLinear],
    x: Tensor<B, D>,
    epilogue: Epilogue,
) -> Vec<Tensor<B, D>> {
    let dims = x.dims();
    let x = fast::to_flex(x).to_contiguous();
    let xs: &[f32] = &x.storage::<f32>()[x.layout().start_offset()..][..dims.iter().product::<usize>()];
    dense_rows(isa(), layers, xs, epilogue)
        .into_iter()
        .zip(layers)
        .map(|(out, l)| {
            let mut out_dims = dims;
            out_dims[D - 1] = l.d_out;
            let t = FlexTensor::from_data(TensorData::new(out, out_dims.to_vec()));
            fast::from_flex::<B, D>(t)
        })
        .collect()
}
