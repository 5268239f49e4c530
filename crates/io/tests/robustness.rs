//! Property tests (proptest, fixed seed, so CI runs are reproducible) for the checkpoint readers
//! on damaged copies of small fixture checkpoints. Each damaged file must give an error or
//! exactly the original tensors: never a panic, never different weights loaded silently.
//!
//! - `safetensors_damage` (256 cases): truncations anywhere; bit and byte flips only in the
//!   8-byte length prefix and the JSON header. Safetensors has no checksum, so a flip inside the
//!   raw tensor data is a different (valid) file that no reader can tell apart.
//! - `torch_zip_damage` (128 cases): truncations and flips anywhere; the zip CRC-32 of every
//!   entry must catch a flip in the data.
//! - `torch_legacy_damage` (128 cases): truncations anywhere; flips in the model pickle and the
//!   storage-key list pickle before the raw storages (the legacy layout has no checksum, so a
//!   flip inside the raw storages is, as for safetensors, a different valid file).
//!
//! A flip inside a tensor's *name* gives the same tensors under another name: the reader cannot
//! know the name was meant to be different (there is nothing to check it against), and loading
//! a model from it then fails on the missing key. Such results are accepted as long as the
//! tensors themselves are identical.

mod common;

use common::proptest_config as config;
use deberta_io::tensors::{read_pytorch, read_safetensors, HostTensor, Reader, TensorMap};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/parity").join(rel)
}

#[derive(Debug, Clone)]
enum Damage {
    Truncate(u64),
    /// (position, bit) pairs.
    FlipBits(Vec<(u64, u8)>),
    /// (position, new byte) pairs.
    SetBytes(Vec<(u64, u8)>),
}

fn damage() -> impl Strategy<Value = Damage> {
    let flips = || proptest::collection::vec((any::<u64>(), any::<u8>()), 1..6);
    prop_oneof![
        any::<u64>().prop_map(Damage::Truncate),
        flips().prop_map(Damage::FlipBits),
        flips().prop_map(Damage::SetBytes),
    ]
}

/// Applies `d` to `bytes`: truncations anywhere, flips within `bytes[flip_region]`.
fn apply(bytes: &[u8], d: &Damage, flip_region: std::ops::Range<usize>) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let (lo, n) = (flip_region.start as u64, flip_region.len() as u64);
    match d {
        Damage::Truncate(at) => out.truncate((at % bytes.len() as u64) as usize),
        Damage::FlipBits(f) => {
            for &(at, bit) in f {
                out[(lo + at % n) as usize] ^= 1 << (bit % 8);
            }
        }
        Damage::SetBytes(f) => {
            for &(at, b) in f {
                out[(lo + at % n) as usize] = b;
            }
        }
    }
    out
}

fn bits(t: &HostTensor) -> (Vec<usize>, Vec<u32>) {
    (t.shape.clone(), t.data.iter().map(|x| x.to_bits()).collect())
}

/// Reads the damaged copy; Ok only if it is an error or the same tensors (names may differ
/// when a flip hit a name, see the module comment).
fn check(
    name: &str,
    reader: Reader,
    original: &TensorMap,
    damaged: &[u8],
    d: &Damage,
) -> Result<(), TestCaseError> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("robustness");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, damaged).unwrap();
    let result = reader(&path);
    let Ok(loaded) = result else { return Ok(()) };
    if &loaded == original {
        return Ok(());
    }
    prop_assert!(!matches!(d, Damage::Truncate(_)), "{name}: a truncated file loaded different tensors");
    let mut a: Vec<_> = original.values().map(bits).collect();
    let mut b: Vec<_> = loaded.values().map(bits).collect();
    a.sort();
    b.sort();
    let diff: Vec<_> = original.keys().filter(|k| loaded.get(*k) != original.get(*k)).take(3).collect();
    prop_assert!(
        a == b,
        "{name}: damage {d:?} loaded different weights silently (first differing: {diff:?})"
    );
    Ok(())
}

fn safetensors_header_end(bytes: &[u8]) -> usize {
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

/// Where the model pickle and the storage-key list pickle of a legacy torch file start and end
/// (the raw storages follow them), after the magic-number, protocol and sys-info pickles.
fn legacy_pickles(path: &Path) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    use burn_store::pytorch::pickle_reader::{read_pickle, skip_pickle};
    use std::io::Seek;
    let mut r = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    for _ in 0..3 {
        read_pickle(&mut r).unwrap();
    }
    let model = r.stream_position().unwrap() as usize;
    skip_pickle(&mut r).unwrap();
    let keys = r.stream_position().unwrap() as usize;
    read_pickle(&mut r).unwrap();
    (model..keys, keys..r.stream_position().unwrap() as usize)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn safetensors_damage(d in damage()) {
        let path = fixture("v3_base_model/model.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let original = read_safetensors(&path).unwrap();
        let damaged = apply(&bytes, &d, 0..safetensors_header_end(&bytes));
        check("model.safetensors", read_safetensors, &original, &damaged, &d)?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn torch_zip_damage(d in damage()) {
        let path = fixture("v2_conv_mlm_legacy/pytorch_model.bin");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], b"PK\x03\x04");
        let original = read_pytorch(&path).unwrap();
        let damaged = apply(&bytes, &d, 0..bytes.len());
        check("zip_pytorch_model.bin", read_pytorch, &original, &damaged, &d)?;
    }

    #[test]
    fn torch_legacy_damage(d in damage()) {
        let path = fixture("nobucket_c2p_tokcls/pytorch_model.bin");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..2], [0x80, 0x02]);
        let original = read_pytorch(&path).unwrap();
        let (model, keys) = legacy_pickles(&path);
        let damaged = apply(&bytes, &d, model.start..keys.end);
        check("legacy_pytorch_model.bin", read_pytorch, &original, &damaged, &d)?;
    }
}

/// Regression (found by `torch_legacy_damage`): a zeroed first byte of the storage-key list made
/// the storage check give up and burn-store load the storages from the wrong place.
#[test]
fn legacy_damaged_storage_key_list_is_an_error() {
    let path = fixture("nobucket_c2p_tokcls/pytorch_model.bin");
    let bytes = std::fs::read(&path).unwrap();
    let original = read_pytorch(&path).unwrap();
    let mut damaged = bytes.clone();
    // The PROTO opcode that starts the storage-key list pickle.
    assert_eq!(legacy_pickles(&path).1.start, 5369);
    damaged[5369] = 0;
    assert!(read_pytorch_bytes(&damaged, "legacy_key_list.bin").is_err());
    let d = Damage::SetBytes(vec![(5369, 0)]);
    check("legacy_key_list.bin", read_pytorch, &original, &damaged, &d).unwrap();
}

/// Regression (found by `torch_legacy_damage`): a zeroed byte inside a storage key of the key
/// list left the data section intact, and burn-store read the storages from the wrong place.
#[test]
fn legacy_damaged_storage_key_is_an_error() {
    let path = fixture("nobucket_c2p_tokcls/pytorch_model.bin");
    let bytes = std::fs::read(&path).unwrap();
    let original = read_pytorch(&path).unwrap();
    let mut damaged = bytes.clone();
    // A digit of the storage key '93842430871744'.
    assert_eq!(&bytes[5674..5688], b"93842430871744");
    damaged[5680] = 0;
    assert!(read_pytorch_bytes(&damaged, "legacy_key.bin").is_err());
    let d = Damage::SetBytes(vec![(5680, 0)]);
    check("legacy_key2.bin", read_pytorch, &original, &damaged, &d).unwrap();
}

/// Regression (found by `torch_zip_damage` at 3,000 cases): a damaged first letter of an entry
/// name in the zip's central directory (not covered by the CRC) made burn-store take another
/// storage for a tensor.
#[test]
fn zip_entry_name_outside_the_folder_is_an_error() {
    let path = fixture("v2_conv_mlm_legacy/pytorch_model.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[142495..142511], b"pytorch_model/da");
    bytes[142495] = 128;
    let error = read_pytorch_bytes(&bytes, "zip_entry_name.bin").unwrap_err().to_string();
    assert!(error.contains("is outside the archive's folder `pytorch_model/`"), "{error}");
}

/// A zip checkpoint whose storage entry is shorter than its tensors say, but rewritten with a
/// correct CRC (a writer's bug rather than damage): burn-store would pad it with zeros.
#[test]
fn zip_storage_shorter_than_its_tensors_is_an_error() {
    use std::io::{Read, Write};
    let path = fixture("v2_conv_mlm_legacy/pytorch_model.bin");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut cut = None;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if cut.is_none() && name.contains("/data/") && bytes.len() > 4 {
            bytes.truncate(bytes.len() - 4);
            cut = Some(name.clone());
        }
        out.start_file(name, stored).unwrap();
        out.write_all(&bytes).unwrap();
    }
    let bytes = out.finish().unwrap().into_inner();
    let error = read_pytorch_bytes(&bytes, "zip_short_storage.bin").unwrap_err().to_string();
    let key = cut.unwrap().rsplit_once("/data/").unwrap().1.to_string();
    assert!(error.contains(&format!("storage {key:?} has")) && error.contains("its tensors say"), "{error}");
}

fn read_pytorch_bytes(bytes: &[u8], name: &str) -> Result<TensorMap, deberta_io::IoError> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("robustness");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
    read_pytorch(&dir.join(name))
}

/// Regression (found by `torch_legacy_damage`): one bit flip in the model pickle turns a
/// `BINGET 2` (`torch._utils._rebuild_tensor_v2`) into `BINGET 10` (`collections.OrderedDict`),
/// so one entry is no tensor; the data section still fits the storage-key list, and burn-store
/// skipped that entry while loading the others. The model pickle's persistent ids (one per
/// tensor) now outnumber the tensors read back, which is an error.
#[test]
fn legacy_model_pickle_flip_is_an_error() {
    let path = fixture("nobucket_c2p_tokcls/pytorch_model.bin");
    let bytes = std::fs::read(&path).unwrap();
    let original = read_pytorch(&path).unwrap();
    let mut damaged = bytes.clone();
    assert_eq!(&bytes[5054..5056], b"h\x02");
    damaged[5055] ^= 1 << 3;
    let error = read_pytorch_bytes(&damaged, "legacy_model_pickle.bin").unwrap_err().to_string();
    assert!(error.contains("refers to 41 tensors, only 40 of them read back"), "{error}");
    let d = Damage::FlipBits(vec![(5055, 3)]);
    check("legacy_model_pickle.bin", read_pytorch, &original, &damaged, &d).unwrap();
}
