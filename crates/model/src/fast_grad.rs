//! Fused kernels for training on the CPU (`Autodiff<Flex>`), each registered as one node of
//! burn's autograd graph with its own backward: the disentangled attention (the inference
//! kernel's forward, which also keeps the softmax output), LayerNorm, the exact GELU and the
//! Linear layer (at the end of the file).
//! burn would otherwise record some twenty ops per attention and nine per LayerNorm, each a full
//! pass over the activations on one thread with its own saved tensors.
//!
//! The backward of `O = dropout(softmax(mask_fill(Z / s))) V` with
//! `Z[i, j] = Q_i.K_j + Q_i.Kr[L-1-i+j] + K_j.Qr[L-1+i-j]`, per (sequence, head), all in cache:
//!
//! - `P` the saved softmax, `D = P * keep / p_keep`:  `dV = D^T dO`
//! - `dD = dO V^T`, `dP = dD * keep / p_keep`
//! - `dZ = P * (dP - rowsum(dP * P)) / s`, zero where masked (`mask_fill` passes no gradient)
//! - `dQ = dZ K + dC Kr`, `dK = dZ^T Q + dR Qr`, where `dC[i, L-1-i+j] = dZ[i, j]` and
//!   `dR[j, L-1+i-j] = dZ[i, j]` are `dZ` written into the windows the forward read
//! - `dKr = sum over sequences of dC^T Q`, `dQr = sum of dR^T K` (per-task blocks, summed in
//!   sequence order afterwards, so the result does not depend on scheduling).
//!
//! tests/fast_grad.rs compares every parameter's gradient with burn's autodiff of the generic
//! path.

use crate::fast::{column_blocks, gemm, rel_head, AttentionInputs, Out};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::prelude::*;
use burn::tensor::{DType, TensorPrimitive};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;
use std::any::Any;

type Ad = Autodiff<Flex>;
type AdTensor = <Ad as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive;

fn to_ad<B: Backend, const D: usize>(t: Tensor<B, D>) -> AdTensor {
    let primitive: Box<dyn Any> = Box::new(t.into_primitive().tensor());
    *primitive.downcast::<AdTensor>().expect("fused training kernels are only called on Autodiff<Flex>")
}

fn from_ad<B: Backend, const D: usize>(t: AdTensor) -> Tensor<B, D> {
    let primitive: Box<dyn Any> = Box::new(t);
    let primitive = *primitive.downcast::<B::FloatTensorPrimitive>().expect("B is Autodiff<Flex>");
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// The value under a graph tensor of `B` (which must be `Autodiff<Flex>`).
pub(crate) fn value<B: Backend, const D: usize>(t: Tensor<B, D>) -> FlexTensor {
    to_ad(t).primitive
}

/// [`crate::fast::attention`] on `Autodiff<Flex>` as one graph node: `inputs` are the values of
/// `qkv` and `rel` (and the rest of the call), which give the node its parents.
pub(crate) fn attention<B: Backend>(
    inputs: AttentionInputs,
    qkv: [Tensor<B, 3>; 3],
    rel: [Option<Tensor<B, 4>>; 2],
) -> Tensor<B, 3> {
    // An absent relative term is an untracked leaf: it gets no gradient.
    let absent = || AdTensor::new(FlexTensor::empty([0].into(), DType::F32));
    let [q, k, v] = qkv.map(|t| to_ad(t).node);
    let [kr, qr] = rel.map(|t| t.map(to_ad).unwrap_or_else(absent).node);
    let nodes = [q, k, v, kr, qr];
    let out = match FusedAttention.prepare::<NoCheckpointing>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (b, l, _) = inputs.dims();
            let mut probs = FlexTensor::empty([b, inputs.heads, l, l].into(), DType::F32);
            let out =
                crate::fast::attention_forward(&inputs, Some(Out(probs.storage_mut::<f32>().as_mut_ptr())));
            prep.finish(State { inputs, probs }, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(crate::fast::attention_forward(&inputs, None)),
    };
    from_ad(out)
}

#[derive(Debug)]
struct FusedAttention;

/// What the backward needs: the operands and the softmax output of every (sequence, head).
#[derive(Debug, Clone)]
struct State {
    inputs: AttentionInputs,
    probs: FlexTensor,
}

impl Backward<Flex, 5> for FusedAttention {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad_out = grads.consume::<Flex>(&ops.node).to_contiguous();
        let State { inputs, probs } = ops.state;
        let [dq, dk, dv, dkr, dqr] = attention_backward(&inputs, &probs, &grad_out);
        for (parent, grad) in ops.parents.into_iter().zip([dq, dk, dv, dkr, dqr]) {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

/// `[dQ, dK, dV, dKr, dQr]` from the upstream gradient of the `[B, L, heads*d]` context (module
/// docs for the formulas); `dKr`/`dQr` only for the terms in use, in their inputs' shape.
fn attention_backward(
    inputs: &AttentionInputs,
    probs: &FlexTensor,
    grad_out: &FlexTensor,
) -> [Option<FlexTensor>; 5] {
    let AttentionInputs { q, k, v, tokens, padded, heads, d, scale, .. } = inputs;
    let (heads, d, padded, scale) = (*heads, *d, *padded, *scale);
    let (b, l, hd) = inputs.dims();
    let r = 2 * l - 1;
    let (qd, kd, vd, god): (&[f32], &[f32], &[f32], &[f32]) =
        (q.storage(), k.storage(), v.storage(), grad_out.storage());
    let (krd, qrd) = (AttentionInputs::rel(&inputs.kr), AttentionInputs::rel(&inputs.qr));
    let mask: &[f32] = tokens.storage();
    let probs: &[f32] = probs.storage();
    let dropout = inputs.dropout.as_ref().map(|(m, inv_keep)| (m.storage::<f32>(), *inv_keep));

    let empty = |shape: &[usize]| FlexTensor::empty(shape.into(), DType::F32);
    let (mut dq, mut dk, mut dv) = (empty(&[b, l, hd]), empty(&[b, l, hd]), empty(&[b, l, hd]));
    // Per-task blocks of dKr / dQr, summed over sequences below.
    let mut dkr_tasks = krd.map(|_| vec![0f32; b * heads * r * d]);
    let mut dqr_tasks = qrd.map(|_| vec![0f32; b * heads * r * d]);
    let ptr = |t: &mut FlexTensor| Out(t.storage_mut::<f32>().as_mut_ptr());
    let (dq_out, dk_out, dv_out) = (ptr(&mut dq), ptr(&mut dk), ptr(&mut dv));
    let dkr_out = dkr_tasks.as_mut().map(|t| Out(t.as_mut_ptr()));
    let dqr_out = dqr_tasks.as_mut().map(|t| Out(t.as_mut_ptr()));
    let (hd_s, l_s, r_s) = (hd as isize, l as isize, r as isize);

    // Scratch per worker: D (then dZ), dP, and the two window matrices. Only the windows of
    // dC / dR are ever written, always the same elements for one L, so the rest stays zero.
    (0..b * heads).into_par_iter().for_each_init(
        || (vec![0f32; l * l], vec![0f32; l * l], vec![0f32; l * r], vec![0f32; l * r]),
        |(dz, dp, dc, dr), task| {
            let (bi, h) = (task / heads, task % heads);
            // Layout as in the forward: q, k, v, dO and dQ, dK, dV are contiguous [b, l, heads*d];
            // task (bi, h) reads and writes head h of sequence bi only (offset bi*l*hd + h*d, row
            // stride hd); its dKr / dQr blocks are its own [2L-1, d] slices; Kr / Qr are read at
            // head h of their [1, heads, 2L-1, d] views.
            let offset = bi * l * hd + h * d;
            // SAFETY: head h of sequence bi is inside q, k, v and dO (layout above).
            let at = |data: &[f32]| unsafe { data.as_ptr().add(offset) };
            let (qh, kh, vh, goh) = (at(qd), at(kd), at(vd), at(god));
            let p = &probs[task * l * l..][..l * l];
            let keep = dropout.map(|(m, inv)| (&m[task * l * l..][..l * l], inv));

            // D = P * keep / p_keep (the forward's arithmetic), into dz's buffer for now.
            match keep {
                Some((m, inv)) => dz.iter_mut().zip(p).zip(m).for_each(|((x, &p), &m)| *x = (p * m) * inv),
                None => dz.copy_from_slice(p),
            }
            // SAFETY: reads head h of sequence bi, writes its dV slice and this task's scratch.
            unsafe {
                // dV = D^T dO; dD = dO V^T
                gemm((l, d, l), dv_out.at(offset), hd_s, false, dz.as_ptr(), (1, l_s), goh, (hd_s, 1));
                gemm((l, l, d), dp.as_mut_ptr(), l_s, false, goh, (hd_s, 1), vh, (1, hd_s));
            }
            if let Some((m, inv)) = keep {
                // The generic backward's order: the gradient times 1 / p_keep, then times the mask.
                dp.iter_mut().zip(m).for_each(|(g, &m)| *g = (*g * inv) * m);
            }
            // dZ = P * (dP - rowsum(dP * P)) / s, zero where masked.
            let tok = &mask[bi * l..(bi + 1) * l];
            for i in 0..l {
                let (pi, gi, zi) = (&p[i * l..][..l], &dp[i * l..][..l], &mut dz[i * l..][..l]);
                let dot: f32 = pi.iter().zip(gi).map(|(p, g)| p * g).sum();
                zi.iter_mut().zip(pi).zip(gi).for_each(|((z, &p), &g)| *z = p * (g - dot) / scale);
                if padded {
                    for (z, &key) in zi.iter_mut().zip(tok) {
                        if tok[i] != 1.0 || key != 1.0 {
                            *z = 0.0;
                        }
                    }
                }
            }
            // SAFETY: writes the dQ / dK slices of head h of sequence bi (layout above).
            unsafe {
                // dQ = dZ K; dK = dZ^T Q
                gemm((l, d, l), dq_out.at(offset), hd_s, false, dz.as_ptr(), (l_s, 1), kh, (hd_s, 1));
                gemm((l, d, l), dk_out.at(offset), hd_s, false, dz.as_ptr(), (1, l_s), qh, (hd_s, 1));
            }
            // dZ into the windows the forward read: dC row i at column L-1-i+j, dR row j at
            // column L-1-j+i.
            if krd.is_some() {
                for i in 0..l {
                    dc[i * r + (l - 1 - i)..][..l].copy_from_slice(&dz[i * l..][..l]);
                }
            }
            if qrd.is_some() {
                for i in 0..l {
                    for j in 0..l {
                        dr[j * r + (l - 1 - j) + i] = dz[i * l + j];
                    }
                }
            }
            // c2p: dQ += dC Kr, dKr_task = dC^T Q; p2c: dK += dR Qr, dQr_task = dR^T K.
            for (rel, block, window, dx, x) in
                [(krd, dkr_out, &*dc, dq_out, qh), (qrd, dqr_out, &*dr, dk_out, kh)]
            {
                let (Some((rel, hs, (ts, fs))), Some(block)) = (rel, block) else { continue };
                // SAFETY: head h of the projection; this task's dQ or dK slice (layout above) and
                // its own [2L-1, d] block of the projection's gradient.
                unsafe {
                    let rel = rel_head(rel, hs, h);
                    gemm((l, d, r), dx.at(offset), hd_s, true, window.as_ptr(), (r_s, 1), rel, (ts, fs));
                    let (dst, dst_rs) = (block.at(task * r * d), d as isize);
                    gemm((r, d, l), dst, dst_rs, false, window.as_ptr(), (1, r_s), x, (hd_s, 1));
                }
            }
        },
    );
    // Sum the per-sequence blocks of each head, in sequence order: [heads, 2L-1, d], then the
    // input's [1, heads, 2L-1, d] shape.
    let sum = |tasks: Vec<f32>| {
        let block = r * d;
        let mut total = vec![0f32; heads * block];
        total.par_chunks_mut(block).enumerate().for_each(|(h, acc)| {
            for bi in 0..b {
                let part = &tasks[(bi * heads + h) * block..][..block];
                acc.iter_mut().zip(part).for_each(|(a, x)| *a += x);
            }
        });
        FlexTensor::from_data(TensorData::new(total, [1, heads, r, d]))
    };
    [Some(dq), Some(dk), Some(dv), dkr_tasks.map(sum), dqr_tasks.map(sum)]
}

/// LayerNorm over the last dimension on `Autodiff<Flex>` as one graph node: rows in parallel,
/// the generic path's arithmetic (`(x - mean) / sqrt(var + eps) * gamma + beta`, two-pass
/// variance), and its own backward. burn decomposes LayerNorm into nine tracked ops under
/// autodiff, each a single-threaded pass over the activations.
pub(crate) fn layer_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
) -> Tensor<B, D> {
    let (x, gamma, beta) = (to_ad(x), to_ad(gamma), to_ad(beta));
    let (xv, gv) = (x.primitive.to_contiguous(), gamma.primitive.to_contiguous());
    let (out, stats) = norm_forward(&xv, &gv, &beta.primitive.to_contiguous(), epsilon as f32);
    let state = NormState { x: xv, gamma: gv, stats };
    let nodes = [x.node, gamma.node, beta.node];
    let out = match FusedLayerNorm.prepare::<NoCheckpointing>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(state, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    from_ad(out)
}

/// Rows per task: fixed (not per thread count), so that the order of the parameter-gradient sums
/// never changes.
const NORM_ROWS: usize = 32;

#[derive(Debug)]
struct FusedLayerNorm;

#[derive(Debug, Clone)]
struct NormState {
    x: FlexTensor,
    gamma: FlexTensor,
    /// Each row's mean and `sqrt(var + eps)`.
    stats: Vec<(f32, f32)>,
}

/// A row's mean and `sqrt(var + eps)`, the variance from the centred values as the generic path
/// computes it.
fn row_stats(x: &[f32], epsilon: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, (var + epsilon).sqrt())
}

/// The output and each row's statistics.
fn norm_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f32,
) -> (FlexTensor, Vec<(f32, f32)>) {
    let shape = x.layout().shape().clone();
    let d = *shape.last().expect("LayerNorm input has a last dimension");
    let (x, gamma, beta): (&[f32], &[f32], &[f32]) = (x.storage(), gamma.storage(), beta.storage());
    let mut out = FlexTensor::empty(shape, DType::F32);
    let mut stats = vec![(0f32, 0f32); x.len() / d.max(1)];
    out.storage_mut::<f32>()
        .par_chunks_mut(NORM_ROWS * d)
        .zip(x.par_chunks(NORM_ROWS * d))
        .zip(stats.par_chunks_mut(NORM_ROWS))
        .for_each(|((o, x), stats)| {
            for ((o, x), st) in o.chunks_exact_mut(d).zip(x.chunks_exact(d)).zip(stats) {
                let (mean, denom) = row_stats(x, epsilon);
                *st = (mean, denom);
                for (((o, &x), &g), &b) in o.iter_mut().zip(x).zip(gamma).zip(beta) {
                    *o = (x - mean) / denom * g + b;
                }
            }
        });
    (out, stats)
}

impl Backward<Flex, 3> for FusedLayerNorm {
    type State = NormState;

    /// With `xh = (x - mean) / denom` and `dxh = dy * gamma`: `dx = (dxh - mean(dxh) -
    /// xh * mean(dxh * xh)) / denom`, `dgamma = sum over rows of dy * xh`, `dbeta = sum of dy`.
    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let s = ops.state;
        let shape = s.x.layout().shape().clone();
        let d = *shape.last().expect("LayerNorm input has a last dimension");
        let (x, gamma, dyd): (&[f32], &[f32], &[f32]) = (s.x.storage(), s.gamma.storage(), dy.storage());
        let mut dx = FlexTensor::empty(shape, DType::F32);
        // Per task: its rows of dx, and its partial sums of dgamma and dbeta.
        let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
            .storage_mut::<f32>()
            .par_chunks_mut(NORM_ROWS * d)
            .zip(x.par_chunks(NORM_ROWS * d))
            .zip(dyd.par_chunks(NORM_ROWS * d))
            .zip(s.stats.par_chunks(NORM_ROWS))
            .map(|(((dx, x), dy), stats)| {
                let (mut dgamma, mut dbeta) = (vec![0f32; d], vec![0f32; d]);
                let mut xh = vec![0f32; d];
                let rows = dx.chunks_exact_mut(d).zip(x.chunks_exact(d)).zip(dy.chunks_exact(d));
                for (((dx, x), dy), &(mean, denom)) in rows.zip(stats) {
                    xh.iter_mut().zip(x).for_each(|(h, &x)| *h = (x - mean) / denom);
                    let (mut sum, mut sum_xh) = (0f32, 0f32);
                    for (((&dy, &g), &h), (dg, db)) in
                        dy.iter().zip(gamma).zip(&xh).zip(dgamma.iter_mut().zip(&mut dbeta))
                    {
                        let dxh = dy * g;
                        sum += dxh;
                        sum_xh += dxh * h;
                        *dg += dy * h;
                        *db += dy;
                    }
                    let (mean_dxh, mean_dxh_xh) = (sum / d as f32, sum_xh / d as f32);
                    for (((dx, &dy), &g), &h) in dx.iter_mut().zip(dy).zip(gamma).zip(&xh) {
                        *dx = (dy * g - mean_dxh - h * mean_dxh_xh) / denom;
                    }
                }
                (dgamma, dbeta)
            })
            .collect();
        let (mut dgamma, mut dbeta) = (vec![0f32; d], vec![0f32; d]);
        for (g, b) in &partials {
            dgamma.iter_mut().zip(g).for_each(|(a, x)| *a += x);
            dbeta.iter_mut().zip(b).for_each(|(a, x)| *a += x);
        }
        let vector = |v: Vec<f32>| FlexTensor::from_data(TensorData::new(v, [d]));
        for (parent, grad) in ops.parents.into_iter().zip([dx, vector(dgamma), vector(dbeta)]) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

/// Elements per task of the GELU: fixed, so the split never depends on the thread count (each
/// element's result does not either: the op is elementwise).
const GELU_CHUNK: usize = 1 << 14;

/// The exact GELU on `Autodiff<Flex>` as one graph node: chunks in parallel, the vectorised `erf`
/// and `exp` of the inference kernels (within 1e-6 of libm), and its own backward. burn's runs
/// libm's `erff` per element on one thread in the forward and again in the backward.
pub(crate) fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let x = to_ad(x);
    let xv = x.primitive.to_contiguous();
    let mut out = xv.clone(); // copied on the first write (the input is kept for the backward)
    out.storage_mut::<f32>().par_chunks_mut(GELU_CHUNK).for_each(crate::fast::gelu_in_place);
    let out = match FusedGelu.prepare::<NoCheckpointing>([x.node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(xv, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    from_ad(out)
}

#[derive(Debug)]
struct FusedGelu;

impl Backward<Flex, 1> for FusedGelu {
    /// The input.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let mut dx = grads.consume::<Flex>(&ops.node).to_contiguous();
        let x: &[f32] = ops.state.storage();
        dx.storage_mut::<f32>()
            .par_chunks_mut(GELU_CHUNK)
            .zip(x.par_chunks(GELU_CHUNK))
            .for_each(|(dx, x)| crate::fast::gelu_backward_in_place(x, dx));
        let [parent] = ops.parents;
        if let Some(node) = parent {
            grads.register::<Flex>(node.id, dx);
        }
    }
}

/// `x W + b` over the last dimension on `Autodiff<Flex>` as one graph node: the inference GEMM
/// (column blocks per worker, the bias preloaded into the output) forward, and three products
/// straight from the saved operands' strides backward. burn records a matmul and a broadcast add,
/// whose backward copies the transposed operands and sums the bias gradient on one thread.
pub(crate) fn linear<B: Backend, const D: usize>(
    layer: &burn::nn::Linear<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let dims = x.dims();
    let rows: usize = dims[..D - 1].iter().product();
    let x = to_ad(x.reshape([rows, dims[D - 1]]));
    let w = to_ad(layer.weight.val());
    let b = layer.bias.as_ref().map(|b| to_ad(b.val()));
    let bias = b.as_ref().map(|b| b.primitive.to_contiguous());
    let out = crate::fast::dense_values(&x.primitive, &w.primitive, bias.as_ref(), false);
    let d_out = out.layout().shape()[1];
    let state = LinearState { x: x.primitive.clone(), w: w.primitive.clone(), bias: b.is_some() };
    // An absent bias is an untracked leaf: it gets no gradient.
    let b = b.unwrap_or_else(|| AdTensor::new(FlexTensor::empty([0].into(), DType::F32)));
    let out =
        match FusedLinear.prepare::<NoCheckpointing>([x.node, w.node, b.node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(state, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
    let mut out_dims = dims;
    out_dims[D - 1] = d_out;
    from_ad::<B, 2>(out).reshape(out_dims)
}

#[derive(Debug)]
struct FusedLinear;

#[derive(Debug, Clone)]
struct LinearState {
    /// `[rows, d_in]` and `[d_in, d_out]`, any strides.
    x: FlexTensor,
    w: FlexTensor,
    bias: bool,
}

impl Backward<Flex, 3> for FusedLinear {
    type State = LinearState;

    /// `dx = dy W^T`, `dW = x^T dy`, `db = sum over rows of dy`, each output split into column
    /// blocks per worker (every element is one product over the same operands in the same order,
    /// whatever the split).
    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let LinearState { x, w, bias } = ops.state;
        let ([rows, d_in], d_out) = ([x.layout().shape()[0], x.layout().shape()[1]], w.layout().shape()[1]);
        let strides = |t: &FlexTensor| {
            let s = t.layout().strides();
            (s[0], s[1])
        };
        let ((xr, xc), (wr, wc)) = (strides(&x), strides(&w));
        let (xd, wd): (&[f32], &[f32]) =
            (&x.storage()[x.layout().start_offset()..], &w.storage()[w.layout().start_offset()..]);
        let dyd: &[f32] = dy.storage();
        // Left uninitialised: the blocks below write every element (zeroing them first was a
        // memset of every weight's size per step).
        let shapes = [vec![rows, d_in], vec![d_in, d_out], vec![if bias { d_out } else { 0 }]];
        let mut bufs = shapes.clone().map(|shape| Vec::<f32>::with_capacity(shape.iter().product()));
        let [dxp, dwp, dbp] = bufs.each_mut().map(|b| Out(b.spare_capacity_mut().as_mut_ptr().cast::<f32>()));
        let dy_rs = d_out as isize;
        // SAFETY: (all three blocks) every task writes only its own columns of one gradient, all
        // of them, and reads the saved operands and `dy` inside their buffers.
        column_blocks(d_in).for_each(|(c0, cw)| unsafe {
            // dx[:, c0..] = dy (rows x d_out) . W^T[:, c0..] (element (j, i) = W[c0 + i, j]).
            let wt = wd.as_ptr().offset(c0 as isize * wr);
            gemm((rows, cw, d_out), dxp.at(c0), d_in as isize, false, dyd.as_ptr(), (dy_rs, 1), wt, (wc, wr));
        });
        column_blocks(d_out).for_each(|(c0, cw)| unsafe {
            // dW[:, c0..] = x^T (d_in x rows, element (i, r) = x[r, i]) . dy[:, c0..].
            let dy = dyd.as_ptr().add(c0);
            gemm((d_in, cw, rows), dwp.at(c0), d_out as isize, false, xd.as_ptr(), (xc, xr), dy, (dy_rs, 1));
            if bias {
                let db = std::slice::from_raw_parts_mut(dbp.at(c0), cw);
                db.copy_from_slice(&dyd[c0..c0 + cw]);
                for r in 1..rows {
                    db.iter_mut().zip(&dyd[r * d_out + c0..][..cw]).for_each(|(a, g)| *a += g);
                }
            }
        });
        let grads_of = bufs.into_iter().zip(shapes).map(|(mut b, shape)| {
            // SAFETY: the blocks above wrote all elements of every buffer (its shape's product,
            // which `with_capacity` reserved).
            unsafe { b.set_len(shape.iter().product()) };
            FlexTensor::from_data(TensorData::new(b, shape))
        });
        for (parent, grad) in ops.parents.into_iter().zip(grads_of) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}
