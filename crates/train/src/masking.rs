//! The official masking rule (`NGramMaskGenerator` with unigrams, as RTD pre-training uses it):
//! walk the non-special tokens in windows of `int(1/0.15) = 6`, pick one position uniformly in
//! each window, keep picks in order until `round(0.15 * len)` (at most `max_predictions`). In RTD
//! every pick becomes [MASK]; the MLM baseline uses the official 80/10/10 (mask / keep / random).

use rand::Rng;

#[derive(Debug, Clone)]
pub struct MaskingConfig {
    pub mask_lm_prob: f64,
    /// `ceil(max_seq_len * prob / 10) * 10` in the official code: 80 for 512 tokens.
    pub max_predictions: usize,
    pub mask_id: i64,
    /// Share of picks replaced by [MASK] (RTD: 1; MLM: 0.8).
    pub mask_prob: f64,
    /// Share of picks left as they are (RTD: 0; MLM: 0.1); the rest get a random id.
    pub keep_prob: f64,
    /// Where random replacements are drawn from (the ordinary pieces).
    pub random_ids: std::ops::Range<i64>,
}

impl MaskingConfig {
    pub fn for_length(max_seq_len: usize, mask_id: i64) -> Self {
        let p = 0.15;
        MaskingConfig {
            mask_lm_prob: p,
            max_predictions: ((max_seq_len as f64 * p / 10.0).ceil() * 10.0) as usize,
            mask_id,
            mask_prob: 1.0,
            keep_prob: 0.0,
            random_ids: 0..0,
        }
    }

    /// The MLM objective's replacement policy (the official `NGramMaskGenerator` defaults).
    pub fn mlm(self, random_ids: std::ops::Range<i64>) -> Self {
        MaskingConfig { mask_prob: 0.8, keep_prob: 0.1, random_ids, ..self }
    }
}

/// One row after masking: the input with picks replaced by [MASK], and the original id at each
/// pick (0 elsewhere, the official "no label" value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedRow {
    pub input_ids: Vec<i64>,
    pub labels: Vec<i64>,
}

/// Masks one row. `special` says which ids are never picked ([CLS], [SEP], [PAD], [UNK], [MASK]).
pub fn mask_row(
    ids: &[i64],
    special: impl Fn(i64) -> bool,
    config: &MaskingConfig,
    rng: &mut impl Rng,
) -> MaskedRow {
    let candidates: Vec<usize> = (0..ids.len()).filter(|&i| !special(ids[i])).collect();
    // Python's round() rounds half to even.
    let wanted = ((ids.len() as f64 * config.mask_lm_prob).round_ties_even() as usize)
        .max(1)
        .min(config.max_predictions);
    let window = (1.0 / config.mask_lm_prob) as usize;
    let mut picks = Vec::new();
    let mut offset = 0;
    while offset < candidates.len() {
        let ctx = window.min(candidates.len() - offset);
        picks.push(candidates[offset + rng.random_range(0..ctx)]);
        offset += ctx;
    }
    let mut input_ids = ids.to_vec();
    let mut labels = vec![0; ids.len()];
    for &p in picks.iter().take(wanted) {
        labels[p] = ids[p];
        // RTD draws nothing here, so its random stream does not depend on the policy's shape.
        if config.mask_prob < 1.0 {
            let r: f64 = rng.random();
            if r < config.mask_prob {
                input_ids[p] = config.mask_id;
            } else if r >= config.mask_prob + config.keep_prob {
                input_ids[p] = rng.random_range(config.random_ids.clone());
            }
        } else {
            input_ids[p] = config.mask_id;
        }
    }
    MaskedRow { input_ids, labels }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn one_pick_per_window_in_order_up_to_the_budget() {
        let config = MaskingConfig::for_length(512, 999);
        assert_eq!(config.max_predictions, 80);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut ids: Vec<i64> = vec![1];
        ids.extend((0..510).map(|k| 10 + k as i64));
        ids.push(2);
        let row = mask_row(&ids, |t| t < 4, &config, &mut rng);
        let picks: Vec<usize> = (0..ids.len()).filter(|&i| row.labels[i] != 0).collect();
        // round(0.15 * 512) = 77 picks, the first 77 windows of 6 real tokens, one each.
        assert_eq!(picks.len(), 77);
        for (w, &p) in picks.iter().enumerate() {
            assert!((1 + 6 * w..1 + 6 * (w + 1)).contains(&p), "window {w}: {p}");
            assert_eq!(row.input_ids[p], 999);
            assert_eq!(row.labels[p], ids[p]);
        }
        assert_eq!(row.input_ids[0], 1);
        assert_eq!(row.input_ids[511], 2);
    }

    #[test]
    fn short_rows_get_at_least_one_pick_and_specials_are_skipped() {
        let config = MaskingConfig::for_length(512, 999);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let row = mask_row(&[1, 7, 2, 0, 0], |t| t < 4, &config, &mut rng);
        assert_eq!(row.labels, vec![0, 7, 0, 0, 0]);
        // round(2.5) = 2 in Python (half to even): a 17-token row gets round(2.55) = 3.
        let ids: Vec<i64> = (0..17).map(|k| 10 + k).collect();
        let row = mask_row(&ids, |t| t < 4, &config, &mut rng);
        assert_eq!(row.labels.iter().filter(|&&l| l != 0).count(), 3);
    }

    #[test]
    fn mlm_policy_masks_keeps_and_randomises_80_10_10() {
        let config = MaskingConfig::for_length(512, 999).mlm(10..500);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let ids: Vec<i64> = (0..510).map(|k| 500 + k).collect();
        let (mut masked, mut kept, mut random, mut picks) = (0, 0, 0, 0);
        for _ in 0..200 {
            let row = mask_row(&ids, |t| t < 4, &config, &mut rng);
            for i in (0..ids.len()).filter(|&i| row.labels[i] != 0) {
                picks += 1;
                match row.input_ids[i] {
                    999 => masked += 1,
                    t if t == ids[i] => kept += 1,
                    t => {
                        assert!((10..500).contains(&t));
                        random += 1
                    }
                }
            }
        }
        // 15,200 picks: binomial standard deviations are under 0.4 percentage points.
        let share = |n: i32| n as f64 / picks as f64;
        assert!((share(masked) - 0.8).abs() < 0.015, "{}", share(masked));
        assert!((share(kept) - 0.1).abs() < 0.015, "{}", share(kept));
        assert!((share(random) - 0.1).abs() < 0.015, "{}", share(random));
    }
}
