//! Flags several commands share, typed: clap checks the values and `--help` lists them.

use crate::backend::{parse_device, Device, Dtype};
use anyhow::Result;
use deberta_model::Head;

/// Where a command runs: `--threads` and `--device`.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct Runtime {
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// cpu, cuda or cuda:N (CUDA needs a binary built with `--features cuda`).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
}

impl Runtime {
    /// Sizes the thread pool; call before any parallel work.
    pub fn start(&self) -> Result<()> {
        crate::backend::set_threads(self.threads)
    }
}

/// [`Runtime`] plus the float type, for the inference-only commands (training is always f32).
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct Inference {
    #[command(flatten)]
    pub runtime: Runtime,
    /// The float type of weights (cast after loading) and activations; outputs are written as f32.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
}

/// `--head`: the short names, with the long ones as aliases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HeadArg {
    Base,
    #[value(alias = "sequence-classification")]
    SeqCls,
    MultipleChoice,
    TokenClassification,
    #[value(alias = "question-answering")]
    Qa,
    #[value(alias = "masked-lm")]
    Mlm,
    #[value(alias = "replaced-token-detection")]
    Rtd,
    #[value(alias = "enhanced-mask-decoder")]
    Emd,
}

impl From<HeadArg> for Head {
    fn from(h: HeadArg) -> Head {
        match h {
            HeadArg::Base => Head::Base,
            HeadArg::SeqCls => Head::SequenceClassification,
            HeadArg::MultipleChoice => Head::MultipleChoice,
            HeadArg::TokenClassification => Head::TokenClassification,
            HeadArg::Qa => Head::QuestionAnswering,
            HeadArg::Mlm => Head::MaskedLm,
            HeadArg::Rtd => Head::ReplacedTokenDetection,
            HeadArg::Emd => Head::EnhancedMaskDecoderLm,
        }
    }
}

/// `--preset`: the model crate's list is the one source of the names.
pub fn preset_parser() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(deberta_model::config::PRESETS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    /// Every head has exactly one `--head` value.
    #[test]
    fn heads_are_covered_once() {
        let heads: Vec<Head> = HeadArg::value_variants().iter().map(|&h| h.into()).collect();
        assert_eq!(heads, Head::ALL);
    }
}
