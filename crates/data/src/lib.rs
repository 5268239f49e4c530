//! Data for pre-training and fine-tuning: the corpus token cache and its 510-token lines
//! (`corpus`), and the fine-tuning tasks' file formats and official metrics.

pub mod corpus;
