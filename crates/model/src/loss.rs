//! Training losses of the heads, written out so their reductions match HF/torch:
//! cross-entropy averaged over labelled rows (`ignore_index` rows skipped), MSE for one-label
//! regression, BCE-with-logits averaged over real tokens for RTD.

use burn::prelude::*;
use burn::tensor::activation;

/// Label value that marks a row as unlabelled (torch's `ignore_index` default).
pub const IGNORE_INDEX: i64 = -100;

/// Mean cross-entropy of `logits: [N, C]` against `labels: [N]`, over rows whose label is not
/// negative (so `IGNORE_INDEX` rows, and MLM's unmasked positions, are skipped).
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [n, _] = logits.dims();
    let valid = labels.clone().greater_equal_elem(0);
    let safe = labels.mask_fill(valid.clone().bool_not(), 0).reshape([n, 1]);
    let nll = -activation::log_softmax(logits, 1).gather(1, safe).reshape([n]);
    let w = valid.float();
    (nll * w.clone()).sum() / w.sum().clamp_min(1.0)
}

/// Mean squared error (STS-B style regression with one label).
pub fn mse<B: Backend>(pred: Tensor<B, 1>, target: Tensor<B, 1>) -> Tensor<B, 1> {
    (pred - target).powi_scalar(2).mean()
}

/// `mean_{weight > 0} BCEWithLogits(logits, targets)`, in the stable form
/// `max(x, 0) - x*y + log(1 + exp(-|x|))`.
pub fn bce_with_logits<B: Backend>(
    logits: Tensor<B, 1>,
    targets: Tensor<B, 1>,
    weights: Tensor<B, 1>,
) -> Tensor<B, 1> {
    let per = logits.clone().clamp_min(0.0) - logits.clone() * targets + (-logits.abs()).exp().log1p();
    (per * weights.clone()).sum() / weights.sum().clamp_min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    type B = burn::backend::Flex;

    fn close(a: f32, b: f64) {
        assert!(((a as f64) - b).abs() < 1e-5, "{a} vs {b}");
    }

    // Oracles: values computed by hand (and with torch.nn.functional, same numbers).
    #[test]
    fn cross_entropy_skips_ignored_rows() {
        let d = Default::default();
        let logits = Tensor::<B, 2>::from_floats([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5], [3.0, 0.0, -1.0]], &d);
        let labels = Tensor::<B, 1, Int>::from_ints([2, IGNORE_INDEX, 0], &d);
        let l: f32 = cross_entropy(logits, labels).into_scalar();
        // -log softmax([1,2,3])[2] = 0.40760596; -log softmax([3,0,-1])[0] = 0.06588945
        close(l, (0.407_605_96 + 0.065_889_45) / 2.0);
    }

    #[test]
    fn bce_matches_formula() {
        let d = Default::default();
        let x = Tensor::<B, 1>::from_floats([2.0, -1.0, 0.0, 30.0], &d);
        let y = Tensor::<B, 1>::from_floats([1.0, 1.0, 0.0, 0.0], &d);
        let w = Tensor::<B, 1>::from_floats([1.0, 1.0, 1.0, 0.0], &d);
        let l: f32 = bce_with_logits(x, y, w).into_scalar();
        let f = |x: f64, y: f64| x.max(0.0) - x * y + (1.0 + (-x.abs()).exp()).ln();
        close(l, (f(2.0, 1.0) + f(-1.0, 1.0) + f(0.0, 0.0)) / 3.0);
    }

    #[test]
    fn mse_mean() {
        let d = Default::default();
        let l: f32 =
            mse(Tensor::<B, 1>::from_floats([1.0, 2.0], &d), Tensor::<B, 1>::from_floats([0.0, 4.0], &d))
                .into_scalar();
        close(l, 2.5);
    }
}
