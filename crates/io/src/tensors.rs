//! Named f32 tensors in and out of files: safetensors (single or sharded), PyTorch pickles
//! (zip and legacy layouts, read with burn-store's reader), and atomic writes.

use crate::IoError;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A dense row-major f32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        HostTensor { shape, data }
    }

    pub fn from_burn(data: burn::tensor::TensorData) -> Self {
        let shape = data.shape.to_vec();
        let data = data.convert::<f32>().into_vec::<f32>().expect("converted to f32");
        HostTensor { shape, data }
    }

    pub fn to_burn(&self) -> burn::tensor::TensorData {
        burn::tensor::TensorData::new(self.data.clone(), self.shape.clone())
    }
}

pub type TensorMap = BTreeMap<String, HostTensor>;

/// Reads one weights file.
pub type Reader = fn(&Path) -> Result<TensorMap, IoError>;

fn decode(path: &Path, name: &str, view: &TensorView<'_>) -> Result<HostTensor, IoError> {
    let bytes = view.data();
    let data: Vec<f32> = match view.dtype() {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => {
            bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
        }
        Dtype::BF16 => {
            bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
        }
        Dtype::F64 => {
            bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect()
        }
        other => {
            return Err(IoError::Tensor {
                path: path.to_path_buf(),
                name: name.to_string(),
                message: format!("unsupported dtype {other:?} (expected F32, F16, BF16 or F64)"),
            })
        }
    };
    Ok(HostTensor::new(view.shape().to_vec(), data))
}

/// Reads every tensor of one `.safetensors` file.
pub fn read_safetensors(path: &Path) -> Result<TensorMap, IoError> {
    let file = std::fs::File::open(path).map_err(|e| IoError::file(path, e))?;
    // SAFETY: the map is read-only and dropped before we return; a concurrent writer could only
    // make us read garbage, which the safetensors header checks then reject.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| IoError::file(path, e))?;
    let st = SafeTensors::deserialize(&mmap).map_err(|e| IoError::Corrupt {
        path: path.to_path_buf(),
        message: format!("not a valid safetensors file: {e}"),
    })?;
    let mut out = TensorMap::new();
    for (name, view) in st.tensors() {
        let t = decode(path, &name, &view)?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Reads a sharded checkpoint through its `*.index.json` (`weight_map`: tensor -> shard file).
pub fn read_sharded(
    index_path: &Path,
    read_shard: fn(&Path) -> Result<TensorMap, IoError>,
) -> Result<TensorMap, IoError> {
    let text = std::fs::read_to_string(index_path).map_err(|e| IoError::file(index_path, e))?;
    let index: serde_json::Value = serde_json::from_str(&text).map_err(|e| IoError::Corrupt {
        path: index_path.to_path_buf(),
        message: format!("invalid JSON: {e}"),
    })?;
    let map = index.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| IoError::Corrupt {
        path: index_path.to_path_buf(),
        message: "no `weight_map` object".into(),
    })?;
    let dir = index_path.parent().unwrap_or(Path::new("."));
    let mut shards: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, file) in map {
        let file = file.as_str().ok_or_else(|| IoError::Corrupt {
            path: index_path.to_path_buf(),
            message: format!("`weight_map.{name}` is not a file name"),
        })?;
        shards.entry(file).or_default().push(name);
    }
    let mut out = TensorMap::new();
    for (file, names) in shards {
        // Shards are files next to the index: no absolute paths, no `..`.
        let relative = Path::new(file);
        if file.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir))
        {
            return Err(IoError::Corrupt {
                path: index_path.to_path_buf(),
                message: format!("shard {file:?} is not a file inside the model directory"),
            });
        }
        let shard_path = dir.join(file);
        let mut tensors = read_shard(&shard_path)?;
        for name in names {
            let t = tensors.remove(name).ok_or_else(|| IoError::Corrupt {
                path: shard_path.clone(),
                message: format!("tensor `{name}` listed in {} is not in this shard", index_path.display()),
            })?;
            out.insert(name.to_string(), t);
        }
    }
    Ok(out)
}

/// Checks a torch zip checkpoint end to end before burn-store reads it (it pads short storages
/// with zeros and falls back to other layouts when the archive does not open): the archive must
/// open, and every entry must read back to its recorded size with a matching CRC-32. Returns the
/// entries' names and sizes and the bytes of the model pickle (`data.pkl`) for the storage
/// check, or `None` for files that are not zip archives (the legacy layout).
type ZipContents = (Vec<(String, u64)>, Vec<u8>);
fn check_torch_zip(path: &Path) -> Result<Option<ZipContents>, IoError> {
    use std::io::Read;
    let corrupt = |message: String| IoError::Corrupt { path: path.to_path_buf(), message };
    let mut file = std::fs::File::open(path).map_err(|e| IoError::file(path, e))?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(|e| IoError::file(path, e))?;
    if n < 4 || magic != *b"PK\x03\x04" {
        return Ok(None);
    }
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| corrupt(format!("damaged or truncated zip archive ({e})")))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut entries = Vec::new();
    let mut pickle = None;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| corrupt(format!("zip entry {i}: {e}")))?;
        let name = entry.name().map(|n| n.to_string()).unwrap_or_else(|_| format!("#{i}"));
        let expected = entry.size();
        let is_pickle = name.ends_with("/data.pkl") || name == "data.pkl";
        let mut read = 0u64;
        let mut bytes = Vec::new();
        loop {
            match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    read += n as u64;
                    if is_pickle {
                        bytes.extend_from_slice(&buf[..n]);
                    }
                }
                Err(e) => return Err(corrupt(format!("zip entry `{name}`: {e} (damaged or truncated)"))),
            }
        }
        if read != expected {
            return Err(corrupt(format!(
                "zip entry `{name}`: {read} bytes, expected {expected} (truncated)"
            )));
        }
        if is_pickle {
            pickle = Some(bytes);
        }
        entries.push((name, expected));
    }
    let pickle = pickle.ok_or_else(|| corrupt("no data.pkl entry: not a torch checkpoint".into()))?;
    // torch writes every entry under one folder (the archive's name); burn-store finds storages
    // by name patterns, so a damaged name could make it pick the wrong one.
    let folder = entries.iter().find_map(|(n, _)| n.strip_suffix("data.pkl")).unwrap_or("").to_string();
    if let Some((name, _)) = entries.iter().find(|(n, _)| !n.starts_with(&folder)) {
        return Err(corrupt(format!("zip entry `{name}` is outside the archive's folder `{folder}`")));
    }
    Ok(Some((entries, pickle)))
}

/// Reads a `pytorch_model.bin` (torch zip format or the pre-1.6 legacy pickle layout).
pub fn read_pytorch(path: &Path) -> Result<TensorMap, IoError> {
    let zip = check_torch_zip(path)?;
    let reader = burn_store::pytorch::PytorchReader::new(path).map_err(|e| IoError::Corrupt {
        path: path.to_path_buf(),
        message: format!("not a readable PyTorch checkpoint: {e}"),
    })?;
    let tensors = reader.tensors().len();
    let problem = match &zip {
        Some((entries, pickle)) => crate::torch_storages::zip_problem(entries, pickle, tensors),
        None => crate::torch_storages::legacy_problem(path, tensors),
    };
    if let Some(message) = problem {
        return Err(IoError::Corrupt { path: path.to_path_buf(), message });
    }
    let mut out = TensorMap::new();
    for (name, snapshot) in reader.into_tensors() {
        let data = snapshot.to_data().map_err(|e| IoError::Tensor {
            path: path.to_path_buf(),
            name: name.clone(),
            message: format!("{e:?}"),
        })?;
        if !data.dtype.is_float() {
            // Buffers such as `position_ids` (int64) are not weights.
            continue;
        }
        let needed = data.num_elements() * data.dtype.size();
        if data.bytes.len() != needed {
            return Err(IoError::Tensor {
                path: path.to_path_buf(),
                name,
                message: format!("{} bytes of data, its shape needs {needed}", data.bytes.len()),
            });
        }
        out.insert(name, HostTensor::from_burn(data));
    }
    Ok(out)
}

/// The weights of a model directory, in HF's order of preference.
pub fn read_model_dir(dir: &Path) -> Result<(PathBuf, TensorMap), IoError> {
    let candidates: [(&str, Reader); 4] = [
        ("model.safetensors", read_safetensors),
        ("model.safetensors.index.json", |p| read_sharded(p, read_safetensors)),
        ("pytorch_model.bin", read_pytorch),
        ("pytorch_model.bin.index.json", |p| read_sharded(p, read_pytorch)),
    ];
    for (file, read) in candidates {
        let path = dir.join(file);
        if path.is_file() {
            let tensors = read(&path)?;
            return Ok((path, tensors));
        }
    }
    Err(IoError::NoWeights { dir: dir.to_path_buf() })
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader (or a crash) never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| IoError::file(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(IoError::file(path, e));
    }
    Ok(())
}

/// Writes f32 tensors as a safetensors file (atomically), with `{"format": "pt"}` metadata as
/// HF writes it.
pub fn write_safetensors(path: &Path, tensors: &TensorMap) -> Result<(), IoError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            let raw: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), raw, t.shape.clone())
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(name, raw, shape)| {
            (name.clone(), TensorView::new(Dtype::F32, shape.clone(), raw).expect("consistent sizes"))
        })
        .collect();
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    let out = safetensors::tensor::serialize(views, Some(metadata)).map_err(|e| IoError::Corrupt {
        path: path.to_path_buf(),
        message: format!("cannot serialise: {e}"),
    })?;
    write_atomic(path, &out)
}
