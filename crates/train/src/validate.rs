//! Range checks of training settings before a run starts (or resumes from a saved
//! `state.json`): a negative learning rate, a warmup ratio of 2 or a NaN weight decay is an error
//! naming the flag and its range, not a run that silently diverges or panics later.

use crate::optim::AdamWConfig;
use deberta_model::{memory, DebertaConfig, Head};

fn finite(flag: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{flag} {v}: must be a finite number"))
    }
}

fn positive(flag: &str, v: f64) -> Result<(), String> {
    if finite(flag, v)? > 0.0 {
        Ok(())
    } else {
        Err(format!("{flag} {v}: must be positive"))
    }
}

fn non_negative(flag: &str, v: f64) -> Result<(), String> {
    if finite(flag, v)? >= 0.0 {
        Ok(())
    } else {
        Err(format!("{flag} {v}: must be at least 0"))
    }
}

/// `v` in `[lo, hi)` (`hi_open`) or `[lo, hi]`.
fn within(flag: &str, v: f64, lo: f64, hi: f64, hi_open: bool) -> Result<(), String> {
    let v = finite(flag, v)?;
    let ok = v >= lo && if hi_open { v < hi } else { v <= hi };
    if ok {
        Ok(())
    } else {
        Err(format!("{flag} {v}: must be in [{lo}, {hi}{}", if hi_open { ")" } else { "]" }))
    }
}

fn at_least_one(flag: &str, v: usize) -> Result<(), String> {
    if v >= 1 {
        Ok(())
    } else {
        Err(format!("{flag} {v}: must be at least 1"))
    }
}

/// The optimiser's knobs: betas in [0, 1), epsilon > 0, weight decay >= 0, clip norm > 0.
pub fn check_adam(adam: &AdamWConfig) -> Result<(), String> {
    within("--adam-beta1", adam.beta1, 0.0, 1.0, true)?;
    within("--adam-beta2", adam.beta2, 0.0, 1.0, true)?;
    positive("--adam-epsilon", adam.epsilon)?;
    non_negative("--weight-decay", adam.weight_decay)?;
    if let Some(norm) = adam.max_grad_norm {
        positive("--max-grad-norm", norm)?;
    }
    Ok(())
}

/// Pre-training settings (fresh from flags or read back from a checkpoint's `state.json`).
pub fn check_pretrain(s: &crate::pretrain::Settings) -> Result<(), String> {
    if s.steps == 0 {
        return Err("--steps 0: must be at least 1".into());
    }
    at_least_one("--batch-size", s.batch_size)?;
    if s.seq_len < 3 {
        return Err(format!("--seq-len {}: must be at least 3 ([CLS] x [SEP])", s.seq_len));
    }
    positive("--lr", s.lr)?;
    non_negative("--rtd-lambda", s.rtd_lambda)?;
    check_adam(&s.adam)?;
    let v = &s.vocabulary;
    for (name, id) in [("pad", v.pad), ("cls", v.cls), ("sep", v.sep), ("unk", v.unk), ("mask", v.mask)] {
        if id < 0 {
            return Err(format!("vocabulary: the {name} id {id} is negative"));
        }
    }
    if v.pieces.0 < 0 || v.pieces.0 >= v.pieces.1 {
        return Err(format!(
            "vocabulary: ordinary pieces [{}, {}) is not a non-empty id range",
            v.pieces.0, v.pieces.1
        ));
    }
    Ok(())
}

/// The vocabulary's ids must be rows of an embedding of `vocab_size` rows.
pub fn check_vocabulary(v: &crate::pretrain::Vocabulary, vocab_size: usize) -> Result<(), String> {
    let n = vocab_size as i64;
    for (name, id) in [("pad", v.pad), ("cls", v.cls), ("sep", v.sep), ("unk", v.unk), ("mask", v.mask)] {
        if id >= n {
            return Err(format!(
                "vocabulary: the {name} id {id} is outside the embedding ({vocab_size} rows)"
            ));
        }
    }
    if v.pieces.1 > n {
        return Err(format!(
            "vocabulary: ordinary pieces end at {} beyond the embedding ({vocab_size} rows)",
            v.pieces.1
        ));
    }
    Ok(())
}

/// A whole pre-training run before its models are allocated: the settings, the vocabulary
/// against the embeddings, and memory for both models (weights, gradients, Adam moments) and a
/// step's activations.
pub fn check_pretrain_run(
    s: &crate::pretrain::Settings,
    generator: &DebertaConfig,
    discriminator: Option<&DebertaConfig>,
) -> Result<(), String> {
    check_pretrain(s)?;
    check_vocabulary(
        &s.vocabulary,
        discriminator.map_or(generator.vocab_size, |d| d.vocab_size.min(generator.vocab_size)),
    )?;
    let mut weights = memory::parameter_bytes(generator, Head::EnhancedMaskDecoderLm);
    let mut activations = memory::activation_bytes(generator, s.batch_size, s.seq_len, true);
    if let Some(d) = discriminator {
        weights += memory::parameter_bytes(d, Head::ReplacedTokenDetection);
        activations = activations.max(memory::activation_bytes(d, s.batch_size, s.seq_len, true));
    }
    memory::check_fits(
        &format!(
            "pre-training (generator vocab_size {}, hidden_size {}, {} layers; --batch-size {} x --seq-len {})",
            generator.vocab_size, generator.hidden_size, generator.num_hidden_layers, s.batch_size, s.seq_len
        ),
        4.0 * weights + activations,
    )
}

/// Fine-tuning settings.
pub fn check_finetune(s: &crate::finetune::Settings) -> Result<(), String> {
    at_least_one("--epochs", s.epochs)?;
    at_least_one("--batch-size", s.batch_size)?;
    at_least_one("--grad-accum", s.grad_accum)?;
    at_least_one("--eval-batch-size", s.eval_batch_size)?;
    positive("--lr", s.lr)?;
    if let crate::finetune::recipe::Warmup::Ratio(r) = s.warmup {
        within("--warmup-ratio", r, 0.0, 1.0, false)?;
    }
    if let Some(d) = s.llrd {
        // A decay factor: 1 is no decay, smaller shrinks lower layers' rates.
        if !(d.is_finite() && d > 0.0 && d <= 1.0) {
            return Err(format!("--llrd {d}: must be in (0, 1]"));
        }
    }
    if s.max_steps == Some(0) {
        return Err("--max-steps 0: must be at least 1".into());
    }
    check_adam(&s.adam)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_name_the_flag() {
        let mut s = crate::pretrain::Settings::default();
        assert!(check_pretrain(&s).is_ok());
        s.lr = -1.0;
        assert!(check_pretrain(&s).unwrap_err().contains("--lr -1"));
        s.lr = 1e-3;
        s.adam.weight_decay = f64::NAN;
        assert!(check_pretrain(&s).unwrap_err().contains("--weight-decay NaN"));
        s.adam.weight_decay = 0.0;
        s.adam.beta1 = 2.0;
        assert!(check_pretrain(&s).unwrap_err().contains("--adam-beta1 2: must be in [0, 1)"));
        s.adam.beta1 = 0.9;
        s.batch_size = 0;
        assert!(check_pretrain(&s).unwrap_err().contains("--batch-size 0"));
    }
}
