//! The DeBERTa-v2/v3 encoder, top to bottom as HF's `modeling_deberta_v2.py`
//! (our parity oracle) lays it out. Field names are the checkpoint names, so a checkpoint
//! key is a path through these structs (`self` is a Rust keyword: that one field is `self_attn`).
//! The equations, with the section numbers of the banners below, are in docs/model.md.

#![allow(non_snake_case)] // `LayerNorm` fields mirror the checkpoint names.

use crate::config::{Activation, DebertaConfig};
use crate::fast;
use crate::int8::{self, Int8Error, Int8Linears};
use crate::position::{RelativeScheme, RelativeTableCache};
use burn::module::{Initializer, Param};
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig, PaddingConfig1d};
use burn::prelude::*;
use burn::tensor::{activation, Distribution, TensorPrimitive};
use std::any::Any;
use std::sync::{Arc, Mutex};

// ---------------------------------------------------------------------------------------------
// Building blocks with HF's initialisation: N(0, initializer_range) weights, zero biases,
// unit LayerNorms, a zero padding row in the word embedding.
// ---------------------------------------------------------------------------------------------

pub(crate) fn linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    bias: bool,
    config: &DebertaConfig,
    device: &B::Device,
) -> Linear<B> {
    let mut layer = LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(Initializer::Normal { mean: 0.0, std: config.initializer_range })
        .init(device);
    if bias {
        layer.bias = Some(Param::from_tensor(Tensor::zeros([d_out], device)));
    }
    layer
}

/// `x W + b` over the last dimension as one `[rows, d_in] x [d_in, d_out]` matmul. burn's
/// `Linear::forward` broadcasts the weight over the leading dimensions instead: a batched matmul
/// that re-packs the weight for every sequence, on one thread each, and whose weight gradient is a
/// `[batch, d_in, d_out]` stack summed afterwards. One 2-D product lets the GEMM split its own work
/// across cores (docs/benchmarks-history.md, "What each lever gained").
pub fn dense<B: Backend, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    if fast::applies::<B>(x.dtype()) {
        return fast::dense(layer, x, false);
    }
    if fast::fuses_training_ops::<B>(x.dtype()) {
        return crate::fast_grad::linear(layer, x);
    }
    let dims = x.dims();
    let d_in = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let [_, d_out] = layer.weight.dims();
    let mut y = x.reshape([rows, d_in]).matmul(layer.weight.val());
    if let Some(bias) = &layer.bias {
        y = y + bias.val().unsqueeze::<2>();
    }
    let mut out = dims;
    out[D - 1] = d_out;
    y.reshape(out)
}

pub(crate) fn embedding<B: Backend>(
    rows: usize,
    dim: usize,
    padding_row: Option<usize>,
    config: &DebertaConfig,
    device: &B::Device,
) -> Embedding<B> {
    let mut emb = EmbeddingConfig::new(rows, dim)
        .with_initializer(Initializer::Normal { mean: 0.0, std: config.initializer_range })
        .init(device);
    if let Some(pad) = padding_row {
        let weight = emb.weight.val().slice_assign([pad..pad + 1, 0..dim], Tensor::zeros([1, dim], device));
        // detach: under autodiff the slice_assign result is not a leaf and cannot become a Param.
        emb.weight = Param::from_tensor(weight.detach());
    }
    emb
}

pub(crate) fn layer_norm<B: Backend>(dim: usize, config: &DebertaConfig, device: &B::Device) -> LayerNorm<B> {
    LayerNorm {
        gamma: Initializer::Ones.init([dim], device),
        beta: Initializer::Zeros.init([dim], device),
        epsilon: config.layer_norm_eps,
    }
}

/// `(x - mean) / sqrt(var + eps) * gamma + beta` over the last dimension: burn's `LayerNorm`
/// (same parameter names, same backend op), except that training on the CPU takes the fused
/// kernel with its own backward (burn would record nine ops). Ours rather than burn's because
/// that one keeps `epsilon` private.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    pub gamma: Param<Tensor<B, 1>>,
    pub beta: Param<Tensor<B, 1>>,
    pub epsilon: f64,
}

impl<B: Backend> LayerNorm<B> {
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        if fast::fuses_training_ops::<B>(x.dtype()) {
            return fast::layer_norm(x, self.gamma.val(), self.beta.val(), self.epsilon);
        }
        let (gamma, beta) =
            (self.gamma.val().into_primitive().tensor(), self.beta.val().into_primitive().tensor());
        let y = B::layer_norm(x.into_primitive().tensor(), gamma, Some(beta), self.epsilon);
        Tensor::from_primitive(TensorPrimitive::Float(y))
    }
}

pub(crate) fn dropout(p: f64) -> Dropout {
    DropoutConfig::new(p).init()
}

pub fn activate<B: Backend, const D: usize>(act: Activation, x: Tensor<B, D>) -> Tensor<B, D> {
    match act {
        Activation::Gelu if fast::fuses_training_ops::<B>(x.dtype()) => crate::fast_grad::gelu(x),
        Activation::Gelu => activation::gelu(x),
        Activation::GeluTanh => activation::gelu_approximate(x),
        Activation::Relu => activation::relu(x),
        Activation::Tanh => activation::tanh(x),
        Activation::Silu => activation::silu(x),
    }
}

/// `f` (row-wise) on a single sequence `[1, L, *]`, its two halves on two rayon workers at
/// inference. Backends whose elementwise ops run on one thread (Flex) otherwise keep the other
/// cores idle through the FFN activation; batches of two or more are split by the encoder.
fn split_sequence<B: Backend>(
    x: Tensor<B, 3>,
    f: impl Fn(Tensor<B, 3>) -> Tensor<B, 3> + Sync,
) -> Tensor<B, 3> {
    let [b, l, _] = x.dims();
    if b != 1 || l < 16 || !fast::splits_work::<B>() {
        return f(x);
    }
    let half = l / 2;
    let (lo, hi) =
        rayon::join(|| f(x.clone().slice([0..1, 0..half])), || f(x.clone().slice([0..1, half..l])));
    Tensor::cat(vec![lo, hi], 1)
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// One batch of token rows, `[batch, len]` each.
#[derive(Debug, Clone)]
pub struct Batch<B: Backend> {
    pub input_ids: Tensor<B, 2, Int>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor<B, 2, Int>,
    /// Ignored unless `type_vocab_size > 0`.
    pub token_type_ids: Option<Tensor<B, 2, Int>>,
}

impl<B: Backend> Batch<B> {
    pub fn dims(&self) -> [usize; 2] {
        self.input_ids.dims()
    }
}

/// The attention mask in the shapes the layers need, built once per forward.
#[derive(Debug, Clone)]
pub struct MaskContext<B: Backend> {
    /// `[B, L, 1]` float 0/1: zeroes padded positions (embeddings, conv).
    pub tokens: Tensor<B, 3>,
    /// `[B, heads, L, L]`, true where query i may NOT attend to key j (`!(m_i & m_j)`); `None`
    /// when no position is padded (masking would change nothing).
    pub blocked: Option<Tensor<B, 4, Bool>>,
}

impl<B: Backend> MaskContext<B> {
    pub fn new(attention_mask: &Tensor<B, 2, Int>, heads: usize) -> Self {
        let [b, l] = attention_mask.dims();
        let m = attention_mask.clone().equal_elem(1);
        let tokens = m.clone().float().reshape([b, l, 1]);
        let padded: i64 = attention_mask.clone().not_equal_elem(1).int().sum().into_scalar().elem();
        if padded == 0 {
            return MaskContext { tokens, blocked: None };
        }
        // HF: extended = m[:, None, None, :]; mask = extended * extended.squeeze(-2).unsqueeze(-1)
        let keys = m.clone().reshape([b, 1, 1, l]).expand([b, heads, l, l]);
        let queries = m.reshape([b, 1, l, 1]).expand([b, heads, l, l]);
        MaskContext { tokens, blocked: Some(keys.bool_and(queries).bool_not()) }
    }

    /// The mask of batch rows `range`.
    pub fn rows(&self, range: std::ops::Range<usize>) -> Self {
        MaskContext {
            tokens: self.tokens.clone().narrow(0, range.start, range.len()),
            blocked: self.blocked.clone().map(|m| m.narrow(0, range.start, range.len())),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3.1 Embeddings: X0 = dropout(LayerNorm(E[ids] (+ positions) (+ types), proj) * mask)
// ---------------------------------------------------------------------------------------------

#[derive(Module, Debug)]
pub struct DebertaV2Embeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    /// Absolute positions: added to the input when `position_biased_input`; also the query seed
    /// of the Enhanced Mask Decoder (official V3 generators keep this table for that reason).
    pub position_embeddings: Option<Embedding<B>>,
    pub token_type_embeddings: Option<Embedding<B>>,
    pub embed_proj: Option<Linear<B>>,
    pub LayerNorm: LayerNorm<B>,
    pub dropout: Dropout,
    pub position_biased_input: bool,
}

impl<B: Backend> DebertaV2Embeddings<B> {
    pub fn new(config: &DebertaConfig, with_position_table: bool, device: &B::Device) -> Self {
        let e = config.embedding_size;
        let position_embeddings = (config.position_biased_input || with_position_table)
            .then(|| embedding(config.max_position_embeddings, e, None, config, device));
        DebertaV2Embeddings {
            word_embeddings: embedding(config.vocab_size, e, Some(config.pad_token_id), config, device),
            position_embeddings,
            token_type_embeddings: (config.type_vocab_size > 0)
                .then(|| embedding(config.type_vocab_size, e, None, config, device)),
            embed_proj: (e != config.hidden_size)
                .then(|| linear(e, config.hidden_size, false, config, device)),
            LayerNorm: layer_norm(config.hidden_size, config, device),
            dropout: dropout(config.hidden_dropout_prob),
            position_biased_input: config.position_biased_input,
        }
    }

    /// `position_embeddings(arange(len))` as `[1, len, embedding_size]`.
    pub fn absolute_positions(&self, len: usize, device: &B::Device) -> Option<Tensor<B, 3>> {
        self.position_embeddings.as_ref().map(|table| {
            let ids = Tensor::<B, 1, Int>::arange(0..len as i64, device).reshape([1, len]);
            table.forward(ids)
        })
    }

    /// Embeds token ids. Pre-training passes its own `inputs_embeds` (GDES shares E_G + E_delta)
    /// through [`Self::forward_embeds`] instead.
    pub fn forward(&self, batch: &Batch<B>, mask: &MaskContext<B>) -> Tensor<B, 3> {
        let inputs_embeds = self.word_embeddings.forward(batch.input_ids.clone());
        self.forward_embeds(inputs_embeds, batch.token_type_ids.as_ref(), mask)
    }

    pub fn forward_embeds(
        &self,
        inputs_embeds: Tensor<B, 3>,
        token_type_ids: Option<&Tensor<B, 2, Int>>,
        mask: &MaskContext<B>,
    ) -> Tensor<B, 3> {
        let [b, l, _] = inputs_embeds.dims();
        let device = inputs_embeds.device();
        let mut x = inputs_embeds;
        if self.position_biased_input {
            if let Some(pos) = self.absolute_positions(l, &device) {
                x = x + pos;
            }
        }
        if let Some(types) = &self.token_type_embeddings {
            let ids = token_type_ids.cloned().unwrap_or_else(|| Tensor::zeros([b, l], &device));
            x = x + types.forward(ids);
        }
        if let Some(proj) = &self.embed_proj {
            x = dense(proj, x);
        }
        let x = self.LayerNorm.forward(x) * mask.tokens.clone();
        self.dropout.forward(x)
    }
}

// ---------------------------------------------------------------------------------------------
// 3.2-3.3 The relative table, normalised once per forward, and the rows a length touches
// ---------------------------------------------------------------------------------------------

/// What every attention layer of one forward shares about relative positions.
#[derive(Debug, Clone)]
pub struct RelativeContext<B: Backend> {
    /// `LayerNorm_rel(rel_embeddings)` restricted to the rows this length reads: `[R, H]`.
    pub rel_embeddings: Tensor<B, 2>,
    /// The parameters `rel_embeddings` is computed from (the table, the LayerNorm's scale and
    /// bias, as 2-D): with the length, the key of every cache of results derived from it.
    pub sources: Vec<Tensor<B, 2>>,
    /// Row of `rel_embeddings` for each distance `r = i - j`, ascending from `-(L-1)` to `L-1`
    /// (`[2L-1]`): the p2c term reads `Qr` in this order.
    pub ascending: Tensor<B, 1, Int>,
    /// The same rows for descending distances (`L-1` down to `-(L-1)`): the c2p term's order.
    pub descending: Tensor<B, 1, Int>,
    /// `[1, L, L]` identity: transposes the p2c term inside a batched matmul (see `p2c_scores`).
    pub eye: Tensor<B, 3>,
}

/// `c: [B, heads, L, 2L-1]` -> `[B*heads*L, 2L-2]` with `out[(n, i), j] = c[n, i, L-1-i+j]` for
/// `j < L` (columns `L..` are padding): every query row reads a window of the per-distance
/// scores shifted by one column per row. One strided copy (reshape + slice), no index tensor.
fn skew<B: Backend>(c: Tensor<B, 4>) -> Tensor<B, 2> {
    let [b, h, l, r] = c.dims();
    let n = b * h;
    c.reshape([n, l * r]).slice([0..n, l - 1..l - 1 + l * (r - 1)]).reshape([n * l, r - 1])
}

/// Key/query projections of the relative rows, reused by an inference model on the CPU across
/// calls. Type-erased (the module derive keeps it as is through `map`/`load_record`, so it checks
/// the parameters it was computed from before every reuse).
#[derive(Clone, Default)]
pub struct RelativeProjectionCache(Arc<Mutex<Option<Box<dyn Any + Send + Sync>>>>);

impl core::fmt::Debug for RelativeProjectionCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RelativeProjectionCache")
    }
}

struct CachedProjections<B: Backend> {
    /// Everything the projections depend on: the relative rows' sources, weights, biases (all
    /// as 2-D).
    inputs: Vec<Tensor<B, 2>>,
    len: usize,
    projections: (Option<Tensor<B, 4>>, Option<Tensor<B, 4>>),
}

// ---------------------------------------------------------------------------------------------
// 3.4 Disentangled self-attention
// ---------------------------------------------------------------------------------------------

#[derive(Module, Debug)]
pub struct DisentangledSelfAttention<B: Backend> {
    pub query_proj: Linear<B>,
    pub key_proj: Linear<B>,
    pub value_proj: Linear<B>,
    /// Only with `share_att_key: false` (c2p / p2c respectively).
    pub pos_key_proj: Option<Linear<B>>,
    pub pos_query_proj: Option<Linear<B>>,
    pub pos_dropout: Dropout,
    pub dropout: Dropout,
    pub num_heads: usize,
    pub head_size: usize,
    pub relative_attention: bool,
    pub c2p: bool,
    pub p2c: bool,
    /// `sqrt(head_size * (1 + #pos_att_types))`.
    pub scale: f64,
    #[module(skip)]
    pub rel_cache: RelativeProjectionCache,
    /// `query_proj`, `key_proj`, `value_proj` in int8 after `quantize_int8` (docs/int8.md).
    #[module(skip)]
    pub int8: Int8Linears,
}

impl<B: Backend> DisentangledSelfAttention<B> {
    pub fn new(config: &DebertaConfig, device: &B::Device) -> Self {
        let (h, all) = (config.hidden_size, config.all_head_size());
        let t = config.pos_att_type;
        let separate = config.relative_attention && !config.share_att_key;
        DisentangledSelfAttention {
            query_proj: linear(h, all, true, config, device),
            key_proj: linear(h, all, true, config, device),
            value_proj: linear(h, all, true, config, device),
            pos_key_proj: (separate && t.c2p).then(|| linear(h, all, true, config, device)),
            pos_query_proj: (separate && t.p2c).then(|| linear(h, all, true, config, device)),
            pos_dropout: dropout(config.hidden_dropout_prob),
            dropout: dropout(config.attention_probs_dropout_prob),
            num_heads: config.num_attention_heads,
            head_size: config.attention_head_size,
            relative_attention: config.relative_attention,
            c2p: t.c2p,
            p2c: t.p2c,
            // HF counts pos_att_type in the scale even when relative attention is off.
            scale: ((config.attention_head_size * (1 + t.count())) as f64).sqrt(),
            rel_cache: RelativeProjectionCache::default(),
            int8: Int8Linears::default(),
        }
    }

    /// Packs the query, key and value projections as int8 (the relative projections stay f32:
    /// they are computed once per length and cached).
    pub fn quantize_int8(&mut self) -> Result<(), Int8Error> {
        self.int8 = Int8Linears::pack(&[
            (&self.query_proj, "attention.self.query_proj"),
            (&self.key_proj, "attention.self.key_proj"),
            (&self.value_proj, "attention.self.value_proj"),
        ])?;
        Ok(())
    }

    /// `(q, k, v)` projections: int8 when packed and applicable, with the input quantised once
    /// when queries and keys come from the same tensor.
    fn project(
        &self,
        hidden: Tensor<B, 3>,
        query: Tensor<B, 3>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) {
        if let Some([pq, pk, pv]) = self.int8.get([&self.query_proj, &self.key_proj, &self.value_proj]) {
            if fast::same_buffer(&hidden, &query) {
                let [q, k, v] = int8::dense_many(&[pq, pk, pv], hidden).try_into().expect("three");
                return (q, k, v);
            }
            let [k, v] = int8::dense_many(&[pk, pv], hidden).try_into().expect("two");
            return (int8::dense(pq, query, false, None), k, v);
        }
        let q = dense(&self.query_proj, query);
        let k = dense(&self.key_proj, hidden.clone());
        let v = dense(&self.value_proj, hidden);
        (q, k, v)
    }

    /// `[B, L, heads*d] -> [B, heads, L, d]`
    fn split_heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [b, l, _] = x.dims();
        x.reshape([b, l, self.num_heads, self.head_size]).swap_dims(1, 2)
    }

    /// Relative rows through a projection, one row per distance in `order`:
    /// `[R, H] -> [1, heads, 2L-1, d]`.
    fn split_rel(&self, proj: &Linear<B>, rel: Tensor<B, 2>, order: Tensor<B, 1, Int>) -> Tensor<B, 4> {
        let [r] = order.dims();
        let heads =
            dense(proj, rel).select(0, order).reshape([1, r, self.num_heads, self.head_size]).swap_dims(1, 2);
        if fast::fuses_attention::<B>(heads.dtype()) {
            fast::rel_layout(heads)
        } else {
            heads
        }
    }

    /// `(Kr, Qr)` for the c2p and p2c terms (`None` for a term not in `pos_att_type`), `Kr` in
    /// descending and `Qr` in ascending distance order. At inference on the CPU they are computed
    /// once per length and reused while the parameters they come from stay the same buffers.
    fn relative_projections(&self, rel: &RelativeContext<B>) -> (Option<Tensor<B, 4>>, Option<Tensor<B, 4>>) {
        let key_proj = self.pos_key_proj.as_ref().unwrap_or(&self.key_proj);
        let query_proj = self.pos_query_proj.as_ref().unwrap_or(&self.query_proj);
        let compute = || {
            let r = self.pos_dropout.forward(rel.rel_embeddings.clone());
            (
                self.c2p.then(|| self.split_rel(key_proj, r.clone(), rel.descending.clone())),
                self.p2c.then(|| self.split_rel(query_proj, r.clone(), rel.ascending.clone())),
            )
        };
        if !fast::caches_by_identity::<B>() {
            return compute();
        }
        // The key: the parameters the projections come from, compared by buffer identity only
        // (the relative rows are recomputed every forward, their sources are not).
        let mut inputs = rel.sources.clone();
        for (used, proj) in [(self.c2p, key_proj), (self.p2c, query_proj)] {
            if used {
                inputs.push(proj.weight.val());
                if let Some(bias) = &proj.bias {
                    inputs.push(bias.val().unsqueeze());
                }
            }
        }
        let [len] = rel.ascending.dims();
        let lock = || self.rel_cache.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = lock().as_ref().and_then(|c| c.downcast_ref::<CachedProjections<B>>()) {
            if cached.len == len
                && cached.inputs.len() == inputs.len()
                && cached.inputs.iter().zip(&inputs).all(|(a, b)| fast::same_buffer(a, b))
            {
                return cached.projections.clone();
            }
        }
        // Not under the lock: the computation may run rayon jobs, and a worker waiting in one
        // can pick up another batch half that wants this cache.
        let projections = compute();
        *lock() = Some(Box::new(CachedProjections { inputs, len, projections: projections.clone() }));
        projections
    }

    /// `hidden` gives keys and values; `query` (the EMD passes its own) gives queries.
    pub fn forward(
        &self,
        hidden: Tensor<B, 3>,
        query: Tensor<B, 3>,
        mask: &MaskContext<B>,
        rel: Option<&RelativeContext<B>>,
    ) -> Tensor<B, 3> {
        let [b, l, _] = query.dims();
        let (heads, d) = (self.num_heads, self.head_size);
        let (q, k, v) = self.project(hidden, query);
        if fast::fuses_attention::<B>(q.dtype()) {
            let (kr, qr) = match (self.relative_attention, rel) {
                (true, Some(rel)) => self.relative_projections(rel),
                _ => (None, None),
            };
            let padded = mask.blocked.is_some();
            // The probabilities' dropout mask, drawn at the point and in the way `Dropout::forward`
            // draws it, so that both paths take the same random numbers.
            let p = self.dropout.prob;
            let dropout = (p > 0.0 && B::ad_enabled(&q.device())).then(|| {
                let keep = 1.0 - p;
                let shape = [b, heads, l, l];
                let m = B::float_random(
                    shape.into(),
                    Distribution::Bernoulli(keep),
                    &q.device(),
                    q.dtype().into(),
                );
                (Tensor::from_primitive(TensorPrimitive::Float(m)), (1.0 / keep) as f32)
            });
            let (tokens, dims, scale) = (mask.tokens.clone(), (heads, d), self.scale as f32);
            return fast::attention(q, k, v, kr, qr, tokens, padded, dropout, dims, scale);
        }
        let (q, k, v) = (self.split_heads(q), self.split_heads(k), self.split_heads(v));

        // score[i,j] = (Q_i.K_j + Q_i.Kr[idx(i,j)] + K_j.Qr[idx(i,j)]) / s
        let mut scores = q.clone().matmul(k.clone().swap_dims(2, 3));
        if let (true, Some(rel)) = (self.relative_attention, rel) {
            let n = b * heads;
            let (kr, qr) = self.relative_projections(rel);
            if let Some(kr) = kr {
                // c[i, t] = Q_i . Kr[row of distance L-1-t]; (i, j) has distance i-j, so
                // column t = L-1-i+j: a window starting at L-1-i.
                let c = q.matmul(kr.swap_dims(2, 3));
                let c2p = if l == 1 { c.reshape([n, 1]) } else { skew(c).slice([0..n * l, 0..l]) };
                scores = (scores.reshape([n * l, l]) + c2p).reshape([b, heads, l, l]);
            }
            if let Some(qr) = qr {
                // p[j, t] = K_j . Qr[row of distance t-(L-1)]; (i, j) has distance i-j, so
                // column t = L-1-j+i: row j's window gives the term for every query i, i.e. the
                // transpose of what the scores need. An identity matmul transposes it on the way.
                let p = k.matmul(qr.swap_dims(2, 3));
                let p2c_t = if l == 1 {
                    p.reshape([n, 1, 1])
                } else {
                    skew(p).reshape([n, l, 2 * l - 2]).slice([0..n, 0..l, 0..l])
                };
                let p2c = rel.eye.clone().matmul(p2c_t.swap_dims(1, 2));
                scores = scores + p2c.reshape([b, heads, l, l]);
            }
        }
        let mut scores = scores / self.scale;
        if let Some(blocked) = &mask.blocked {
            // The compute dtype's most negative finite value (HF: torch.finfo(dtype).min): f32::MIN
            // rounds to -inf in bf16, and a padding query's all-blocked row then softmaxes to NaN.
            let min = match scores.dtype() {
                burn::tensor::DType::BF16 => burn::tensor::bf16::MIN.to_f32(),
                burn::tensor::DType::F16 => burn::tensor::f16::MIN.to_f32(),
                _ => f32::MIN,
            };
            scores = scores.mask_fill(blocked.clone(), min);
        }
        let probs = self.dropout.forward(activation::softmax(scores, 3));
        // Merge heads by concatenating per-head slices (a strided [B, L, heads, d] reshape copies
        // element by element on some backends).
        let context = probs.matmul(v);
        let parts =
            (0..heads).map(|h| context.clone().slice([0..b, h..h + 1, 0..l, 0..d]).reshape([b, l, d]));
        Tensor::cat(parts.collect(), 2)
    }
}

// ---------------------------------------------------------------------------------------------
// 3.5 The post-LN layer
// ---------------------------------------------------------------------------------------------

#[derive(Module, Debug)]
pub struct DebertaV2SelfOutput<B: Backend> {
    pub dense: Linear<B>,
    pub LayerNorm: LayerNorm<B>,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct DebertaV2Attention<B: Backend> {
    /// `attention.self` in checkpoints.
    pub self_attn: DisentangledSelfAttention<B>,
    pub output: DebertaV2SelfOutput<B>,
}

#[derive(Module, Debug)]
pub struct DebertaV2Intermediate<B: Backend> {
    pub dense: Linear<B>,
    pub act: Activation,
}

#[derive(Module, Debug)]
pub struct DebertaV2Output<B: Backend> {
    pub dense: Linear<B>,
    pub LayerNorm: LayerNorm<B>,
    pub dropout: Dropout,
}

#[derive(Module, Debug)]
pub struct DebertaV2Layer<B: Backend> {
    pub attention: DebertaV2Attention<B>,
    pub intermediate: DebertaV2Intermediate<B>,
    pub output: DebertaV2Output<B>,
    /// `attention.output.dense`, `intermediate.dense`, `output.dense` in int8 after
    /// `quantize_int8` (docs/int8.md).
    #[module(skip)]
    pub int8: Int8Linears,
}

impl<B: Backend> DebertaV2Layer<B> {
    pub fn new(config: &DebertaConfig, device: &B::Device) -> Self {
        let (h, all, i) = (config.hidden_size, config.all_head_size(), config.intermediate_size);
        DebertaV2Layer {
            attention: DebertaV2Attention {
                self_attn: DisentangledSelfAttention::new(config, device),
                output: DebertaV2SelfOutput {
                    dense: linear(all, h, true, config, device),
                    LayerNorm: layer_norm(h, config, device),
                    dropout: dropout(config.hidden_dropout_prob),
                },
            },
            intermediate: DebertaV2Intermediate {
                dense: linear(h, i, true, config, device),
                act: config.hidden_act,
            },
            output: DebertaV2Output {
                dense: linear(i, h, true, config, device),
                LayerNorm: layer_norm(h, config, device),
                dropout: dropout(config.hidden_dropout_prob),
            },
            int8: Int8Linears::default(),
        }
    }

    /// Packs this layer's six encoder Linears as int8 (weights per output channel), for the CPU
    /// inference path of docs/int8.md. Errors on other backends than Flex.
    pub fn quantize_int8(&mut self) -> Result<(), Int8Error> {
        self.attention.self_attn.quantize_int8()?;
        self.int8 = Int8Linears::pack(&[
            (&self.attention.output.dense, "attention.output.dense"),
            (&self.intermediate.dense, "intermediate.dense"),
            (&self.output.dense, "output.dense"),
        ])?;
        Ok(())
    }

    /// `x1 = LN(dropout(dense_o(attn)) + query)`, `x2 = LN(dropout(dense_2(act(dense_i(x1)))) + x1)`.
    pub fn forward(
        &self,
        hidden: Tensor<B, 3>,
        query: Option<Tensor<B, 3>>,
        mask: &MaskContext<B>,
        rel: Option<&RelativeContext<B>>,
    ) -> Tensor<B, 3> {
        let query = query.unwrap_or_else(|| hidden.clone());
        let attn = self.attention.self_attn.forward(hidden, query.clone(), mask, rel);
        let out = &self.attention.output;
        let act = self.intermediate.act;
        if let Some([po, pi, pf]) = self.int8.get([&out.dense, &self.intermediate.dense, &self.output.dense])
        {
            // Dropout is the identity here (int8 runs at inference only), so the residual adds
            // fuse into the products' epilogues.
            let x1 = out.LayerNorm.forward(int8::dense(po, attn, false, Some(query)));
            let inner = if fast::fuses(act) {
                int8::dense(pi, x1.clone(), true, None)
            } else {
                split_sequence(int8::dense(pi, x1.clone(), false, None), |x| activate(act, x))
            };
            return self.output.LayerNorm.forward(int8::dense(pf, inner, false, Some(x1)));
        }
        let x1 = out.LayerNorm.forward(out.dropout.forward(dense(&out.dense, attn)) + query);
        let inner = if fast::applies::<B>(x1.dtype()) && fast::fuses(act) {
            fast::dense(&self.intermediate.dense, x1.clone(), true)
        } else {
            split_sequence(dense(&self.intermediate.dense, x1.clone()), |x| activate(act, x))
        };
        let o = &self.output;
        o.LayerNorm.forward(o.dropout.forward(dense(&o.dense, inner)) + x1)
    }
}

/// DeBERTa-v2 xlarge/xxlarge: a convolution beside layer 0 (`conv_kernel_size > 0`).
#[derive(Module, Debug)]
pub struct ConvLayer<B: Backend> {
    pub conv: Conv1d<B>,
    pub LayerNorm: LayerNorm<B>,
    pub dropout: Dropout,
    pub conv_act: Activation,
}

impl<B: Backend> ConvLayer<B> {
    pub fn new(config: &DebertaConfig, device: &B::Device) -> Self {
        let (h, k) = (config.hidden_size, config.conv_kernel_size);
        let mut conv = Conv1dConfig::new(h, h, k)
            .with_groups(config.conv_groups)
            .with_padding(PaddingConfig1d::Explicit((k - 1) / 2, (k - 1) / 2))
            .with_initializer(Initializer::Normal { mean: 0.0, std: config.initializer_range })
            .init(device);
        conv.bias = Some(Param::from_tensor(Tensor::zeros([h], device)));
        ConvLayer {
            conv,
            LayerNorm: layer_norm(h, config, device),
            dropout: dropout(config.hidden_dropout_prob),
            conv_act: config.conv_act,
        }
    }

    /// `LN(residual + act(dropout(conv(embeddings) masked))) * mask`
    pub fn forward(
        &self,
        embeddings: Tensor<B, 3>,
        residual: Tensor<B, 3>,
        mask: &MaskContext<B>,
    ) -> Tensor<B, 3> {
        let out = self.conv.forward(embeddings.swap_dims(1, 2)).swap_dims(1, 2) * mask.tokens.clone();
        let out = activate(self.conv_act, self.dropout.forward(out));
        self.LayerNorm.forward(residual + out) * mask.tokens.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// The encoder: layers, the relative embedding table and its LayerNorm, the optional conv
// ---------------------------------------------------------------------------------------------

#[derive(Module, Debug)]
pub struct DebertaV2Encoder<B: Backend> {
    pub layer: Vec<DebertaV2Layer<B>>,
    pub rel_embeddings: Option<Embedding<B>>,
    /// Normalises `rel_embeddings` (`norm_rel_ebd: "layer_norm"`).
    pub LayerNorm: Option<LayerNorm<B>>,
    pub conv: Option<ConvLayer<B>>,
    pub relative_tables: RelativeTableCache,
    pub num_heads: usize,
}

/// Every layer's output; `hidden_states[0]` is the embedding output (HF's `all_hidden_states`).
#[derive(Debug, Clone)]
pub struct EncoderOutput<B: Backend> {
    pub hidden_states: Vec<Tensor<B, 3>>,
    pub mask: MaskContext<B>,
    pub rel: Option<RelativeContext<B>>,
}

impl<B: Backend> EncoderOutput<B> {
    pub fn last_hidden_state(&self) -> Tensor<B, 3> {
        self.hidden_states.last().expect("at least the embeddings").clone()
    }
}

impl<B: Backend> DebertaV2Encoder<B> {
    pub fn new(config: &DebertaConfig, device: &B::Device) -> Self {
        let span = config.rel_span();
        DebertaV2Encoder {
            layer: (0..config.num_hidden_layers).map(|_| DebertaV2Layer::new(config, device)).collect(),
            rel_embeddings: config
                .relative_attention
                .then(|| embedding(2 * span, config.hidden_size, None, config, device)),
            LayerNorm: config.norm_rel_ebd_layer_norm.then(|| layer_norm(config.hidden_size, config, device)),
            conv: (config.conv_kernel_size > 0).then(|| ConvLayer::new(config, device)),
            relative_tables: RelativeTableCache::new(RelativeScheme {
                buckets: config.position_buckets,
                max_position: config.max_relative_positions() as i64,
                span: span as i64,
            }),
            num_heads: config.num_attention_heads,
        }
    }

    /// The normalised relative table restricted to the rows a `[b, len]` batch reads, with the
    /// per-distance row orders. `None` without relative attention.
    pub fn relative_context(&self, len: usize, device: &B::Device) -> Option<RelativeContext<B>> {
        let table = self.rel_embeddings.as_ref()?;
        let t = self.relative_tables.get(len);
        let [_, h] = table.weight.dims();
        let mut sources = vec![table.weight.val()];
        let rows = sources[0].clone().slice([t.first_row..t.first_row + t.num_rows, 0..h]);
        let rows = match &self.LayerNorm {
            Some(ln) => {
                sources.push(ln.gamma.val().unsqueeze());
                sources.push(ln.beta.val().unsqueeze());
                ln.forward(rows)
            }
            None => rows,
        };
        let order = |v: Vec<i64>| Tensor::<B, 1, Int>::from_data(TensorData::new(v, [2 * len - 1]), device);
        Some(RelativeContext {
            rel_embeddings: rows,
            sources,
            ascending: order(t.by_distance.clone()),
            descending: order(t.by_distance.iter().rev().copied().collect()),
            eye: Tensor::eye(len, device).unsqueeze(),
        })
    }

    pub fn forward(&self, embeddings: Tensor<B, 3>, mask: MaskContext<B>) -> EncoderOutput<B> {
        let [b, l, _] = embeddings.dims();
        let device = embeddings.device();
        let rel = self.relative_context(l, &device);
        // Two or more rows on the CPU: each half of the batch on its own worker (rows are
        // independent; `fast::splits_work` says where this pays).
        let hidden_states = if b >= 2 && fast::splits_work::<B>() {
            let half = b / 2;
            let run = |rows: std::ops::Range<usize>| {
                let x = embeddings.clone().narrow(0, rows.start, rows.len());
                self.layers(x, &mask.rows(rows), rel.as_ref())
            };
            let (lo, hi) = rayon::join(|| run(0..half), || run(half..b));
            lo.into_iter().zip(hi).map(|(x, y)| Tensor::cat(vec![x, y], 0)).collect()
        } else {
            self.layers(embeddings, &mask, rel.as_ref())
        };
        EncoderOutput { hidden_states, mask, rel }
    }

    /// The embedding output and every layer's output.
    fn layers(
        &self,
        embeddings: Tensor<B, 3>,
        mask: &MaskContext<B>,
        rel: Option<&RelativeContext<B>>,
    ) -> Vec<Tensor<B, 3>> {
        let mut hidden_states = Vec::with_capacity(self.layer.len() + 1);
        hidden_states.push(embeddings.clone());
        let mut x = embeddings.clone();
        for (i, layer) in self.layer.iter().enumerate() {
            x = layer.forward(x, None, mask, rel);
            if i == 0 {
                if let Some(conv) = &self.conv {
                    x = conv.forward(embeddings.clone(), x, mask);
                }
            }
            hidden_states.push(x.clone());
        }
        hidden_states
    }
}

// ---------------------------------------------------------------------------------------------
// The base model
// ---------------------------------------------------------------------------------------------

#[derive(Module, Debug)]
pub struct DebertaV2Model<B: Backend> {
    pub embeddings: DebertaV2Embeddings<B>,
    pub encoder: DebertaV2Encoder<B>,
}

impl<B: Backend> DebertaV2Model<B> {
    pub fn new(config: &DebertaConfig, with_position_table: bool, device: &B::Device) -> Self {
        DebertaV2Model {
            embeddings: DebertaV2Embeddings::new(config, with_position_table, device),
            encoder: DebertaV2Encoder::new(config, device),
        }
    }

    pub fn mask_context(&self, batch: &Batch<B>) -> MaskContext<B> {
        MaskContext::new(&batch.attention_mask, self.encoder.num_heads)
    }

    pub fn forward(&self, batch: &Batch<B>) -> EncoderOutput<B> {
        let mask = self.mask_context(batch);
        let x = self.embeddings.forward(batch, &mask);
        self.encoder.forward(x, mask)
    }

    /// Forward from precomputed word embeddings (`[B, L, embedding_size]`), as GDES needs.
    pub fn forward_embeds(&self, inputs_embeds: Tensor<B, 3>, batch: &Batch<B>) -> EncoderOutput<B> {
        let mask = self.mask_context(batch);
        let x = self.embeddings.forward_embeds(inputs_embeds, batch.token_type_ids.as_ref(), &mask);
        self.encoder.forward(x, mask)
    }
}
