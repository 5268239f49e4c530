//! AdamW as the official recipe runs it, plus global-norm clipping and the warmup/linear-decay
//! schedule.
//!
//! Written here rather than taken from burn-optim because the recipe needs two things burn's
//! `AdamW` does not offer: no weight decay on biases and LayerNorm parameters (chosen by parameter
//! path), and the official XAdam's update without bias correction.

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use deberta_io::{HostTensor, IoError, TensorMap};
use deberta_model::fast;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
    /// Global gradient-norm clip (`None`: no clipping).
    pub max_grad_norm: Option<f64>,
    /// torch's AdamW corrects the moments' start-up bias; the official XAdam does not.
    pub bias_correction: bool,
}

impl Default for AdamWConfig {
    /// The official pre-training recipe (docs/pretraining.md): betas (0.9, 0.999), eps 1e-6, decay
    /// 0.01, clip 1.0, no bias correction.
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-6,
            weight_decay: 0.01,
            max_grad_norm: Some(1.0),
            bias_correction: false,
        }
    }
}

/// Biases and LayerNorm parameters get no weight decay.
pub fn decays(path: &str) -> bool {
    !(path.ends_with("bias") || path.ends_with("beta") || path.contains("LayerNorm"))
}

/// The official `warmup_linear` schedule: `peak * t / warmup` while `t < warmup` (so the first
/// update, `t = 0`, has learning rate 0 and only fills Adam's moments), then `peak * (1 - t / total)`.
/// `t` counts the optimiser's steps taken before this one. The decay is measured from step 0, not
/// from the end of warmup, exactly as the official code does (a small drop at `t = warmup`).
pub fn warmup_linear(step: u64, peak: f64, warmup: u64, total: u64) -> f64 {
    if step < warmup {
        peak * step as f64 / warmup as f64
    } else if total == 0 {
        peak
    } else {
        peak * (1.0 - step as f64 / total as f64).max(0.0)
    }
}

/// Fine-tuning's schedule (HF `get_linear_schedule_with_warmup` counted from the first update):
/// linear warmup reaching `peak` at step `warmup`, then linear decay to 0 at `total`.
pub fn learning_rate(step: u64, peak: f64, warmup: u64, total: u64) -> f64 {
    if step < warmup {
        peak * (step + 1) as f64 / warmup as f64
    } else if total <= warmup {
        peak
    } else {
        peak * (total.saturating_sub(step)) as f64 / (total - warmup) as f64
    }
}

type Moments<B> =
    (Tensor<<B as AutodiffBackend>::InnerBackend, 1>, Tensor<<B as AutodiffBackend>::InnerBackend, 1>);

/// A learning-rate multiplier per parameter, by module path (layer-wise decay).
pub type LrScale = std::sync::Arc<dyn Fn(&str) -> f64 + Send + Sync>;

pub struct AdamW<B: AutodiffBackend> {
    pub config: AdamWConfig,
    pub steps: u64,
    moments: HashMap<ParamId, Moments<B>>,
    /// `None`: every parameter uses the step's learning rate as given.
    lr_scale: Option<LrScale>,
}

impl<B: AutodiffBackend> AdamW<B> {
    pub fn new(config: AdamWConfig) -> Self {
        AdamW { config, steps: 0, moments: HashMap::new(), lr_scale: None }
    }

    /// Multiplies the learning rate (and so the whole update, decay included, as torch's
    /// per-group `lr` does) of the parameter at each module path by `scale(path)`.
    pub fn with_lr_scale(mut self, scale: LrScale) -> Self {
        self.lr_scale = Some(scale);
        self
    }

    /// One update of every parameter of `module` that has a gradient in `grads`. Returns the
    /// module and the gradient norm before clipping.
    pub fn step<M: AutodiffModule<B>>(&mut self, lr: f64, module: M, grads: GradientsParams) -> (M, f64) {
        let norm = Self::grad_norm(&module, &grads);
        (self.step_with_norm(lr, module, grads, norm), norm)
    }

    /// The global L2 norm of `module`'s gradients in `grads`.
    pub fn grad_norm<M: AutodiffModule<B>>(module: &M, grads: &GradientsParams) -> f64 {
        let mut norm = GradNorm::<B> { grads, sum: 0.0, _b: Default::default() };
        module.visit(&mut norm);
        norm.sum.sqrt()
    }

    /// [`AdamW::step`] clipping by a norm computed elsewhere: one clip over several modules (the
    /// joint ES step) takes the norm of all their gradients together.
    pub fn step_with_norm<M: AutodiffModule<B>>(
        &mut self,
        lr: f64,
        module: M,
        mut grads: GradientsParams,
        grad_norm: f64,
    ) -> M {
        // The official clip: gradients divided by `norm / max` when that exceeds 1.
        let scale = match self.config.max_grad_norm {
            Some(max) if grad_norm > max => max / grad_norm,
            _ => 1.0,
        };
        self.steps += 1;
        let mut update = Update { opt: self, grads: &mut grads, lr, scale, path: Vec::new() };
        module.map(&mut update)
    }

    /// The moments of the parameters in `paths` (see [`crate::state::param_paths`]) as
    /// `{prefix}{path}.exp_avg` / `.exp_avg_sq`, torch's names for them.
    pub fn state_tensors(&self, paths: &[(String, ParamId)], prefix: &str) -> TensorMap {
        let mut out = TensorMap::new();
        for (path, id) in paths {
            if let Some((m, v)) = self.moments.get(id) {
                out.insert(format!("{prefix}{path}.exp_avg"), HostTensor::from_burn(m.to_data()));
                out.insert(format!("{prefix}{path}.exp_avg_sq"), HostTensor::from_burn(v.to_data()));
            }
        }
        out
    }

    /// Restores what [`AdamW::state_tensors`] wrote, for the module whose `paths` are given
    /// (parameter ids change between runs; paths do not). Takes its tensors out of `tensors`.
    pub fn load_state_tensors(
        &mut self,
        paths: &[(String, ParamId)],
        tensors: &mut TensorMap,
        prefix: &str,
        device: &burn::tensor::Device<B::InnerBackend>,
        file: &std::path::Path,
    ) -> Result<(), IoError> {
        for (path, id) in paths {
            let (km, kv) = (format!("{prefix}{path}.exp_avg"), format!("{prefix}{path}.exp_avg_sq"));
            match (tensors.remove(&km), tensors.remove(&kv)) {
                (Some(m), Some(v)) => {
                    let t = |h: HostTensor| Tensor::from_data(h.to_burn(), device);
                    self.moments.insert(*id, (t(m), t(v)));
                }
                (None, None) => {}
                _ => {
                    return Err(IoError::Checkpoint {
                        path: file.to_path_buf(),
                        message: format!("`{km}` and `{kv}` must both be present"),
                    })
                }
            }
        }
        Ok(())
    }
}

struct GradNorm<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    sum: f64,
    _b: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradNorm<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let s: f32 = g.powi_scalar(2).sum().into_scalar().elem();
            self.sum += s as f64;
        }
    }
}

struct Update<'a, B: AutodiffBackend> {
    opt: &'a mut AdamW<B>,
    grads: &'a mut GradientsParams,
    lr: f64,
    scale: f64,
    path: Vec<String>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Update<'_, B> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let c = self.opt.config;
        let shape = tensor.shape();
        let n = shape.num_elements();
        let x = tensor.inner().reshape([n]);
        let path = self.path.join(".");
        let lr = match &self.opt.lr_scale {
            Some(scale) => self.lr * scale(&path),
            None => self.lr,
        };
        let moments = self.opt.moments.remove(&id);
        let decay = if decays(&path) { c.weight_decay } else { 0.0 };
        let hyper = Hyper { c, t: self.opt.steps as i32, scale: self.scale, lr, decay };
        let update = if fast::applies::<B::InnerBackend>(x.dtype()) { fused_update } else { generic_update };
        let (x, m, v) = update(x, grad.reshape([n]), moments, hyper);
        self.opt.moments.insert(id, (m, v));
        let tensor = Tensor::<B, D>::from_inner(x.reshape(shape)).require_grad();
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// What one parameter's update needs besides its tensors.
struct Hyper {
    c: AdamWConfig,
    /// The step number, from 1.
    t: i32,
    /// Gradient clipping factor.
    scale: f64,
    lr: f64,
    /// Weight decay of this parameter (0 where [`decays`] says no).
    decay: f64,
}

/// AdamW on one flattened parameter: `x - lr (m^ / (sqrt(v^) + eps) + decay x)`, op by op.
fn generic_update<I: Backend>(
    x: Tensor<I, 1>,
    g: Tensor<I, 1>,
    moments: Option<(Tensor<I, 1>, Tensor<I, 1>)>,
    h: Hyper,
) -> (Tensor<I, 1>, Tensor<I, 1>, Tensor<I, 1>) {
    let c = h.c;
    let g = g * h.scale;
    let (m, v) = match moments {
        Some((m, v)) => {
            (m * c.beta1 + g.clone() * (1.0 - c.beta1), v * c.beta2 + g.powi_scalar(2) * (1.0 - c.beta2))
        }
        None => (g.clone() * (1.0 - c.beta1), g.powi_scalar(2) * (1.0 - c.beta2)),
    };
    let (mh, vh) = if c.bias_correction {
        (m.clone() / (1.0 - c.beta1.powi(h.t)), v.clone() / (1.0 - c.beta2.powi(h.t)))
    } else {
        (m.clone(), v.clone())
    };
    let mut step = mh / (vh.sqrt() + c.epsilon);
    if h.decay > 0.0 {
        step = step + x.clone() * h.decay;
    }
    (x - step * h.lr, m, v)
}

/// [`generic_update`] in one pass over `x`, `g`, `m`, `v` on all cores, the moments in place: on Flex the op-by-op form allocates and streams a dozen parameter-sized
/// temporaries, which for the 128100-row embeddings cost more than the model's own matmuls
/// (docs/benchmarks-history.md, "What each lever gained"). Same formula, same f32 rounding of
/// every constant.
fn fused_update<I: Backend>(
    x: Tensor<I, 1>,
    g: Tensor<I, 1>,
    moments: Option<(Tensor<I, 1>, Tensor<I, 1>)>,
    h: Hyper,
) -> (Tensor<I, 1>, Tensor<I, 1>, Tensor<I, 1>) {
    use rayon::prelude::*;
    let [n] = x.dims();
    let c = h.c;
    let (bc1, bc2) =
        if c.bias_correction { (1.0 - c.beta1.powi(h.t), 1.0 - c.beta2.powi(h.t)) } else { (1.0, 1.0) };
    let f = |v: f64| v as f32;
    let k = Constants {
        scale: f(h.scale),
        b1: f(c.beta1),
        b2: f(c.beta2),
        a1: f(1.0 - c.beta1),
        a2: f(1.0 - c.beta2),
        bc1: f(bc1),
        bc2: f(bc2),
        eps: f(c.epsilon),
        decay: f(h.decay),
        lr: f(h.lr),
        bias_correction: c.bias_correction,
    };
    let x = fast::to_flex(x).to_contiguous();
    let g = fast::to_flex(g).to_contiguous();
    let (mut m, mut v) = match moments {
        Some((m, v)) => (owned(fast::to_flex(m)), owned(fast::to_flex(v))),
        None => {
            let zeros = || burn_flex::FlexTensor::zeros([n].into(), burn::tensor::DType::F32);
            (zeros(), zeros())
        }
    };
    const CHUNK: usize = 1 << 14;
    let moments = g
        .storage::<f32>()
        .par_chunks(CHUNK)
        .zip(m.storage_mut::<f32>().par_chunks_mut(CHUNK))
        .zip(v.storage_mut::<f32>().par_chunks_mut(CHUNK));
    // The parameter's buffer is usually still shared (the autodiff graph or GDES keeps the old
    // value), so the new value goes to a fresh buffer rather than a copy updated in place.
    let x = if x.is_unique() {
        let mut x = x;
        x.storage_mut::<f32>()
            .par_chunks_mut(CHUNK)
            .zip(moments)
            .for_each(|(x, ((g, m), v))| update_chunk(x, None, g, m, v, &k));
        x
    } else {
        let mut out = burn_flex::FlexTensor::empty([n].into(), burn::tensor::DType::F32);
        let old = x.storage::<f32>().par_chunks(CHUNK);
        out.storage_mut::<f32>()
            .par_chunks_mut(CHUNK)
            .zip(old)
            .zip(moments)
            .for_each(|((out, x), ((g, m), v))| update_chunk(out, Some(x), g, m, v, &k));
        out
    };
    (fast::from_flex(x), fast::from_flex(m), fast::from_flex(v))
}

/// [`fused_update`]'s constants, each rounded to f32 as the op-by-op form rounds it.
struct Constants {
    scale: f32,
    b1: f32,
    b2: f32,
    a1: f32,
    a2: f32,
    bc1: f32,
    bc2: f32,
    eps: f32,
    decay: f32,
    lr: f32,
    bias_correction: bool,
}

/// New value of one parameter from its old value, gradient and (updated in place) moments.
#[inline(always)]
fn update(x: f32, g: f32, m: &mut f32, v: &mut f32, k: &Constants) -> f32 {
    let g = g * k.scale;
    *m = *m * k.b1 + g * k.a1;
    *v = *v * k.b2 + g * g * k.a2;
    let (mh, vh) = if k.bias_correction { (*m / k.bc1, *v / k.bc2) } else { (*m, *v) };
    let mut step = mh / (vh.sqrt() + k.eps);
    if k.decay > 0.0 {
        step += x * k.decay;
    }
    x - step * k.lr
}

deberta_model::fast::simd_dispatch! {
    /// [`update`] over one chunk: into `x` from `old` (or in place without it). Element-wise
    /// with IEEE division and square root, so every lane width gives the same bits.
    fn update_chunk(x: &mut [f32], old: Option<&[f32]>, g: &[f32], m: &mut [f32], v: &mut [f32], k: &Constants) {
        // Indexed loops over slices cut to one length: no bounds checks and no iterator adapters
        // (which would be compiled outside this function, without AVX2).
        let n = x.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        match old {
            Some(old) => {
                let old = &old[..n];
                for i in 0..n {
                    x[i] = update(old[i], g[i], &mut m[i], &mut v[i], k);
                }
            }
            None => {
                for i in 0..n {
                    x[i] = update(x[i], g[i], &mut m[i], &mut v[i], k);
                }
            }
        }
    }
}

/// `t` contiguous in a buffer of its own, to update in place (copied only when shared).
fn owned(t: burn_flex::FlexTensor) -> burn_flex::FlexTensor {
    let c = t.to_contiguous();
    drop(t);
    if c.is_unique() {
        return c;
    }
    let mut copy = burn_flex::FlexTensor::empty(c.layout().shape().clone(), c.dtype());
    copy.storage_mut::<f32>().copy_from_slice(c.storage::<f32>());
    copy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule() {
        // warmup_linear(t, total, warmup = W / total) of the official optimiser, hand-evaluated.
        assert_eq!(warmup_linear(0, 1.0, 4, 10), 0.0);
        assert_eq!(warmup_linear(1, 1.0, 4, 10), 0.25);
        assert_eq!(warmup_linear(3, 1.0, 4, 10), 0.75);
        assert_eq!(warmup_linear(4, 1.0, 4, 10), 0.6);
        assert_eq!(warmup_linear(7, 1.0, 4, 10), 1.0 - 0.7);
        assert_eq!(warmup_linear(10, 1.0, 4, 10), 0.0);
        assert_eq!(warmup_linear(0, 2.0, 0, 10), 2.0);
        // Fine-tuning's.
        assert_eq!(learning_rate(0, 1.0, 4, 10), 0.25);
        assert_eq!(learning_rate(3, 1.0, 4, 10), 1.0);
        assert_eq!(learning_rate(7, 1.0, 4, 10), 0.5);
        assert_eq!(learning_rate(10, 1.0, 4, 10), 0.0);
    }

    #[test]
    fn decay_mask() {
        assert!(decays("deberta.encoder.layer.0.attention.self_attn.query_proj.weight"));
        assert!(decays("word_embeddings_delta"));
        assert!(!decays("deberta.encoder.layer.0.output.dense.bias"));
        assert!(!decays("deberta.embeddings.LayerNorm.gamma"));
        assert!(!decays("lm_predictions.lm_head.bias"));
    }
}
