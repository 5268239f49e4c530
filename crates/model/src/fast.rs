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
//!   head) per task: `Q.K^T` and the c2p and p2c products over only the distance windows each
//!   row uses ([`Products`]; no skew copies), scale, mask, softmax, dropout and `P.V` written
//!   straight into the merged-heads layout. Under `Autodiff<Flex>` it keeps the softmax and
//!   registers its own backward as one graph node (`fast_grad.rs`).
//! - [`layer_norm`] (training): burn's own LayerNorm is already fused on `Flex`, but decomposed
//!   into nine tracked ops under autodiff; this is one node with its own backward.
//! - The exact GELU and the Linear layer (training, `fast_grad::gelu` and `fast_grad::linear`):
//!   one node each; GELU in parallel chunks with the vectorised `erf` (burn: libm per element on
//!   one thread, forward and backward), the Linear as [`dense`]'s GEMM forward and three products
//!   from the saved operands' strides backward (burn: transposed copies, and the bias gradient
//!   summed on one thread).
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

/// Runs `f` (an inference forward) on a worker thread of the global rayon pool when `B` is `Flex`,
/// so that the kernels' parallel loops start on a worker: called from outside the pool, each loop
/// hands its work over and puts the caller to sleep until it is done (two wake-ups per loop, a
/// few hundred loops per forward), and between loops the spinning workers compete with the
/// caller's serial work for the cores. Measured on a 2-core host: 3-6% on f32 inference, no
/// change in int8. Not for training steps, which got slower on a worker (burn's autodiff).
pub fn on_workers<B: Backend, R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if is_flex::<B>() && rayon::current_thread_index().is_none() {
        rayon::scope(|_| f())
    } else {
        f()
    }
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

/// Whether LayerNorm and the exact GELU run as fused ops with their own backward: on
/// `Autodiff<Flex>`, where burn would decompose LayerNorm into nine tracked ops (plain `Flex` has
/// its own fused LayerNorm) and run GELU's `erf` through libm one element at a time on one thread,
/// forward and backward.
pub fn fuses_training_ops<B: Backend>(dtype: DType) -> bool {
    trains::<B>() && dtype == DType::F32 && ENABLED.load(Ordering::Relaxed)
}

/// [`crate::deberta::LayerNorm`] on `Autodiff<Flex>` (see [`fuses_training_ops`]).
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
// (a column block of a Linear output or of a Linear's gradient, or one (sequence, head) slice of
// attention), and the buffer outlives the parallel loop that shares the pointer.
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

/// Defines a function whose body is compiled three times: for AVX-512 (F, BW, VL) and for
/// AVX2+FMA, each taken where the CPU has them (detected at run time), and for the crate's
/// baseline x86-64 otherwise. The same code every way, so the same results (no loop here
/// reassociates: lane counts are fixed in the source); the wider builds let its loops run 8 or
/// 16 lanes wide.
#[macro_export]
macro_rules! simd_dispatch {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn all($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: unsafe only because it is compiled for AVX-512; called below only when
                // the CPU has it.
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    all($($arg),*)
                }
                // SAFETY: unsafe only because it is compiled for AVX2+FMA; called below only when
                // the CPU has them.
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    all($($arg),*)
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    if is_x86_feature_detected!("avx512f")
                        && is_x86_feature_detected!("avx512bw")
                        && is_x86_feature_detected!("avx512vl")
                    {
                        // SAFETY: the CPU has AVX-512 F, BW and VL (checked above).
                        return unsafe { avx512($($arg),*) };
                    }
                    // SAFETY: the CPU has AVX2 and FMA, checked above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            all($($arg),*)
        }
    };
}
pub use simd_dispatch;

simd_dispatch! {
    /// HF's exact GELU, `x/2 (1 + erf(x/sqrt 2))`, on a slice, 8 lanes wide where the CPU has
    /// AVX2+FMA.
    pub(crate) fn gelu_in_place(xs: &mut [f32]) {
        xs.iter_mut().for_each(|x| *x = 0.5 * *x * (1.0 + erf(*x * std::f32::consts::FRAC_1_SQRT_2)));
    }
}

simd_dispatch! {
    /// The exact GELU's backward: `dx = dy (Phi(x) + x phi(x))`, with `Phi(x) = (1 + erf(x/sqrt
    /// 2)) / 2` and `phi(x) = e^(-x^2/2) / sqrt(2 pi)`, over `x` and `dy` into `dy`.
    pub(crate) fn gelu_backward_in_place(x: &[f32], dy: &mut [f32]) {
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        for (dy, &x) in dy.iter_mut().zip(x) {
            let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            *dy *= x.mul_add(INV_SQRT_2PI * exp(-0.5 * x * x), cdf);
        }
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
    let out = dense_values(&x, &w, bias.as_ref(), gelu_act);
    let mut out_dims = dims;
    out_dims[D - 1] = out.layout().shape()[1];
    from_flex::<B, 2>(out).reshape(out_dims)
}

/// `0..n` as one block of columns per worker (at least 64 wide, whole vectors of 16): `(start,
/// width)`.
pub(crate) fn column_blocks(n: usize) -> impl ParallelIterator<Item = (usize, usize)> {
    let blocks = rayon::current_num_threads().clamp(1, n.div_ceil(64).max(1));
    let width = n.div_ceil(blocks).next_multiple_of(16).min(n).max(1);
    (0..n.div_ceil(width)).into_par_iter().map(move |b| (b * width, width.min(n - b * width)))
}

/// [`dense`] on values: `x` `[rows, d_in]` and `w` `[d_in, d_out]` (any strides), `bias`
/// contiguous `[d_out]`; returns the contiguous `[rows, d_out]` output.
pub(crate) fn dense_values(
    x: &FlexTensor,
    w: &FlexTensor,
    bias: Option<&FlexTensor>,
    gelu_act: bool,
) -> FlexTensor {
    let (rows, d_in) = (x.layout().shape()[0], x.layout().shape()[1]);
    let d_out = w.layout().shape()[1];

    // The output is written once, by the blocks: each preloads its bias columns and accumulates
    // onto them (or overwrites, without a bias), so it is neither zeroed nor filled beforehand.
    let len = rows * d_out;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let dst = Out(out.spare_capacity_mut().as_mut_ptr().cast::<f32>());
    let bias: Option<&[f32]> = bias.map(|b| b.storage());
    let (xv, wv) = (view2(x), view2(w));
    // Column blocks, one per worker: each packs only its slice of W, and all rows share A's
    // packing order, which suits both a 128-row single sequence and 1024-row batches.
    column_blocks(d_out).for_each(|(c0, cw)| {
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
    FlexTensor::from_data(TensorData::new(out, [rows, d_out]))
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

    // Kr and Qr with each head's (feature, distance) matrix contiguous: as they come from
    // `rel_layout`, else transposed here once for all sequences.
    let lp = l.next_multiple_of(LANES);
    let rp = r.next_multiple_of(LANES);
    let (krt, qrt) = (RelT::new(krd, heads, d, r), RelT::new(qrd, heads, d, r));
    let mut out = FlexTensor::empty([b, l, hd].into(), DType::F32);
    let dst = Out(out.storage_mut::<f32>().as_mut_ptr());
    let hd_s = hd as isize;
    (0..b * heads).into_par_iter().for_each(|task| {
        with_scratch(l * l + 2 * l * rp + d * lp, |buf| {
            let (s, rest) = buf.split_at_mut(l * l);
            let (c, rest) = rest.split_at_mut(l * rp);
            let (p, kt) = rest.split_at_mut(l * rp);
            let (bi, h) = (task / heads, task % heads);
            // Layout (the slices and the gemm block below rely on it): q, k, v and the output
            // are contiguous [b, l, heads * d]; task (bi, h) reads and writes head h of sequence
            // bi only (offset bi*l*hd + h*d, row stride hd).
            let head = bi * l * hd + h * d..bi * l * hd + (l - 1) * hd + h * d + d;
            let (qh, kh) = (&qd[head.clone()], &kd[head]);
            // kt[f][j] = K[j][f], the padding keys 0 (the scratch holds an earlier task's values).
            transpose(kh, (hd as isize, 1), (l, d), kt, lp);
            (0..d).for_each(|f| kt[f * lp + l..(f + 1) * lp].fill(0.0));
            // S = Q K^T; C = Q Kr^T (row i, column t: distance L-1-t); P = K Qr^T (row j,
            // column t: distance t-(L-1)), the last two only where the rows' windows fall.
            let rows = |m: &[f32], bt: &[f32], bt_rs: usize, out: &mut [f32], out_rs: usize, band: bool| {
                products(Products { a: m, a_rs: hd, bt, bt_rs, depth: d, rows: l, out_rs, band }, out)
            };
            rows(qh, kt, lp, s, l, false);
            if let Some(krt) = &krt {
                rows(qh, krt.head(h), krt.row, c, rp, true);
            }
            if let Some(qrt) = &qrt {
                rows(kh, qrt.head(h), qrt.row, p, rp, true);
            }
            let m = &mask[bi * l..(bi + 1) * l];
            // (i, j) has distance i-j: C column L-1-i+j, P[j] column L-1+i-j. C's window is
            // contiguous along a row of S; P's runs down a column, so it is added in square tiles
            // (both tiles stay in L1 instead of one cache line per element). The additions keep
            // the generic path's order, (S + C) + P.
            if krd.is_some() {
                for (i, row) in s.chunks_exact_mut(l).enumerate() {
                    let window = &c[i * rp + (l - 1 - i)..][..l];
                    row.iter_mut().zip(window).for_each(|(x, y)| *x += y);
                }
            }
            if qrd.is_some() {
                const TILE: usize = 16;
                for j0 in (0..l).step_by(TILE) {
                    for i0 in (0..l).step_by(TILE) {
                        for j in j0..l.min(j0 + TILE) {
                            let column = &p[j * rp + (l - 1 - j)..];
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
                let (o, vh) = (dst.at(bi * l * hd + h * d), vd.as_ptr().add(bi * l * hd + h * d));
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

/// Columns per vector of the score kernels: one AVX-512 register, two AVX2 ones.
const LANES: usize = 16;

/// `Kr` or `Qr` (`[1, heads, 2L-1, d]`) with its heads in the layout that the c2p and p2c products
/// read: per head a `[d, R]` matrix (feature rows, distance columns), rows padded to whole vectors.
/// The values and the view are unchanged (same shape, same entries), so the generic path reads
/// it as before; only the memory order differs. Made where the relative projections are made, so
/// that inference caches it with them; [`attention_forward`] transposes any other layout itself.
pub fn rel_layout<B: Backend>(t: Tensor<B, 4>) -> Tensor<B, 4> {
    let [one, heads, r, d] = t.dims();
    let pad = Tensor::zeros([one, heads, d, r.next_multiple_of(LANES) - r], &t.device());
    Tensor::cat(vec![t.swap_dims(2, 3), pad], 3).swap_dims(2, 3).slice([0..one, 0..heads, 0..r, 0..d])
}

/// `dst[c * dst_rs + r] = src[r * rs + c * cs]` for `r < rows`, `c < cols`: a strided matrix
/// (non-negative strides) transposed into rows of `dst_rs`.
fn transpose(
    src: &[f32],
    (rs, cs): (isize, isize),
    (rows, cols): (usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
) {
    for r in 0..rows {
        for c in 0..cols {
            dst[c * dst_rs + r] = src[(r as isize * rs + c as isize * cs) as usize];
        }
    }
}

/// A relative projection as [`rel_layout`] lays it out: borrowed when it already is, else
/// transposed once per call (for all sequences).
struct RelT<'a> {
    data: std::borrow::Cow<'a, [f32]>,
    head_stride: usize,
    /// Row length: the distance count rounded up to whole vectors, or more.
    row: usize,
}

impl<'a> RelT<'a> {
    fn new(rel: Option<RelHeads<'a>>, heads: usize, d: usize, r: usize) -> Option<Self> {
        let (data, hs, (ts, fs)) = rel?;
        let rp = r.next_multiple_of(LANES);
        if ts == 1
            && hs >= 0
            && fs >= rp as isize
            && (heads - 1) * hs as usize + (d - 1) * fs as usize + rp <= data.len()
        {
            return Some(RelT { data: data.into(), head_stride: hs as usize, row: fs as usize });
        }
        let mut out = vec![0f32; heads * d * rp];
        out.par_chunks_mut(d * rp).enumerate().for_each(|(h, head)| {
            transpose(&data[(h as isize * hs) as usize..], (ts, fs), (r, d), head, rp);
        });
        Some(RelT { data: out.into(), head_stride: d * rp, row: rp })
    }

    fn head(&self, h: usize) -> &[f32] {
        &self.data[h * self.head_stride..]
    }
}

/// `out[i][c] = sum_f a[i][f] bt[f][c]` for `i < rows`: the products of the attention scores,
/// with the second operand transposed (`bt`, feature rows) so that 16 columns are one vector.
/// With `band`, only the columns of row i's window are computed, `L-1-i ..= 2L-2-i` (rounded out
/// to whole vectors): the c2p and p2c products, of which each query (key) uses L of the 2L-1
/// distances. Stores stop at column `out_rs`.
struct Products<'a> {
    a: &'a [f32],
    a_rs: usize,
    bt: &'a [f32],
    bt_rs: usize,
    depth: usize,
    rows: usize,
    out_rs: usize,
    band: bool,
}

impl Products<'_> {
    /// The columns row tile `i0..i0 + m` needs, in whole vectors.
    fn columns(&self, i0: usize, m: usize) -> std::ops::Range<usize> {
        let l = self.rows;
        if self.band {
            (l - i0 - m) / LANES * LANES..(2 * l - 1 - i0).next_multiple_of(LANES)
        } else {
            0..l.next_multiple_of(LANES)
        }
    }
}

/// [`Products`] into `out` (rows of `out_rs`).
fn products(p: Products, out: &mut [f32]) {
    let last = if p.band { (2 * p.rows - 1).next_multiple_of(LANES) } else { p.rows.next_multiple_of(LANES) };
    assert!(
        p.rows > 0
            && p.a.len() >= (p.rows - 1) * p.a_rs + p.depth
            && p.bt_rs >= last
            && p.bt.len() >= (p.depth.max(1) - 1) * p.bt_rs + last
            && out.len() >= (p.rows - 1) * p.out_rs + p.out_rs.min(last),
        "attention products: operands too short"
    );
    let out = out.as_mut_ptr();
    #[cfg(target_arch = "x86_64")]
    {
        // Tiles: 4 rows x 4 vectors (16 accumulators of AVX-512's 32 registers); on AVX2 2 x 2
        // vectors of two registers each (8 of 16). The tile changes no result: every entry is
        // the same sum in the same order.
        if x86::Zmm::available() {
            // SAFETY: the operands hold what `product_rows` reads and writes (asserted above:
            // every tile's columns lie below `last`), and the CPU has AVX-512F (checked).
            return unsafe { x86::products_avx512(&p, out) };
        }
        if x86::Ymm2::available() {
            // SAFETY: as above, and the CPU has AVX2 and FMA (checked).
            return unsafe { x86::products_avx2(&p, out) };
        }
    }
    // SAFETY: as above; plain arrays need no CPU feature.
    unsafe { product_rows::<[f32; LANES], 2, 2>(&p, out) }
}

/// Sixteen f32 lanes, on whatever registers the CPU has. Every implementation computes each
/// lane alike (one fused multiply-add), so all give the same results.
///
/// # Safety
/// Every method may use the implementation's CPU features: callers run them only where the CPU
/// has them.
trait Lanes16: Copy {
    /// # Safety
    /// `p` must address 16 readable f32.
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn splat(x: f32) -> Self;
    /// `a * b + c`, rounded once.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    /// # Safety
    /// `p` must address 16 writable f32.
    unsafe fn store(self, p: *mut f32);
}

impl Lanes16 for [f32; LANES] {
    // SAFETY: unsafe only for the trait: reads the 16 f32 the caller guarantees.
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller passes 16 readable f32.
        unsafe { p.cast::<[f32; LANES]>().read_unaligned() }
    }
    // SAFETY: unsafe only for the trait; plain code.
    unsafe fn splat(x: f32) -> Self {
        [x; LANES]
    }
    // SAFETY: unsafe only for the trait; plain code.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        std::array::from_fn(|x| a[x].mul_add(b[x], c[x]))
    }
    // SAFETY: unsafe only for the trait: writes the 16 f32 the caller guarantees.
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller passes 16 writable f32.
        unsafe { p.cast::<[f32; LANES]>().write_unaligned(self) }
    }
}

/// [`products`] in tiles of `M` rows (the last rows one at a time) by up to `NV` vectors.
///
/// # Safety
/// The operands (and `out`, rows of `out_rs`) have the sizes [`products`] asserts, and the CPU
/// has `V`'s features.
#[inline(always)]
unsafe fn product_rows<V: Lanes16, const M: usize, const NV: usize>(p: &Products, out: *mut f32) {
    let mut i0 = 0;
    while i0 < p.rows {
        let m = if i0 + M <= p.rows { M } else { 1 };
        // SAFETY: the caller's contract, for rows i0..i0+m (inside it).
        unsafe {
            if m == M {
                product_tiles::<V, M, NV>(p, out, i0);
            } else {
                product_tiles::<V, 1, NV>(p, out, i0);
            }
        }
        i0 += m;
    }
}

/// Rows `i0..i0+M` of [`products`] across the columns they need, up to `NV` vectors per tile.
///
/// # Safety
/// As for [`product_rows`], with `i0 + M <= rows`.
#[inline(always)]
unsafe fn product_tiles<V: Lanes16, const M: usize, const NV: usize>(p: &Products, out: *mut f32, i0: usize) {
    let cols = p.columns(i0, M);
    let mut c0 = cols.start;
    while c0 < cols.end {
        let nv = NV.min((cols.end - c0) / LANES);
        // SAFETY: the caller's contract; columns c0..c0+16nv lie inside `cols`.
        unsafe {
            match nv {
                n if n == NV => product_tile::<V, M, NV>(p, out, i0, c0),
                3 => product_tile::<V, M, 3>(p, out, i0, c0),
                2 => product_tile::<V, M, 2>(p, out, i0, c0),
                _ => product_tile::<V, M, 1>(p, out, i0, c0),
            }
        }
        c0 += nv * LANES;
    }
}

/// Rows `i0..i0+M` x columns `c0..c0+16*NV` of [`products`].
///
/// # Safety
/// As for [`product_rows`], with the tile inside the operands.
#[inline(always)]
unsafe fn product_tile<V: Lanes16, const M: usize, const NV: usize>(
    p: &Products,
    out: *mut f32,
    i0: usize,
    c0: usize,
) {
    let (a, bt) = (p.a.as_ptr(), p.bt.as_ptr());
    // SAFETY: reads a's rows i0..i0+M (depth features each) and bt's rows f < depth at columns
    // c0..c0+16NV; writes out's rows i0..i0+M below column out_rs (the caller's contract).
    unsafe {
        let mut acc = [[V::splat(0.0); NV]; M];
        for f in 0..p.depth {
            let row = bt.add(f * p.bt_rs + c0);
            let b: [V; NV] = std::array::from_fn(|v| V::load(row.add(v * LANES)));
            for (ii, acc) in acc.iter_mut().enumerate() {
                let x = V::splat(*a.add((i0 + ii) * p.a_rs + f));
                for (acc, b) in acc.iter_mut().zip(&b) {
                    *acc = V::fma(x, *b, *acc);
                }
            }
        }
        for (ii, acc) in acc.iter().enumerate() {
            for (v, acc) in acc.iter().enumerate() {
                let col = c0 + v * LANES;
                let dst = out.add((i0 + ii) * p.out_rs + col);
                if col + LANES <= p.out_rs {
                    acc.store(dst);
                } else if col < p.out_rs {
                    let mut lanes = [0f32; LANES];
                    acc.store(lanes.as_mut_ptr());
                    std::ptr::copy_nonoverlapping(lanes.as_ptr(), dst, p.out_rs - col);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{product_rows, Lanes16, Products};
    use std::arch::x86_64::*;

    /// One AVX-512 register.
    #[derive(Clone, Copy)]
    pub(super) struct Zmm(__m512);

    impl Zmm {
        pub(super) fn available() -> bool {
            Ymm2::available() && is_x86_feature_detected!("avx512f")
        }
    }

    // Every method below is inlined into `products_avx512`, compiled for AVX-512F, which runs
    // only where `Zmm::available` (the trait's contract).
    impl Lanes16 for Zmm {
        #[inline(always)]
        // SAFETY: the trait's contract: 16 readable f32 at `p`, and AVX-512F.
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: as stated on the method.
            unsafe { Zmm(_mm512_loadu_ps(p)) }
        }
        #[inline(always)]
        // SAFETY: the trait's contract: AVX-512F.
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: as stated on the method.
            unsafe { Zmm(_mm512_set1_ps(x)) }
        }
        #[inline(always)]
        // SAFETY: the trait's contract: AVX-512F.
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            // SAFETY: as stated on the method.
            unsafe { Zmm(_mm512_fmadd_ps(a.0, b.0, c.0)) }
        }
        #[inline(always)]
        // SAFETY: the trait's contract: 16 writable f32 at `p`, and AVX-512F.
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: as stated on the method.
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
    }

    /// Two AVX2 registers.
    #[derive(Clone, Copy)]
    pub(super) struct Ymm2(__m256, __m256);

    impl Ymm2 {
        pub(super) fn available() -> bool {
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        }
    }

    // Every method below is inlined into `products_avx2`, compiled for AVX2 and FMA, which runs
    // only where `Ymm2::available` (the trait's contract).
    impl Lanes16 for Ymm2 {
        #[inline(always)]
        // SAFETY: the trait's contract: 16 readable f32 at `p`, and AVX2.
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: as stated on the method.
            unsafe { Ymm2(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))) }
        }
        #[inline(always)]
        // SAFETY: the trait's contract: AVX2.
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: as stated on the method.
            unsafe { Ymm2(_mm256_set1_ps(x), _mm256_set1_ps(x)) }
        }
        #[inline(always)]
        // SAFETY: the trait's contract: AVX2 and FMA.
        unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
            // SAFETY: as stated on the method.
            unsafe { Ymm2(_mm256_fmadd_ps(a.0, b.0, c.0), _mm256_fmadd_ps(a.1, b.1, c.1)) }
        }
        #[inline(always)]
        // SAFETY: the trait's contract: 16 writable f32 at `p`, and AVX2.
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: as stated on the method.
            unsafe {
                _mm256_storeu_ps(p, self.0);
                _mm256_storeu_ps(p.add(8), self.1);
            }
        }
    }

    /// # Safety
    /// As for [`product_rows`], on a CPU where [`Zmm::available`].
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn products_avx512(p: &Products, out: *mut f32) {
        // SAFETY: the caller's contract.
        unsafe { product_rows::<Zmm, 4, 4>(p, out) }
    }

    /// # Safety
    /// As for [`product_rows`], on a CPU where [`Ymm2::available`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn products_avx2(p: &Products, out: *mut f32) {
        // SAFETY: the caller's contract.
        unsafe { product_rows::<Ymm2, 2, 2>(p, out) }
    }
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
    // 2^n through the bits of a float (n + 127 is in 1..=254 after the clamp): adding 1.5 * 2^23
    // puts the integer n + 127 in the low mantissa bits, where a float-to-int conversion (which
    // Rust saturates, and which then stays scalar) is not needed.
    let biased = (n + (12_582_912.0 + 127.0)).to_bits() - 0x4B40_0000;
    e_r * f32::from_bits(biased << 23)
}

simd_dispatch! {
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
        // A plain compare (not `f32::max`, whose NaN rule keeps the loop scalar); a NaN still
        // makes the whole row NaN through the sum.
        let max = fold_lanes(row, f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
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
    use super::*;

    /// The attention kernel reads Kr and Qr in place when they come in [`rel_layout`] and
    /// transposes them itself otherwise: the same values either way, so the same bits. (That both
    /// match the generic path is tests/fast.rs's check.)
    #[test]
    fn relative_layouts_give_identical_attention() {
        let (b, l, heads, d) = (2, 37, 3, 8);
        let r = 2 * l - 1;
        let mut seed = 7u32;
        let mut values = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                    (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect()
        };
        let flex = |v: Vec<f32>, shape: Vec<usize>| FlexTensor::from_data(TensorData::new(v, shape));
        let (q, k, v) = (values(b * l * heads * d), values(b * l * heads * d), values(b * l * heads * d));
        let (kr, qr) = (values(r * heads * d), values(r * heads * d));
        let run = |laid_out: bool| {
            let rel = |data: &Vec<f32>| {
                let t = flex(data.clone(), vec![1, heads, r, d]);
                if laid_out {
                    to_flex(rel_layout(from_flex::<Flex, 4>(t)))
                } else {
                    t
                }
            };
            let inputs = AttentionInputs {
                q: flex(q.clone(), vec![b, l, heads * d]),
                k: flex(k.clone(), vec![b, l, heads * d]),
                v: flex(v.clone(), vec![b, l, heads * d]),
                kr: Some(rel(&kr)),
                qr: Some(rel(&qr)),
                tokens: flex(vec![1.0; b * l], vec![b, l, 1]),
                padded: false,
                dropout: None,
                heads,
                d,
                scale: 0.3,
            };
            let (krv, qrv) =
                (AttentionInputs::rel(&inputs.kr).unwrap(), AttentionInputs::rel(&inputs.qr).unwrap());
            // The laid-out operands must be the ones read in place (distance stride 1).
            assert_eq!((krv.2 .0 == 1, qrv.2 .0 == 1), (laid_out, laid_out));
            attention_forward(&inputs, None).into_data().to_vec::<f32>().unwrap()
        };
        let (plain, laid_out) = (run(false), run(true));
        assert!(plain.iter().any(|x| *x != 0.0));
        assert_eq!(plain, laid_out);
    }
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
