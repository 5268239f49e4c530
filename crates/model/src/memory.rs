//! Rough memory estimates, checked before a model or a batch is allocated, so that an absurd
//! config (`vocab_size: 1e11`) or input (one row of 100,000 tokens) is refused with the estimate
//! instead of aborting in the allocator or waking the OOM killer.
//!
//! The estimates are deliberately low (f32 parameters, the few largest activations): they only
//! refuse what cannot fit, never a run that might. The budget is the machine's available memory
//! (`MemAvailable` in `/proc/meminfo`), or `DEBERTA_MAX_MEMORY` (bytes, or with a K/M/G/T suffix)
//! when set.

use crate::{DebertaConfig, Head};

/// The environment variable that overrides the memory budget.
pub const MAX_MEMORY_ENV: &str = "DEBERTA_MAX_MEMORY";

/// Parameters of a model of `config` with `head` (a slight under-count: biases of small layers
/// and head extras are approximated).
pub fn parameter_count(config: &DebertaConfig, head: Head) -> f64 {
    let f = |v: usize| v as f64;
    let (h, e, inter, layers) = (
        f(config.hidden_size),
        f(config.embedding_size),
        f(config.intermediate_size),
        f(config.num_hidden_layers),
    );
    let all = f(config.all_head_size());
    let mut n = f(config.vocab_size) * e + f(config.type_vocab_size) * e + 2.0 * h;
    if config.position_biased_input || head == Head::EnhancedMaskDecoderLm {
        n += f(config.max_position_embeddings) * e;
    }
    if e != h {
        n += e * h;
    }
    // q, k, v and output projections; the feed-forward pair; two LayerNorms.
    let layer = 4.0 * (h * all + all) + 2.0 * h * inter + inter + h + 4.0 * h;
    n += layers * layer;
    if config.relative_attention {
        n += 2.0 * f(config.rel_span()) * h;
    }
    match head {
        Head::MaskedLm | Head::EnhancedMaskDecoderLm => n += h * h + f(config.vocab_size),
        Head::Base => {}
        _ => n += h * h + h * f(config.num_labels.max(1)),
    }
    n
}

/// Bytes of f32 parameters of a model of `config` with `head`.
pub fn parameter_bytes(config: &DebertaConfig, head: Head) -> f64 {
    4.0 * parameter_count(config, head)
}

/// Bytes a forward over `rows` x `len` tokens needs at its peak, at least: two attention-score
/// tensors (`rows x heads x len x len`: the scores and their softmax), the `len x len`
/// relative-position tables, and two hidden or feed-forward activations. With `training`,
/// autograd keeps every layer's activations for the backward pass.
pub fn activation_bytes(config: &DebertaConfig, rows: usize, len: usize, training: bool) -> f64 {
    let (b, l) = (rows as f64, len as f64);
    let heads = config.num_attention_heads as f64;
    let scores = b * heads * l * l;
    let hidden = b * l * (config.hidden_size.max(config.intermediate_size) as f64);
    let per_layer = 4.0 * (2.0 * scores + 2.0 * hidden);
    // Relative positions (i64) and the identity the position terms gather with (f32).
    let tables = 12.0 * l * l;
    let layers = if training { config.num_hidden_layers.max(1) as f64 } else { 1.0 };
    layers * per_layer + tables
}

/// The memory budget: `DEBERTA_MAX_MEMORY` if set, else `MemAvailable` from `/proc/meminfo`
/// (`None` where neither is known: no check).
pub fn memory_budget() -> Result<Option<u64>, String> {
    if let Some(v) = max_memory_env() {
        return parse_bytes(&v).map(Some).ok_or_else(|| {
            format!("{MAX_MEMORY_ENV}={v:?}: expected a number of bytes, optionally with K, M, G or T")
        });
    }
    Ok(std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }))
}

/// `DEBERTA_MAX_MEMORY` when set and not blank.
fn max_memory_env() -> Option<String> {
    std::env::var(MAX_MEMORY_ENV).ok().filter(|v| !v.trim().is_empty())
}

fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, scale) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => {
            let scale = match c.to_ascii_uppercase() {
                'K' => 1u64 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return None,
            };
            (&s[..i], scale)
        }
        _ => (s, 1),
    };
    let v: f64 = digits.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some((v * scale as f64) as u64)
}

/// `bytes` in human units (`1.5 GB`).
pub fn human(bytes: f64) -> String {
    const UNITS: [&str; 7] = ["B", "KB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit + 1 == UNITS.len() && v >= 1000.0 {
        return format!("{bytes:.2e} B");
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// An error when `bytes` (what `what` needs) exceeds the memory budget.
pub fn check_fits(what: &str, bytes: f64) -> Result<(), String> {
    let Some(budget) = memory_budget()? else { return Ok(()) };
    if bytes > budget as f64 {
        let source = if max_memory_env().is_some() { MAX_MEMORY_ENV } else { "available memory" };
        return Err(format!(
            "{what} needs about {} (estimated), more than the {} of {source}",
            human(bytes),
            human(budget as f64)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_and_units() {
        let config =
            DebertaConfig::from_json_str(&crate::config::preset_json("base").unwrap().to_string()).unwrap();
        // DeBERTa-v3-base: 184M parameters.
        let n = parameter_count(&config, Head::Base);
        assert!((170e6..200e6).contains(&n), "{n}");
        assert_eq!(parse_bytes("2G"), Some(2 << 30));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("x"), None);
        assert_eq!(human(1.5e9), "1.5 GB");
        assert!(activation_bytes(&config, 1, 100_000, false) > 1e11);
        assert!(activation_bytes(&config, 8, 512, true) < 2e10);
    }
}
