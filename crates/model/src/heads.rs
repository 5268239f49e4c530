//! 3.6 Task heads (docs/model.md), named as in checkpoints, and the task model that puts one on the encoder.

#![allow(non_snake_case)]

use crate::config::{Activation, DebertaConfig, Head};
use crate::deberta::LayerNorm;
use crate::deberta::{
    activate, dropout, layer_norm, linear, Batch, DebertaV2Layer, DebertaV2Model, EncoderOutput,
};
use burn::module::Param;
use burn::nn::{Dropout, Linear};
use burn::prelude::*;

/// `gelu(dense(dropout_0(h[:, 0])))`: the [CLS] state, for sequence-level heads.
#[derive(Module, Debug)]
pub struct ContextPooler<B: Backend> {
    pub dense: Linear<B>,
    pub dropout: Dropout,
    pub act: Activation,
}

impl<B: Backend> ContextPooler<B> {
    pub fn new(config: &DebertaConfig, device: &B::Device) -> Self {
        let h = config.pooler_hidden_size;
        ContextPooler {
            dense: linear(h, h, true, config, device),
            dropout: dropout(config.pooler_dropout),
            act: config.pooler_hidden_act,
        }
    }

    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [b, _, h] = hidden.dims();
        let cls = hidden.slice([0..b, 0..1]).reshape([b, h]);
        activate(self.act, self.dense.forward(self.dropout.forward(cls)))
    }
}

/// The MLM transform + tied decoder: `LN(act(dense(h))) @ E_word^T + bias`.
/// Lives at `lm_predictions.lm_head.*` (HF `legacy: false`, the official code, and the Enhanced
/// Mask Decoder); legacy `cls.predictions.transform.*` files are renamed on load.
#[derive(Module, Debug)]
pub struct LmHead<B: Backend> {
    pub dense: Linear<B>,
    pub LayerNorm: LayerNorm<B>,
    pub bias: Param<Tensor<B, 1>>,
    pub act: Activation,
}

#[derive(Module, Debug)]
pub struct LmPredictions<B: Backend> {
    pub lm_head: LmHead<B>,
}

impl<B: Backend> LmPredictions<B> {
    pub fn new(config: &DebertaConfig, device: &B::Device) -> Self {
        let e = config.embedding_size;
        LmPredictions {
            lm_head: LmHead {
                dense: linear(config.hidden_size, e, true, config, device),
                LayerNorm: layer_norm(e, config, device),
                bias: Param::from_tensor(Tensor::zeros([config.vocab_size], device)),
                act: config.hidden_act,
            },
        }
    }

    /// `hidden: [B, L, H]`, `word_embeddings: [V, E]` -> logits `[B, L, V]`.
    pub fn forward(&self, hidden: Tensor<B, 3>, word_embeddings: Tensor<B, 2>) -> Tensor<B, 3> {
        let head = &self.lm_head;
        let x = head.LayerNorm.forward(activate(head.act, head.dense.forward(hidden)));
        let [v] = head.bias.dims();
        x.matmul(word_embeddings.transpose().unsqueeze()) + head.bias.val().reshape([1, 1, v])
    }
}

/// Replaced-token detection (the discriminator): `s = LN(h + h[:, 0])`, `act(dense(s))`,
/// `classifier -> [B, L]` logits (official `LMMaskPredictionHead`).
#[derive(Module, Debug)]
pub struct MaskPredictions<B: Backend> {
    pub dense: Linear<B>,
    pub LayerNorm: LayerNorm<B>,
    pub classifier: Linear<B>,
    pub act: Activation,
}

impl<B: Backend> MaskPredictions<B> {
    pub fn new(config: &DebertaConfig, device: &B::Device) -> Self {
        let h = config.hidden_size;
        MaskPredictions {
            dense: linear(h, h, true, config, device),
            LayerNorm: layer_norm(h, config, device),
            classifier: linear(h, 1, true, config, device),
            act: config.hidden_act,
        }
    }

    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [b, l, _] = hidden.dims();
        let cls = hidden.clone().slice([0..b, 0..1]);
        let s = self.LayerNorm.forward(hidden + cls);
        let s = activate(self.act, self.dense.forward(s));
        self.classifier.forward(s).reshape([b, l])
    }
}

/// What a forward returns: the encoder's states plus the head's outputs under HF's names.
#[derive(Debug, Clone)]
pub struct ModelOutput<B: Backend> {
    pub encoder: EncoderOutput<B>,
    pub logits: Option<Logits<B>>,
    pub start_logits: Option<Tensor<B, 2>>,
    pub end_logits: Option<Tensor<B, 2>>,
}

impl<B: Backend> ModelOutput<B> {
    pub fn last_hidden_state(&self) -> Tensor<B, 3> {
        self.encoder.last_hidden_state()
    }
}

/// Head logits: `[B, labels]`, `[B, C]` (multiple choice) or `[B, L]` (RTD) are rank 2;
/// `[B, L, labels]` (tokens) and `[B, L, V]` (MLM) are rank 3.
#[derive(Debug, Clone)]
pub enum Logits<B: Backend> {
    Rank2(Tensor<B, 2>),
    Rank3(Tensor<B, 3>),
}

impl<B: Backend> Logits<B> {
    pub fn to_data(&self) -> TensorData {
        match self {
            Logits::Rank2(t) => t.to_data(),
            Logits::Rank3(t) => t.to_data(),
        }
    }
}

/// A DeBERTa encoder with at most one task head. Optional fields keep checkpoint paths flat:
/// `deberta.*`, `pooler.*`, `classifier.*`, `qa_outputs.*`, `lm_predictions.*`, `mask_predictions.*`.
#[derive(Module, Debug)]
pub struct DebertaModel<B: Backend> {
    pub deberta: DebertaV2Model<B>,
    pub pooler: Option<ContextPooler<B>>,
    pub classifier: Option<Linear<B>>,
    pub qa_outputs: Option<Linear<B>>,
    pub lm_predictions: Option<LmPredictions<B>>,
    pub mask_predictions: Option<MaskPredictions<B>>,
    /// Dropout before `classifier` (`cls_dropout`, or `hidden_dropout_prob` for tokens).
    pub dropout: Dropout,
    pub head: HeadKind,
}

/// [`Head`] as a module constant (the derive wants a type it can clone into the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadKind(pub Head);

impl<B: Backend> DebertaModel<B> {
    pub fn new(config: &DebertaConfig, head: Head, device: &B::Device) -> Self {
        let h = config.hidden_size;
        let n = config.num_labels;
        let pooled = matches!(head, Head::SequenceClassification | Head::MultipleChoice);
        let classifier = match head {
            Head::SequenceClassification => Some(linear(h, n, true, config, device)),
            Head::MultipleChoice => Some(linear(h, 1, true, config, device)),
            Head::TokenClassification => Some(linear(h, n, true, config, device)),
            _ => None,
        };
        DebertaModel {
            deberta: DebertaV2Model::new(config, head == Head::EnhancedMaskDecoderLm, device),
            pooler: pooled.then(|| ContextPooler::new(config, device)),
            classifier,
            qa_outputs: (head == Head::QuestionAnswering).then(|| linear(h, n, true, config, device)),
            lm_predictions: matches!(head, Head::MaskedLm | Head::EnhancedMaskDecoderLm)
                .then(|| LmPredictions::new(config, device)),
            mask_predictions: (head == Head::ReplacedTokenDetection)
                .then(|| MaskPredictions::new(config, device)),
            dropout: dropout(if head == Head::TokenClassification {
                config.hidden_dropout_prob
            } else {
                config.cls_dropout
            }),
            head: HeadKind(head),
        }
    }

    /// Packs every encoder layer's Linear weights as int8 for CPU inference (docs/int8.md):
    /// the forward then runs them in int8 on Flex while they hold the weights packed here.
    /// Embeddings, relative positions, LayerNorms, attention scores and the head stay f32.
    pub fn quantize_int8(&mut self) -> Result<(), crate::int8::Int8Error> {
        self.deberta.encoder.layer.iter_mut().try_for_each(|l| l.quantize_int8())
    }

    pub fn head(&self) -> Head {
        self.head.0
    }

    /// Runs the encoder and the head. Multiple choice takes `[B*C, L]` rows and `choices = C`.
    pub fn forward(&self, batch: &Batch<B>, choices: Option<usize>) -> ModelOutput<B> {
        crate::fast::on_workers::<B, _>(|| {
            let encoder = self.deberta.forward(batch);
            self.head_forward(encoder, choices)
        })
    }

    /// The head on an encoder output (pre-training runs the encoder itself, for GDES).
    pub fn head_forward(&self, encoder: EncoderOutput<B>, choices: Option<usize>) -> ModelOutput<B> {
        let hidden = encoder.last_hidden_state();
        let [b, _, _] = hidden.dims();
        let mut out = ModelOutput { encoder, logits: None, start_logits: None, end_logits: None };
        let word = || self.deberta.embeddings.word_embeddings.weight.val();
        match self.head() {
            Head::Base => {}
            Head::SequenceClassification | Head::MultipleChoice => {
                let pooled = self.pooler.as_ref().expect("pooler").forward(hidden);
                let logits =
                    self.classifier.as_ref().expect("classifier").forward(self.dropout.forward(pooled));
                let logits = match (self.head(), choices) {
                    (Head::MultipleChoice, Some(c)) => logits.reshape([b / c, c]),
                    _ => logits,
                };
                out.logits = Some(Logits::Rank2(logits));
            }
            Head::TokenClassification => {
                let classifier = self.classifier.as_ref().expect("classifier");
                out.logits = Some(Logits::Rank3(classifier.forward(self.dropout.forward(hidden))));
            }
            Head::QuestionAnswering => {
                let logits = self.qa_outputs.as_ref().expect("qa_outputs").forward(hidden);
                let [b, l, _] = logits.dims();
                out.start_logits = Some(logits.clone().slice([0..b, 0..l, 0..1]).reshape([b, l]));
                out.end_logits = Some(logits.slice([0..b, 0..l, 1..2]).reshape([b, l]));
            }
            Head::MaskedLm => {
                let lm = self.lm_predictions.as_ref().expect("lm_predictions");
                out.logits = Some(Logits::Rank3(lm.forward(hidden, word())));
            }
            Head::ReplacedTokenDetection => {
                let rtd = self.mask_predictions.as_ref().expect("mask_predictions");
                out.logits = Some(Logits::Rank2(rtd.forward(hidden)));
            }
            Head::EnhancedMaskDecoderLm => {
                let states = self.enhanced_mask_decoder(&out.encoder);
                let lm = self.lm_predictions.as_ref().expect("lm_predictions");
                out.logits = Some(Logits::Rank3(lm.forward(states, word())));
            }
        }
        out
    }

    /// The Enhanced Mask Decoder (official `EnhancedMaskDecoder.emd_context_layer`): from the
    /// second-to-last layer output `h`, `q = P[positions] + h`, then the last encoder layer twice
    /// with `q` as query and `h` as keys/values (residual = query). Rows are independent, so the
    /// caller may keep only the masked ones.
    pub fn enhanced_mask_decoder(&self, encoder: &EncoderOutput<B>) -> Tensor<B, 3> {
        let states = &encoder.hidden_states;
        let h = states[states.len() - 2].clone();
        let [_, l, _] = h.dims();
        let positions = self
            .deberta
            .embeddings
            .absolute_positions(l, &h.device())
            .expect("the EMD generator keeps deberta.embeddings.position_embeddings");
        let last: &DebertaV2Layer<B> = self.deberta.encoder.layer.last().expect("layers");
        let mut query = positions + h.clone();
        for _ in 0..2 {
            query = last.forward(h.clone(), Some(query), &encoder.mask, encoder.rel.as_ref());
        }
        query
    }
}
