//! `--device` and the backend it selects. Model code is generic; this is the one place that
//! names concrete backends.

use anyhow::{bail, Result};
use std::path::PathBuf;

pub type Cpu = burn::backend::Flex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    Cuda(usize),
}

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
