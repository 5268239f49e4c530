//! DeBERTaV3 pre-training (docs/pretraining.md): the official masking rule, AdamW as the official
//! code runs it, and one replaced-token-detection step with each embedding-sharing variant the
//! paper compares (GDES, ES, NES).

pub mod debug;
pub mod finetune;
pub mod masking;
pub mod metrics;
pub mod optim;
pub mod pretrain;
pub mod rtd;
pub mod state;
pub mod validate;
