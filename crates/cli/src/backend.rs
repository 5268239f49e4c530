//! `--device` and the backend it selects. Model code is generic; this is the one place that
//! names concrete backends.

use anyhow::{bail, Result};
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;
use std::path::PathBuf;

pub type Cpu = burn::backend::Flex;

/// Keeps freed memory in the process (glibc malloc: no `mmap` for large blocks, no trimming).
/// Flex allocates a fresh buffer for every op's output; by default glibc serves blocks over
/// 128 KiB-32 MiB with `mmap` and unmaps them on free, so every step of a training run
/// page-faults and zero-fills its (up to 393 MB embedding-sized) temporaries again: ~30% of a
/// small-preset RTD step's CPU time went to the kernel (docs/benchmarks-history.md, "What each
/// lever gained"). Reusing the heap keeps the resident set at the run's peak instead of returning it
/// between steps.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc allocator tunables; it is called once at start-up, before
    // any other thread exists, with documented parameters and values.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    Cuda(usize),
}

/// `--device`: a value parser rather than a fixed list, since `cuda:N` carries an index.
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        _ if s == "cuda" || s.starts_with("cuda:") => {
            let index = match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map_err(|_| anyhow::anyhow!("bad CUDA device index in {s:?}"))?,
                None => 0,
            };
            if cfg!(feature = "cuda") {
                Ok(Device::Cuda(index))
            } else {
                bail!("--device {s}: this binary was built without CUDA (rebuild with `--features cuda`)")
            }
        }
        _ => bail!("--device {s:?}: expected cpu, cuda or cuda:N"),
    }
}

/// `--dtype` of the inference commands (training is always f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dtype {
    F32,
    /// Every float tensor in bf16 (burn 0.21 has no autocast; kernels may accumulate in f32).
    //
    // Weights (cast after loading), activations, matmul inputs and outputs, softmax, LayerNorm,
    // GELU: nothing stays f32; inside a kernel the backend chooses (CubeCL's matmul accumulates
    // bf16 operands in f32).
    Bf16,
    /// The encoder's Linear layers in int8 (weights per output channel, activations per row, i32
    /// sums), everything else f32; CPU only (docs/int8.md).
    Int8,
}

/// Makes `dtype` the default float type of `device`, so that the tensors the forward creates
/// (masks, the relative-position tables, ...) match the weights. Must run before any tensor exists
/// on `device` (burn fixes a device's defaults at its first tensor).
pub fn init_dtype<B: Backend>(device: &B::Device, dtype: Dtype) -> Result<()> {
    if dtype == Dtype::Bf16 {
        let int: burn::tensor::IntDType = <B::IntElem as burn::tensor::Element>::dtype().into();
        burn::tensor::set_default_dtypes::<B>(device, FloatDType::BF16, int)
            .map_err(|e| anyhow::anyhow!("--dtype bf16 on this device: {e:?}"))?;
    }
    Ok(())
}

/// Casts every float parameter of `module` to `dtype` (weights are loaded as stored, f32). Int8
/// is not a cast: the model quantises at load ([`deberta_io::LoadOptions::int8`],
/// `DebertaModel::quantize_int8`) and keeps its f32 parameters.
pub fn cast_module<B: Backend, M: Module<B>>(module: M, dtype: Dtype) -> M {
    struct Cast;
    impl<B: Backend> ModuleMapper<B> for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            param.map(|t| t.cast(FloatDType::BF16))
        }
    }
    match dtype {
        Dtype::F32 | Dtype::Int8 => module,
        Dtype::Bf16 => module.map(&mut Cast),
    }
}

/// `--threads`: the size of the global rayon pool (default: all cores).
pub fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        use anyhow::Context;
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("setting --threads")?;
    }
    Ok(())
}

/// Runs `$body` with `$B` bound to the backend type of `$device` and `$dev` to its device value.
#[macro_export]
macro_rules! with_backend {
    ($device:expr, |$B:ident, $dev:ident| $body:expr) => {{
        match $device {
            $crate::backend::Device::Cpu => {
                type $B = $crate::backend::Cpu;
                let $dev: burn::tensor::Device<$B> = Default::default();
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::backend::Device::Cuda(index) => {
                type $B = burn::backend::Cuda;
                let $dev = burn::backend::cuda::CudaDevice::new(index);
                $body
            }
            #[cfg(not(feature = "cuda"))]
            $crate::backend::Device::Cuda(_) => unreachable!("parse_device rejects cuda without the feature"),
        }
    }};
}

/// Files shipped in the repository's `assets/` (the built-in defaults of `forward`).
pub fn asset(name: &str) -> PathBuf {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = crate_dir.parent().and_then(|p| p.parent()).unwrap_or(crate_dir);
    repo.join("assets").join(name)
}
