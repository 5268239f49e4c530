//! Which features go together, and their tensors.
//!
//! Training batches are length-bucketed: each epoch shuffles the features (ChaCha8 seeded by
//! `(seed, epoch)`), cuts the order into pools of [`POOL_BATCHES`] batches, sorts each pool by
//! length, cuts it into batches and shuffles the batches. Batches then hold similar lengths, so
//! dynamic padding (to the longest row of the batch, not to `max_length`) wastes little, while
//! every epoch still sees a fresh order. Evaluation batches are the features sorted by length
//! (longest first, stable), which depends on nothing but the data and the batch size, so an
//! evaluation is repeated exactly.

use super::task::{Feature, Target};
use burn::prelude::*;
use deberta_model::Batch;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Batches per length-sorted pool.
pub const POOL_BATCHES: usize = 32;

/// The training batches of one epoch (indices into `lengths`), each of at most `batch` features.
pub fn train_batches(
    lengths: &[usize],
    batch: usize,
    seed: u64,
    epoch: u64,
    bucket: bool,
) -> Vec<Vec<usize>> {
    let batch = batch.max(1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    if !bucket {
        return order.chunks(batch).map(<[usize]>::to_vec).collect();
    }
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for pool in order.chunks(batch * POOL_BATCHES) {
        let mut pool = pool.to_vec();
        pool.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(pool.chunks(batch).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

/// Evaluation batches: longest first, `batch` at a time.
pub fn eval_batches(lengths: &[usize], batch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order.chunks(batch.max(1)).map(<[usize]>::to_vec).collect()
}

/// Padded model inputs of some features: `[rows, L]` with `L` their longest row; multiple
/// choice puts the choices of each feature on consecutive rows (`choices` = their count).
pub struct Padded<B: Backend> {
    pub batch: Batch<B>,
    pub choices: Option<usize>,
    /// Longest row.
    pub len: usize,
}

pub fn pad<B: Backend>(
    features: &[&Feature],
    pad_id: u32,
    token_types: bool,
    device: &B::Device,
) -> Padded<B> {
    let len = features.iter().map(|f| f.len()).max().unwrap_or(0).max(1);
    let per = features.first().map_or(1, |f| f.input_ids.len());
    let rows = features.len() * per;
    let (mut ids, mut mask, mut types) =
        (Vec::with_capacity(rows * len), Vec::with_capacity(rows * len), Vec::with_capacity(rows * len));
    for f in features {
        for (row, tt) in f.input_ids.iter().zip(&f.token_type_ids) {
            let padding = len - row.len();
            ids.extend(row.iter().map(|&t| t as i64).chain(std::iter::repeat_n(pad_id as i64, padding)));
            mask.extend(std::iter::repeat_n(1i64, row.len()).chain(std::iter::repeat_n(0, padding)));
            types.extend(tt.iter().map(|&t| t as i64).chain(std::iter::repeat_n(0, padding)));
        }
    }
    let t = |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [rows, len]), device);
    Padded {
        batch: Batch {
            input_ids: t(ids),
            attention_mask: t(mask),
            token_type_ids: token_types.then(|| t(types)),
        },
        choices: (per > 1).then_some(per),
        len,
    }
}

/// Class (or choice) ids of `features`.
pub fn class_targets<B: Backend>(features: &[&Feature], device: &B::Device) -> Tensor<B, 1, Int> {
    let v: Vec<i64> =
        features.iter().map(|f| if let Target::Class(c) = f.target { c } else { -100 }).collect();
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// Regression targets of `features`.
pub fn score_targets<B: Backend>(features: &[&Feature], device: &B::Device) -> Tensor<B, 1> {
    let v: Vec<f32> =
        features.iter().map(|f| if let Target::Score(s) = f.target { s } else { 0.0 }).collect();
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// Per-token labels, `[rows * len]`, padding ignored (-100).
pub fn token_targets<B: Backend>(features: &[&Feature], len: usize, device: &B::Device) -> Tensor<B, 1, Int> {
    let mut v = Vec::with_capacity(features.len() * len);
    for f in features {
        let labels: &[i64] = if let Target::Tokens(t) = &f.target { t } else { &[] };
        v.extend(labels.iter().copied().chain(std::iter::repeat(-100)).take(len));
    }
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// Start and end positions of `features`.
pub fn span_targets<B: Backend>(features: &[&Feature], device: &B::Device) -> [Tensor<B, 1, Int>; 2] {
    let (mut s, mut e) = (Vec::new(), Vec::new());
    for f in features {
        let (a, b) = if let Target::Span(a, b) = f.target { (a as i64, b as i64) } else { (-100, -100) };
        s.push(a);
        e.push(b);
    }
    let n = s.len();
    [Tensor::from_data(TensorData::new(s, [n]), device), Tensor::from_data(TensorData::new(e, [n]), device)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_feature_once_and_hold_similar_lengths() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 7919) % 300 + 3).collect();
        let batches = train_batches(&lengths, 8, 1, 0, true);
        let mut all: Vec<usize> = batches.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        // Within a pool of 256 random lengths in [3, 303), a batch of 8 sorted neighbours spans
        // far less than the whole range.
        let spread: usize = batches
            .iter()
            .map(|b| {
                b.iter().map(|&i| lengths[i]).max().unwrap() - b.iter().map(|&i| lengths[i]).min().unwrap()
            })
            .sum::<usize>()
            / batches.len();
        assert!(spread < 30, "{spread}");
        assert_eq!(batches, train_batches(&lengths, 8, 1, 0, true));
        assert_ne!(batches, train_batches(&lengths, 8, 1, 1, true));
        assert_eq!(eval_batches(&[3, 9, 5, 9], 3), vec![vec![1, 3, 2], vec![0]]);
    }
}
