//! The DeBERTa-v2/v3 encoder, top to bottom as DESIGN section 3 (and HF's
//! `modeling_deberta_v2.py`) lays it out. Field names are the checkpoint names, so a checkpoint
//! key is a path through these structs (`self` is a Rust keyword: that one field is `self_attn`).

#![allow(non_snake_case)] // `LayerNorm` fields mirror the checkpoint names.

use crate::config::{Activation, DebertaConfig};
use crate::position::{RelativeScheme, RelativeTableCache};
use burn::module::{Initializer, Param};
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig,
    PaddingConfig1d,
};
use burn::prelude::*;
use burn::tensor::activation;

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
    LayerNormConfig::new(dim).with_epsilon(config.layer_norm_eps).init(device)
}

pub(crate) fn dropout(p: f64) -> Dropout {
    DropoutConfig::new(p).init()
}

pub fn activate<B: Backend, const D: usize>(act: Activation, x: Tensor<B, D>) -> Tensor<B, D> {
    match act {
        Activation::Gelu => activation::gelu(x),
        Activation::GeluTanh => activation::gelu_approximate(x),
        Activation::Relu => activation::relu(x),
        Activation::Tanh => activation::tanh(x),
        Activation::Silu => activation::silu(x),
    }
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
    /// `[B, heads, L, L]`, true where query i may NOT attend to key j (`!(m_i & m_j)`).
    pub blocked: Tensor<B, 4, Bool>,
}

impl<B: Backend> MaskContext<B> {
    pub fn new(attention_mask: &Tensor<B, 2, Int>, heads: usize) -> Self {
        let [b, l] = attention_mask.dims();
        let m = attention_mask.clone().equal_elem(1);
        // HF: extended = m[:, None, None, :]; mask = extended * extended.squeeze(-2).unsqueeze(-1)
        let keys = m.clone().reshape([b, 1, 1, l]).expand([b, heads, l, l]);
        let queries = m.clone().reshape([b, 1, l, 1]).expand([b, heads, l, l]);
        let allowed = keys.bool_and(queries);
        MaskContext { tokens: m.float().reshape([b, l, 1]), blocked: allowed.bool_not() }
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
            x = proj.forward(x);
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
    /// Row of `rel_embeddings` for (query i, key j), expanded to `[B, heads, L, L]`.
    pub index: Tensor<B, 4, Int>,
    /// The same index transposed (row for (i, j) stored at [j, i]) for the p2c gather.
    pub index_t: Tensor<B, 4, Int>,
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
        }
    }

    /// `[B, L, heads*d] -> [B, heads, L, d]`
    fn split_heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [b, l, _] = x.dims();
        x.reshape([b, l, self.num_heads, self.head_size]).swap_dims(1, 2)
    }

    /// Relative rows through a projection: `[R, H] -> [1, heads, R, d]`.
    fn split_rel(&self, proj: &Linear<B>, rel: Tensor<B, 2>) -> Tensor<B, 4> {
        let [r, _] = rel.dims();
        proj.forward(rel).reshape([1, r, self.num_heads, self.head_size]).swap_dims(1, 2)
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
        let q = self.split_heads(self.query_proj.forward(query));
        let k = self.split_heads(self.key_proj.forward(hidden.clone()));
        let v = self.split_heads(self.value_proj.forward(hidden));

        // score[i,j] = (Q_i.K_j + Q_i.Kr[idx(i,j)] + K_j.Qr[idx(i,j)]) / s
        let mut scores = q.clone().matmul(k.clone().swap_dims(2, 3));
        if let (true, Some(rel)) = (self.relative_attention, rel) {
            let r = self.pos_dropout.forward(rel.rel_embeddings.clone());
            if self.c2p {
                let kr = self.split_rel(self.pos_key_proj.as_ref().unwrap_or(&self.key_proj), r.clone());
                // [B, heads, L, R] -> pick column idx(i, j) for each key j
                let c2p = q.matmul(kr.swap_dims(2, 3));
                scores = scores + c2p.gather(3, rel.index.clone());
            }
            if self.p2c {
                let qr = self.split_rel(self.pos_query_proj.as_ref().unwrap_or(&self.query_proj), r);
                // [B, heads, L(keys), R]: row j, column idx(i, j), then transpose to [i, j]
                let p2c = k.matmul(qr.swap_dims(2, 3));
                scores = scores + p2c.gather(3, rel.index_t.clone()).swap_dims(2, 3);
            }
        }
        let scores = (scores / self.scale).mask_fill(mask.blocked.clone(), f32::MIN);
        let probs = self.dropout.forward(activation::softmax(scores, 3));
        probs.matmul(v).swap_dims(1, 2).reshape([b, l, self.num_heads * self.head_size])
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
        }
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
        let x1 = out.LayerNorm.forward(out.dropout.forward(out.dense.forward(attn)) + query);
        let inner = activate(self.intermediate.act, self.intermediate.dense.forward(x1.clone()));
        let o = &self.output;
        o.LayerNorm.forward(o.dropout.forward(o.dense.forward(inner)) + x1)
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
    /// gather indices. `None` without relative attention.
    pub fn relative_context(&self, b: usize, len: usize, device: &B::Device) -> Option<RelativeContext<B>> {
        let table = self.rel_embeddings.as_ref()?;
        let t = self.relative_tables.get(len);
        let [_, h] = table.weight.dims();
        let rows = table.weight.val().slice([t.first_row..t.first_row + t.num_rows, 0..h]);
        let rows = match &self.LayerNorm {
            Some(ln) => ln.forward(rows),
            None => rows,
        };
        let index = Tensor::<B, 2, Int>::from_data(TensorData::new(t.index.clone(), [len, len]), device);
        let expand =
            |ix: Tensor<B, 2, Int>| ix.reshape([1, 1, len, len]).expand([b, self.num_heads, len, len]);
        Some(RelativeContext {
            rel_embeddings: rows,
            index_t: expand(index.clone().transpose()),
            index: expand(index),
        })
    }

    pub fn forward(&self, embeddings: Tensor<B, 3>, mask: MaskContext<B>) -> EncoderOutput<B> {
        let [b, l, _] = embeddings.dims();
        let rel = self.relative_context(b, l, &embeddings.device());
        let mut hidden_states = Vec::with_capacity(self.layer.len() + 1);
        hidden_states.push(embeddings.clone());
        let mut x = embeddings.clone();
        for (i, layer) in self.layer.iter().enumerate() {
            x = layer.forward(x, None, &mask, rel.as_ref());
            if i == 0 {
                if let Some(conv) = &self.conv {
                    x = conv.forward(embeddings.clone(), x, &mask);
                }
            }
            hidden_states.push(x.clone());
        }
        EncoderOutput { hidden_states, mask, rel }
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
