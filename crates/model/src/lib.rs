//! DeBERTa-v2/v3 (He, Gao, Chen 2021) for burn: configuration, the disentangled-attention
//! encoder, every task head, and their training losses. Generic over the backend.

pub mod config;
pub mod deberta;
pub mod fast;
mod fast_grad;
pub mod heads;
pub mod int8;
pub mod loss;
pub mod memory;
pub mod position;

pub use config::{Activation, ConfigError, DebertaConfig, Head};
pub use deberta::{Batch, DebertaV2Model, EncoderOutput};
pub use heads::{DebertaModel, Logits, ModelOutput};
