//! Fused f32 kernels for the Flex CPU backend, and the one seam that decides where they (and
//! rayon splits and cached projections) apply (docs/model.md, "The fused-kernel seam").
//!
//! The generic layer code (deberta.rs) is the reference and the only path on other backends. On
//! `Flex` with f32 tensors, pieces of it run here instead, because burn's op-by-op execution costs
//! more than the arithmetic there (docs/benchmarks-history.md, "What each lever gained"): Flex
//! runs elementwise ops on one thread, without fusion, and broadcasts a Linear's weight into a
//! per-sequence batched matmul.
//!
//! - [`dense`] (inference): `act(x W + b)` as column blocks of one GEMM on all cores, the bias
//!   preloaded into the output and the activation applied to each block while it is in cache.
//! - [`attention`] (inference and training): the whole disentangled attention of one (sequence,
//!   head) per task: `Q.K^T`, the c2p and p2c windows read in place (no skew copies, no
//!   transposing matmul), scale, mask, softmax, dropout and `P.V` written straight into the
//!   merged-heads layout. Under `Autodiff<Flex>` it keeps the softmax and registers its own
//!   backward as one graph node (`fast_grad.rs`).
//! - [`layer_norm`] (training): burn's own LayerNorm is already fused on `Flex`, but decomposed
//!   into nine tracked ops under autodiff; this is one node with its own backward.
//!
//! All are selected at run time by type (`B == Flex` or `Autodiff<Flex>`), so model code stays
//! generic. They are tested against the generic path (tests/fast.rs for values, tests/fast_grad.rs
//! for every parameter's gradient) and, as the path Flex takes, by the HF parity fixtures and the
//! RTD gradient and trajectory tests.

use crate::config::Activation;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::{DType, TensorPrimitive};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;
use std::any::{Any, TypeId};
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Switches the kernels off (and on) process-wide: for benchmarks of what they gain, and for the
/// test that compares them with the generic path.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

// What each backend gets is decided here and nowhere else: the fused inference kernels, rayon
// splits of the work and the relative-projection cache are for plain `Flex` only; training on
// `Autodiff<Flex>` (a different type) takes the fused attention and LayerNorm with their own
// backward and nothing else; GPU backends queue work from one thread and cannot tell buffers
// apart through burn's API, so they take none of it.

pub fn is_flex<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<Flex>()
}

/// Whether the kernels apply to tensors of backend `B` holding `dtype`.
pub fn applies<B: Backend>(dtype: DType) -> bool {
    is_flex::<B>() && dtype == DType::F32 && ENABLED.load(Ordering::Relaxed)
}

/// Whether attention runs as one fused kernel on tensors of backend `B` holding `dtype`: on
/// `Flex` (inference, [`attention`]) and on `Autodiff<Flex>` (training: the same forward with
/// its own backward, `fast_grad`).
pub fn fuses_attention<B: Backend>(dtype: DType) -> bool {
    (is_flex::<B>() || trains::<B>()) && dtype == DType::F32 && ENABLED.load(Ordering::Relaxed)
}

/// Whether LayerNorm runs as one fused op with its own backward: on `Autodiff<Flex>`, where burn
/// would decompose it into nine tracked ops (plain `Flex` has its own fused LayerNorm).
pub fn fuses_layer_norm<B: Backend>(dtype: DType) -> bool {
    trains::<B>() && dtype == DType::F32 && ENABLED.load(Ordering::Relaxed)
}

/// [`crate::deberta::LayerNorm`] on `Autodiff<Flex>` (see [`fuses_layer_norm`]).
pub fn layer_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
) -> Tensor<B, D> {
    crate::fast_grad::layer_norm(x, gamma, beta, epsilon)
}

/// Whether `B` is the CPU training backend, `Autodiff<Flex>`.
fn trains<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<burn::backend::Autodiff<Flex>>()
}

/// Whether the model may split a batch or a sequence over rayon workers: on Flex, whose
/// elementwise ops run on one thread, the halves keep the other cores busy outside matmuls.
pub fn splits_work<B: Backend>() -> bool {
    is_flex::<B>() && rayon::current_num_threads() >= 2
}

/// Whether [`same_buffer`] can recognise unchanged tensors on `B`, so that results derived from
/// weights can be cached and reused (no other backend can tell, and comparing the values on
/// every call would cost what the cache saves).
pub fn caches_by_identity<B: Backend>() -> bool {
    is_flex::<B>()
}

/// `t`'s Flex tensor (callers check [`applies`] first).
pub fn to_flex<B: Backend, const D: usize>(t: Tensor<B, D>) -> FlexTensor {
    let primitive: Box<dyn Any> = Box::new(t.into_primitive().tensor());
    *primitive.downcast::<FlexTensor>().expect("fast kernels are only called on Flex")
}

/// A Flex tensor as a tensor of `B` (which must be `Flex`).
pub fn from_flex<B: Backend, const D: usize>(t: FlexTensor) -> Tensor<B, D> {
    let primitive: Box<dyn Any> = Box::new(t);
    let primitive = *primitive.downcast::<B::FloatTensorPrimitive>().expect("B is Flex");
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// Whether `a` and `b` are views of one Flex buffer with one layout (so certainly equal): the
/// relative-projection cache's key. A cached clone keeps the buffer shared, so it cannot be
/// updated in place or freed and reused meanwhile. `false` on other backends.
pub fn same_buffer<B: Backend, const D: usize>(a: &Tensor<B, D>, b: &Tensor<B, D>) -> bool {
    if !is_flex::<B>() {
        return false;
    }
    same_flex(&to_flex(a.clone()), &to_flex(b.clone()))
}

/// [`same_buffer`] for Flex tensors.
pub fn same_flex(a: &FlexTensor, b: &FlexTensor) -> bool {
    std::sync::Arc::ptr_eq(&a.data_arc(), &b.data_arc()) && a.layout() == b.layout()
}

/// A tensor's f32 elements with its 2-D view: (data from the view's start, row stride, col stride).
struct View<'a> {
    data: &'a [f32],
    rs: isize,
    cs: isize,
}

fn view2(t: &FlexTensor) -> View<'_> {
    let layout = t.layout();
    let strides = layout.strides();
    let n = strides.len();
    View { data: &t.storage::<f32>()[layout.start_offset()..], rs: strides[n - 2], cs: strides[n - 1] }
}

/// A pointer shared by tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct Out(pub(crate) *mut f32);
// SAFETY: every task that holds an `Out` writes only its own disjoint region of the buffer
// (a column block of a Linear output, or one (sequence, head) slice of attention), and the
// buffer outlives the parallel loop that shares the pointer.
unsafe impl Send for Out {}
// SAFETY: as for `Send`: no two tasks touch the same element, so shared access cannot race.
unsafe impl Sync for Out {}

impl Out {
    /// Through a method, so closures capture the (Sync) wrapper rather than the raw field.
    pub(crate) fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: callers pass offsets inside the buffer `Out` was made from (checked by its shape).
        unsafe { self.0.add(offset) }
    }
}

/// `dst[m, n] (+)= lhs[m, k] . rhs[k, n]` on the calling thread, all operands strided.
///
/// # Safety
/// Every pointer with its strides must address valid `m x k`, `k x n` and `m x n` f32 matrices,
/// and no other thread may write the `dst` elements meanwhile.
// SAFETY: unsafe because it dereferences raw pointers; the contract above is every caller's to
// keep (each call site states why it holds).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: isize,
    accumulate: bool,
    lhs: *const f32,
    (lhs_rs, lhs_cs): (isize, isize),
    rhs: *const f32,
    (rhs_rs, rhs_cs): (isize, isize),
) {
    // SAFETY: the caller guarantees the operands (this function's contract).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs,
            accumulate,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `erf` as a branch-free rational function on `[-4, 4]` (Eigen's `generic_fast_erf_float`, the
/// approximation TensorFlow and XLA use), so that the GELU loop vectorises; libm's `erff`
/// branches per element and was 8% of a base forward. Within 1e-6 of libm's `erff` (test below);
/// PyTorch's own vectorised CPU erf is a 1.5e-7 approximation too.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the published coefficients, as published
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.72614225801306e-10f32;
    for a in [
        2.77068142495902e-08,
        -2.10102402082508e-06,
        -5.69250639462346e-05,
        -7.34990630326855e-04,
        -2.95459980854025e-03,
        -1.60960333262415e-02,
    ] {
        p = p.mul_add(x2, a);
    }
    let mut q = -1.45660718464996e-05f32;
    for b in [-2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03, -1.42647390514189e-02] {
        q = q.mul_add(x2, b);
    }
    x * p / q
}

/// Defines a function whose body is compiled twice: for AVX2+FMA, taken where the CPU has them
/// (detected at run time), and for the crate's baseline x86-64 otherwise. The same code either
/// way, so the same results; the wider build lets its loops run 8 or 16 lanes wide.
#[macro_export]
macro_rules! avx2_fma_dispatch {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn all($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: unsafe only because it is compiled for AVX2+FMA; called below only when
                // the CPU has them.
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    all($($arg),*)
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA, checked on the line above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            all($($arg),*)
        }
    };
}
pub use avx2_fma_dispatch;

avx2_fma_dispatch! {
    /// HF's exact GELU, `x/2 (1 + erf(x/sqrt 2))`, on a slice, 8 lanes wide where the CPU has
    /// AVX2+FMA.
    pub(crate) fn gelu_in_place(xs: &mut [f32]) {
        xs.iter_mut().for_each(|x| *x = 0.5 * *x * (1.0 + erf(*x * std::f32::consts::FRAC_1_SQRT_2)));
    }
}

/// `x W + b` over the last dimension, with GELU applied in the same pass when `gelu_act` (the only
/// activation fused: see [`fuses`]; the caller applies any other). Callers check [`applies`]
/// first.
pub fn dense<B: Backend, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>, gelu_act: bool) -> Tensor<B, D> {
    let dims = x.dims();
    let d_in = dims[D - 1];
    let rows: usize = dims[..D - 1].iter().product();
    let x = to_flex(x.reshape([rows, d_in]));
    let w = to_flex(layer.weight.val());
    let bias = layer.bias.as_ref().map(|b| to_flex(b.val()).to_contiguous());
    let d_out = w.layout().shape()[1];

    // The output is written once, by the blocks: each preloads its bias columns and accumulates
    // onto them (or overwrites, without a bias), so it is neither zeroed nor filled beforehand.
    let len = rows * d_out;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let dst = Out(out.spare_capacity_mut().as_mut_ptr().cast::<f32>());
    let bias: Option<&[f32]> = bias.as_ref().map(|b| b.storage());
    let (xv, wv) = (view2(&x), view2(&w));
    // Column blocks, one per worker: each packs only its slice of W, and all rows share A's
    // packing order, which suits both a 128-row single sequence and 1024-row batches.
    let blocks = rayon::current_num_threads().clamp(1, d_out.div_ceil(64).max(1));
    let width = d_out.div_ceil(blocks).next_multiple_of(16).min(d_out);
    (0..d_out.div_ceil(width)).into_par_iter().for_each(|blk| {
        let c0 = blk * width;
        let cw = width.min(d_out - c0);
        // SAFETY: block `blk` writes columns c0..c0+cw of the rows x d_out output only (every
        // element of them: the bias, then the product onto it, or the product alone), and reads
        // x (rows x d_in) and W's columns c0..c0+cw, all inside their buffers.
        unsafe {
            let out = dst.at(c0);
            if let Some(bias) = bias {
                for r in 0..rows {
                    std::ptr::copy_nonoverlapping(bias.as_ptr().add(c0), out.add(r * d_out), cw);
                }
            }
            gemm(
                (rows, cw, d_in),
                out,
                d_out as isize,
                bias.is_some(),
                xv.data.as_ptr(),
                (xv.rs, xv.cs),
                wv.data.as_ptr().offset(c0 as isize * wv.cs),
                (wv.rs, wv.cs),
            );
            if gelu_act {
                for r in 0..rows {
                    gelu_in_place(std::slice::from_raw_parts_mut(out.add(r * d_out), cw));
                }
            }
        }
    });
    // SAFETY: the blocks cover all d_out columns of every row, and each wrote all its elements.
    unsafe { out.set_len(len) };
    let out = FlexTensor::from_data(TensorData::new(out, [rows, d_out]));
    let mut out_dims = dims;
    out_dims[D - 1] = d_out;
    from_flex::<B, 2>(out).reshape(out_dims)
}

/// Whether [`dense`] can fuse `act`.
pub fn fuses(act: Activation) -> bool {
    act == Activation::Gelu
}

/// Disentangled attention for all heads: `q`, `k`, `v` are `[B, L, heads*d]` projections, `kr`
/// (`Kr`, descending distance) and `qr` (`Qr`, ascending) the `[1, heads, 2L-1, d]` relative
/// projections of the terms in use, `tokens` the `[B, L, 1]` 0/1 mask (`padded`: whether any is 0)
/// and `dropout` the `[B, heads, L, L]` 0/1 keep mask of the probabilities with `1 / p_keep`
/// (training only; drawn by the caller exactly as `Dropout` draws it). Returns the
/// `[B, L, heads*d]` context, exactly the generic path's
/// `dropout(softmax(mask_fill((QK^T + c2p + p2c) / scale))) V`.
///
/// On `Flex` this is the inference kernel; on `Autodiff<Flex>` the same kernel records the
/// probabilities and its own backward (`fast_grad`) runs in place of burn's op-by-op one.
#[allow(clippy::too_many_arguments)]
pub fn attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    kr: Option<Tensor<B, 4>>,
    qr: Option<Tensor<B, 4>>,
    tokens: Tensor<B, 3>,
    padded: bool,
    dropout: Option<(Tensor<B, 4>, f32)>,
    (heads, d): (usize, usize),
    scale: f32,
) -> Tensor<B, 3> {
    // The operands' Flex tensors (on Autodiff<Flex>, the values under the graph's tensors, which
    // the training kernel also needs for their graph nodes).
    fn flex<B: Backend, const D: usize>(t: Tensor<B, D>) -> FlexTensor {
        if is_flex::<B>() {
            to_flex(t)
        } else {
            crate::fast_grad::value(t)
        }
    }
    let graph = (!is_flex::<B>()).then(|| ([q.clone(), k.clone(), v.clone()], [kr.clone(), qr.clone()]));
    let inputs = AttentionInputs {
        q: flex(q).to_contiguous(),
        k: flex(k).to_contiguous(),
        v: flex(v).to_contiguous(),
        kr: kr.map(flex),
        qr: qr.map(flex),
        tokens: flex(tokens).to_contiguous(),
        padded,
        dropout: dropout.map(|(m, inv_keep)| (flex(m).to_contiguous(), inv_keep)),
        heads,
        d,
        scale,
    };
    match graph {
        Some((qkv, rel)) => crate::fast_grad::attention(inputs, qkv, rel),
        None => from_flex(attention_forward(&inputs, None)),
    }
}

/// The operands of one fused attention, as Flex tensors: `q`, `k`, `v` and `tokens` contiguous,
/// `kr`/`qr` any `[1, heads, 2L-1, d]` view, `dropout` a contiguous `[B, heads, L, L]` 0/1 mask
/// with `1 / keep`.
#[derive(Debug, Clone)]
pub(crate) struct AttentionInputs {
    pub(crate) q: FlexTensor,
    pub(crate) k: FlexTensor,
    pub(crate) v: FlexTensor,
    pub(crate) kr: Option<FlexTensor>,
    pub(crate) qr: Option<FlexTensor>,
    pub(crate) tokens: FlexTensor,
    pub(crate) padded: bool,
    pub(crate) dropout: Option<(FlexTensor, f32)>,
    pub(crate) heads: usize,
    pub(crate) d: usize,
    pub(crate) scale: f32,
}

/// Kr / Qr as they come (a `[1, heads, 2L-1, d]` view of the projection): per head, the data from
/// the view's start, the head stride and the (distance, feature) strides.
pub(crate) type RelHeads<'a> = (&'a [f32], isize, (isize, isize));

impl AttentionInputs {
    /// `(B, L, heads*d)`
    pub(crate) fn dims(&self) -> (usize, usize, usize) {
        let [b, l, hd] = self.q.layout().shape().dims();
        (b, l, hd)
    }

    pub(crate) fn rel(t: &Option<FlexTensor>) -> Option<RelHeads<'_>> {
        t.as_ref().map(|t| {
            let (layout, data) = (t.layout(), t.storage::<f32>());
            let st = layout.strides();
            (&data[layout.start_offset()..], st[1], (st[2], st[3]))
        })
    }
}

/// The forward kernel: one (sequence, head) per task. With `probs`, also writes each task's
/// softmax output (before dropout) to its `[L, L]` block of a `[B, heads, L, L]` buffer, which the
/// backward reads.
pub(crate) fn attention_forward(inputs: &AttentionInputs, probs: Option<Out>) -> FlexTensor {
    let AttentionInputs { q, k, v, tokens, padded, heads, d, scale, .. } = inputs;
    let (heads, d, padded, scale) = (*heads, *d, *padded, *scale);
    let (b, l, hd) = inputs.dims();
    let r = 2 * l - 1;
    let (qd, kd, vd): (&[f32], &[f32], &[f32]) = (q.storage(), k.storage(), v.storage());
    let (krd, qrd) = (AttentionInputs::rel(&inputs.kr), AttentionInputs::rel(&inputs.qr));
    let mask: &[f32] = tokens.storage();
    let dropout = inputs.dropout.as_ref().map(|(m, inv_keep)| (m.storage::<f32>(), *inv_keep));

    let mut out = FlexTensor::empty([b, l, hd].into(), DType::F32);
    let dst = Out(out.storage_mut::<f32>().as_mut_ptr());
    let hd_s = hd as isize;
    (0..b * heads).into_par_iter().for_each(|task| {
        with_scratch(l * l + 2 * l * r, |buf| {
            let (s, rest) = buf.split_at_mut(l * l);
            let (c, p) = rest.split_at_mut(l * r);
            let (bi, h) = (task / heads, task % heads);
            // Layout (the pointers and the two gemm blocks below rely on it): q, k, v and the
            // output are contiguous [b, l, heads * d]; task (bi, h) reads and writes head h of
            // sequence bi only (offset bi*l*hd + h*d, row stride hd), and Kr/Qr are read at head
            // h of their [1, heads, 2L-1, d] layout, within bounds by construction.
            // SAFETY: the offset of head h of sequence bi is inside q, k and v (layout above).
            let at = |data: &[f32]| unsafe { data.as_ptr().add(bi * l * hd + h * d) };
            let (qh, kh, vh) = (at(qd), at(kd), at(vd));
            // SAFETY: reads head h of sequence bi and writes this task's own scratch (see above).
            unsafe {
                // S = Q K^T; C = Q Kr^T (row i, column t: distance L-1-t); P = K Qr^T (row j,
                // column t: distance t-(L-1)).
                gemm((l, l, d), s.as_mut_ptr(), l as isize, false, qh, (hd_s, 1), kh, (1, hd_s));
                for (rel, out, lhs) in [(krd, &mut *c, qh), (qrd, &mut *p, kh)] {
                    if let Some((rel, hs, (ts, fs))) = rel {
                        let rhs = rel_head(rel, hs, h);
                        gemm((l, r, d), out.as_mut_ptr(), r as isize, false, lhs, (hd_s, 1), rhs, (fs, ts));
                    }
                }
            }
            let m = &mask[bi * l..(bi + 1) * l];
            // (i, j) has distance i-j: C column L-1-i+j, P[j] column L-1+i-j. C's window is
            // contiguous along a row of S; P's runs down a column, so it is added in square tiles
            // (both tiles stay in L1 instead of one cache line per element). The additions keep
            // the generic path's order, (S + C) + P.
            if krd.is_some() {
                for (i, row) in s.chunks_exact_mut(l).enumerate() {
                    let window = &c[i * r + (l - 1 - i)..][..l];
                    row.iter_mut().zip(window).for_each(|(x, y)| *x += y);
                }
            }
            if qrd.is_some() {
                const TILE: usize = 16;
                for j0 in (0..l).step_by(TILE) {
                    for i0 in (0..l).step_by(TILE) {
                        for j in j0..l.min(j0 + TILE) {
                            let column = &p[j * r + (l - 1 - j)..];
                            for i in i0..l.min(i0 + TILE) {
                                s[i * l + j] += column[i];
                            }
                        }
                    }
                }
            }
            for (i, row) in s.chunks_exact_mut(l).enumerate() {
                softmax_row(row, scale, padded.then_some((m[i], m)));
            }
            if let Some(probs) = probs {
                // SAFETY: this task's own [L, L] block of the [B, heads, L, L] buffer.
                unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), probs.at(task * l * l), l * l) };
            }
            if let Some((keep, inv_keep)) = dropout {
                // `Dropout::forward`'s arithmetic: (x * mask) * (1 / keep).
                let keep = &keep[task * l * l..][..l * l];
                s.iter_mut().zip(keep).for_each(|(x, &m)| *x = (*x * m) * inv_keep);
            }
            // SAFETY: writes head h of sequence bi of the output, no other task's slice (see above).
            unsafe {
                let o = dst.at(bi * l * hd + h * d);
                gemm((l, d, l), o, hd_s, false, s.as_ptr(), (l as isize, 1), vh, (hd_s, 1));
            }
        })
    });
    out
}

thread_local! {
    /// A worker's scratch for [`with_scratch`], kept between calls.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer of at least `len` elements, whose contents are left
/// from earlier calls: `f` must write what it reads. Kept between calls because zeroing fresh
/// buffers for every split of a parallel loop cost more than some of the loops' work.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    // Taken out while in use, so that a nested call on the same thread gets a buffer of its own.
    let mut buf = SCRATCH.with(|s| s.take());
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let out = f(&mut buf[..len]);
    SCRATCH.with(|s| s.replace(buf));
    out
}

/// Head `h` of a relative projection (see [`RelHeads`]).
pub(crate) fn rel_head(data: &[f32], head_stride: isize, h: usize) -> *const f32 {
    // SAFETY: head h of a [1, heads, 2L-1, d] view starts inside its storage (h < heads).
    unsafe { data.as_ptr().offset(h as isize * head_stride) }
}

/// `e^x` for `x <= 88`, branch-free so that loops over it vectorise: `x = n ln2 + r` with
/// `|r| <= ln2 / 2`, Cephes' degree-7 polynomial for `e^r` (`expf` in the Cephes library) and `2^n`
/// put into the exponent bits. Within 2 ulp of libm's `expf` (test below). Inputs below -87.3,
/// where `e^x` leaves the normal range, give `e^-87.3` (1.2e-38) instead of 0: a softmax term that
/// small changes no sum of terms of order 1, which every row has (its maximum gives 1).
#[inline(always)]
#[allow(clippy::excessive_precision)] // the published coefficients, as published
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693359375;
    const LN2_LO: f32 = -2.12194440e-4;
    let x = x.clamp(-87.3, 88.0);
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let mut p = 1.9875691500e-4f32;
    for a in [1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1] {
        p = p.mul_add(r, a);
    }
    let e_r = (p * r).mul_add(r, r) + 1.0;
    e_r * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

avx2_fma_dispatch! {
    /// One attention row in place: `softmax(mask_fill(row / scale))`, where `mask` is the query's
    /// token flag and the keys' flags (a position is blocked unless both are 1). The max and the
    /// sum run in 16 lanes and `exp` is [`exp`], so that the whole row vectorises (libm's `expf`
    /// alone was 5% of a 1 x 512 forward).
    fn softmax_row(row: &mut [f32], scale: f32, mask: Option<(f32, &[f32])>) {
        row.iter_mut().for_each(|x| *x /= scale);
        if let Some((query, keys)) = mask {
            for (x, &key) in row.iter_mut().zip(keys) {
                if query != 1.0 || key != 1.0 {
                    *x = f32::MIN;
                }
            }
        }
        let max = fold_lanes(row, f32::NEG_INFINITY, f32::max);
        row.iter_mut().for_each(|x| *x = exp(*x - max));
        let sum = fold_lanes(row, 0.0, |a, b| a + b);
        row.iter_mut().for_each(|x| *x /= sum);
    }
}

/// `xs` folded with `op` in 16 independent lanes, then the lanes and the tail: a reduction the
/// compiler can vectorise, which it may not do with a sequential float fold.
#[inline(always)]
fn fold_lanes(xs: &[f32], init: f32, op: impl Fn(f32, f32) -> f32 + Copy) -> f32 {
    const LANES: usize = 16;
    let mut lanes = [init; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        lanes.iter_mut().zip(chunk).for_each(|(a, &x)| *a = op(*a, x));
    }
    op(lanes.into_iter().fold(init, op), chunks.remainder().iter().copied().fold(init, op))
}

#[cfg(test)]
mod tests {
    #[test]
    fn erf_matches_libm() {
        let worst = (-6000..=6000)
            .map(|i| i as f32 * 1e-3)
            .map(|x| (super::erf(x) - burn_flex::ops::unary::erf_f32(x)).abs())
            .fold(0.0, f32::max);
        assert!(worst <= 1e-6, "max |erf - libm erff| = {worst}");
    }

    #[test]
    fn exp_matches_libm() {
        // Relative error in ulp of the result, over the normal range and a little below it.
        let ulp = |y: f32| f32::from_bits(y.to_bits() + 1) - y;
        let worst = (-873_000..=880_000)
            .map(|i| i as f32 * 1e-4)
            .map(|x| (super::exp(x) - x.exp()).abs() / ulp(x.exp()))
            .fold(0.0, f32::max);
        assert!(worst <= 2.0, "max |exp - libm expf| = {worst} ulp");
        assert_eq!(super::exp(f32::MIN), (-87.3f32).exp(), "the clamp");
        assert_eq!(super::exp(0.0), 1.0);
    }
}
