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
/// open, and every entry must read back to its recorded size with a matching CRC-32. Files that
/// are not zip archives (the legacy layout) pass through.
fn check_torch_zip(path: &Path) -> Result<(), IoError> {
    use std::io::Read;
    let corrupt = |message: String| IoError::Corrupt { path: path.to_path_buf(), message };
    let mut file = std::fs::File::open(path).map_err(|e| IoError::file(path, e))?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(|e| IoError::file(path, e))?;
    if n < 4 || magic != *b"PK\x03\x04" {
        return Ok(());
    }
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| corrupt(format!("damaged or truncated zip archive ({e})")))?;
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| corrupt(format!("zip entry {i}: {e}")))?;
        let name = entry.name().map(|n| n.to_string()).unwrap_or_else(|_| format!("#{i}"));
        let expected = entry.size();
        let mut read = 0u64;
        loop {
            match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => read += n as u64,
                Err(e) => return Err(corrupt(format!("zip entry `{name}`: {e} (damaged or truncated)"))),
            }
        }
        if read != expected {
            return Err(corrupt(format!(
                "zip entry `{name}`: {read} bytes, expected {expected} (truncated)"
            )));
        }
    }
    Ok(())
}

/// Checks that the raw storages of a legacy (pre-1.6) torch file fill its data section exactly.
/// That section is one record per storage, in the order of the storage-key list: a u64 element
/// count, then the elements. burn-store reads a record cut short as zeros, so a truncated file
/// would load silently. `sizes` are the element sizes the file's tensors use. Returns an error
/// message, or `None` when the file is consistent (or is not in the legacy layout).
fn legacy_storage_problem(path: &Path, sizes: &[usize]) -> Option<String> {
    use burn_store::pytorch::pickle_reader::{read_pickle, skip_pickle, Object};
    use std::io::{Read, Seek};
    let mut r = std::io::BufReader::new(std::fs::File::open(path).ok()?);
    let mut magic = [0u8; 2];
    r.read_exact(&mut magic).ok()?;
    if magic != [0x80, 0x02] {
        return None;
    }
    r.rewind().ok()?;
    for _ in 0..3 {
        read_pickle(&mut r).ok()?;
    }
    // Magic number, protocol and sys-info parsed: the file is in the legacy layout, so what does
    // not parse from here on is damage (burn-store would otherwise guess where the data starts).
    let model_start = r.stream_position().ok()?;
    if skip_pickle(&mut r).is_err() {
        return Some("damaged or truncated: the model pickle does not parse".into());
    }
    let model_end = r.stream_position().ok()?;
    let Ok(Object::List(keys)) = read_pickle(&mut r) else {
        return Some("damaged or truncated: the storage-key list does not parse".into());
    };
    let start = r.stream_position().ok()?;
    // Every storage the key list names must be one the model pickle refers to (burn-store
    // matches them by key; a damaged key would make it read the storages from the wrong place).
    let mut model = vec![0u8; (model_end - model_start) as usize];
    r.seek(std::io::SeekFrom::Start(model_start)).ok()?;
    r.read_exact(&mut model).ok()?;
    for key in &keys {
        let Object::String(key) = key else {
            return Some(format!("damaged: storage key {key:?} is not a string"));
        };
        if key.is_empty() || !model.windows(key.len()).any(|w| w == key.as_bytes()) {
            return Some(format!("damaged: storage key {key:?} is not used by any tensor"));
        }
    }
    r.seek(std::io::SeekFrom::Start(start)).ok()?;
    let mut data = Vec::new();
    r.read_to_end(&mut data).ok()?;
    // Depth-first over the element size of each record (one size in practice; a few at most).
    fn tiles(data: &[u8], pos: usize, left: usize, sizes: &[usize], budget: &mut usize) -> bool {
        if left == 0 {
            return pos == data.len();
        }
        let Some(head) = data.get(pos..pos + 8) else { return false };
        let count = u64::from_le_bytes(head.try_into().expect("8 bytes")) as usize;
        sizes.iter().any(|&e| {
            *budget = budget.saturating_sub(1);
            *budget > 0
                && count
                    .checked_mul(e)
                    .and_then(|n| n.checked_add(pos + 8))
                    .is_some_and(|next| next <= data.len() && tiles(data, next, left - 1, sizes, budget))
        })
    }
    let mut budget = 100_000;
    if tiles(&data, 0, keys.len(), sizes, &mut budget) || budget == 0 {
        return None;
    }
    Some(format!(
        "damaged or truncated: the {} bytes after byte {start} do not hold the {} storages the file lists",
        data.len(),
        keys.len()
    ))
}

/// Reads a `pytorch_model.bin` (torch zip format or the pre-1.6 legacy pickle layout).
pub fn read_pytorch(path: &Path) -> Result<TensorMap, IoError> {
    check_torch_zip(path)?;
    let reader = burn_store::pytorch::PytorchReader::new(path).map_err(|e| IoError::Corrupt {
        path: path.to_path_buf(),
        message: format!("not a readable PyTorch checkpoint: {e}"),
    })?;
    let mut sizes: Vec<usize> = reader.tensors().values().map(|t| t.dtype.size()).collect();
    sizes.sort_unstable();
    sizes.dedup();
    if let Some(message) = legacy_storage_problem(path, &sizes) {
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
