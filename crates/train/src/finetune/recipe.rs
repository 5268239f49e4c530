//! Per-task defaults. The GLUE ones are the official DeBERTaV3-large scripts';
//! every flag overrides them. They were tuned for a 434M-parameter model: a small model usually
//! wants a larger learning rate (e.g. 1e-4 to 1e-3 for `tiny`).
//!
//! Not in those scripts, chosen here (and so documented): warmup for CoLA and STS-B (100 steps) and
//! QNLI and QQP (500), which the scripts leave out; SWAG 3 epochs, 1e-5, batch 32, 10% warmup,
//! length 128 (HF `run_swag`'s shape with DeBERTa's small rates); SQuAD 3 epochs, 1e-5, batch 32,
//! 10% warmup, length 384 / stride 128 (HF `run_qa`'s windows); CoNLL-2003 5 epochs, 2e-5,
//! batch 16, 10% warmup, length 256; XNLI is MNLI's recipe (one trains on MNLI); generic
//! CSV/JSONL 3 epochs, 2e-5, batch 32, 10% warmup, length 128. Where the scripts give no classifier
//! dropout the model config's applies (`cls_dropout`, else `hidden_dropout_prob`).

use super::task::Task;
use deberta_data::tasks::glue::GlueTask;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Warmup {
    Steps(u64),
    /// A fraction of the optimiser steps.
    Ratio(f64),
}

impl Warmup {
    pub fn steps(self, total: u64) -> u64 {
        match self {
            Warmup::Steps(n) => n,
            Warmup::Ratio(r) => (r * total as f64).round() as u64,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub warmup: Warmup,
    /// Classifier dropout (`None`: the model config's).
    pub cls_dropout: Option<f64>,
    pub max_length: usize,
}

pub fn recipe(task: &Task) -> Recipe {
    let r = |epochs, lr, batch_size, warmup, cls_dropout, max_length| Recipe {
        epochs,
        lr,
        batch_size,
        warmup,
        cls_dropout,
        max_length,
    };
    use Warmup::{Ratio, Steps};
    match task {
        Task::Glue(t) => match t {
            GlueTask::Mnli => r(2, 7e-6, 64, Steps(500), Some(0.3), 256),
            GlueTask::Mrpc => r(6, 6e-6, 32, Steps(50), Some(0.2), 128),
            GlueTask::Rte => r(6, 1e-5, 32, Steps(50), Some(0.3), 320),
            GlueTask::Sst2 => r(8, 6e-6, 32, Steps(500), None, 128),
            GlueTask::Cola => r(10, 5.5e-6, 32, Steps(100), None, 64),
            GlueTask::Qnli => r(6, 7e-6, 64, Steps(500), None, 512),
            GlueTask::Qqp => r(6, 1e-5, 64, Steps(500), None, 320),
            GlueTask::Stsb => r(4, 7e-6, 32, Steps(100), None, 128),
        },
        Task::Xnli { .. } => r(2, 7e-6, 64, Steps(500), Some(0.3), 256),
        Task::Swag => r(3, 1e-5, 32, Ratio(0.1), None, 128),
        Task::Squad { .. } => r(3, 1e-5, 32, Ratio(0.1), None, 384),
        Task::Conll => r(5, 2e-5, 16, Ratio(0.1), None, 256),
        Task::Generic(_) => r(3, 2e-5, 32, Ratio(0.1), None, 128),
    }
}
