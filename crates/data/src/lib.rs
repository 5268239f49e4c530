//! Data for pre-training and fine-tuning: the corpus token cache and its 510-token lines
//! (`corpus`), and for fine-tuning the task file formats and model inputs (`tasks`, with SQuAD's
//! windows and answer decoding in `squad`) and the official metrics (`metrics`).

pub mod corpus;
pub mod metrics;
pub mod squad;
pub mod tasks;
