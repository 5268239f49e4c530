//! Integrity of `pytorch_model.bin` storages, checked before burn-store reads the tensors.
//!
//! In both torch layouts the model pickle (the state dict) names each tensor's storage by a
//! persistent id `('storage', FloatStorage, key, location, numel, ...)` and rebuilds the tensor
//! from `(storage, offset, size, stride)`. burn-store trusts those numbers: it reads `offset ..
//! offset + numel(size)` contiguously, ignores the stride, pads what is missing with zeros, and
//! skips an entry that is not a tensor. So a damaged count, key, offset or tensor entry would load
//! other weights without an error. We run the pickle ourselves (strings, ints and tuples only)
//! and check that its tensors are contiguous, cover their storages exactly, and that the storages
//! agree with the bytes present:
//!
//! - zip layout (torch >= 1.6): every entry is CRC-checked elsewhere; here each `data/KEY` entry
//!   must hold exactly `numel` elements;
//! - legacy layout (five pickles: magic number, protocol, sys info, model, storage-key list, then
//!   one record per key in that order: a u64 element count and the elements; no checksum):
//!   burn-store places each record by adding up the declared counts, so each record's own count
//!   must equal the declared one and the records must end exactly at the end of the file.

use burn_store::pytorch::pickle_reader::{read_pickle, skip_pickle, storage_type_to_element_size, Object};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// One storage reference of the model pickle: its key, element size and element count, and the
/// element ranges the tensors built on it use.
#[derive(Debug, Clone, PartialEq)]
struct StorageRef {
    key: String,
    element_size: usize,
    numel: u64,
    used: Vec<std::ops::Range<u64>>,
}

/// Checks a legacy checkpoint against itself; `tensors` is how many tensors burn-store found in
/// it. Returns what is wrong, or `None` when the file is consistent or not in the legacy layout.
pub(crate) fn legacy_problem(path: &Path, tensors: usize) -> Option<String> {
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
    // Magic number, protocol and sys info parsed: the file is in the legacy layout, so what does
    // not parse from here on is damage (burn-store would otherwise guess where the data starts).
    let model_start = r.stream_position().ok()?;
    if skip_pickle(&mut r).is_err() {
        return Some("damaged or truncated: the model pickle does not parse".into());
    }
    let model_end = r.stream_position().ok()?;
    let Ok(Object::List(keys)) = read_pickle(&mut r) else {
        return Some("damaged or truncated: the storage-key list does not parse".into());
    };
    let data_start = r.stream_position().ok()?;
    let mut model = vec![0u8; (model_end - model_start) as usize];
    r.seek(SeekFrom::Start(model_start)).ok()?;
    r.read_exact(&mut model).ok()?;
    let declared = match storages(&model, tensors) {
        Ok(declared) => declared,
        Err(message) => return Some(message),
    };
    if declared.len() != keys.len() {
        return Some(format!(
            "damaged: the model pickle refers to {} storages, the storage-key list names {}",
            declared.len(),
            keys.len()
        ));
    }
    // Walk the data section record by record, in key-list order, as burn-store will.
    let file_len = r.seek(SeekFrom::End(0)).ok()?;
    let mut at = data_start;
    for key in &keys {
        let Object::String(key) = key else {
            return Some(format!("damaged: storage key {key:?} is not a string"));
        };
        let Some(&(element_size, numel)) = declared.get(key.as_str()) else {
            return Some(format!("damaged: storage key {key:?} is not used by any tensor"));
        };
        let mut count = [0u8; 8];
        if r.seek(SeekFrom::Start(at)).is_err() || r.read_exact(&mut count).is_err() {
            return Some(format!("truncated: the file ends before storage {key:?} (byte {at})"));
        }
        let count = u64::from_le_bytes(count);
        if count != numel {
            return Some(format!(
                "damaged: storage {key:?} holds {count} elements at byte {at}, its tensors say {numel}"
            ));
        }
        let Some(next) = count.checked_mul(element_size as u64).and_then(|n| n.checked_add(at + 8)) else {
            return Some(format!("damaged: storage {key:?} claims {count} elements"));
        };
        if next > file_len {
            return Some(format!(
                "truncated: storage {key:?} needs bytes {}..{next}, the file has {file_len}",
                at + 8
            ));
        }
        at = next;
    }
    if at != file_len {
        return Some(format!(
            "damaged: {} bytes after the last storage (byte {at}) that no storage accounts for",
            file_len - at
        ));
    }
    None
}

/// The storages a model pickle declares, by key: element size and element count. Errors when its
/// tensors do not add up (`tensors`: how many burn-store found).
fn storages(pickle: &[u8], tensors: usize) -> Result<HashMap<String, (usize, u64)>, String> {
    let refs = storage_refs(pickle).map_err(|message| format!("damaged: the model pickle {message}"))?;
    // torch writes one persistent id per tensor it pickles (a tensor stored twice under two
    // names is memoised, so fewer ids than tensors is fine). More ids than tensors means damage
    // turned a tensor entry into something else, which burn-store skips.
    if refs.len() > tensors {
        return Err(format!(
            "damaged: the model pickle refers to {} tensors, only {tensors} of them read back",
            refs.len()
        ));
    }
    // What burn-store will take each storage to be: the largest numel any reference gives.
    let mut declared: HashMap<String, (usize, u64)> = HashMap::new();
    let mut used: HashMap<&str, Vec<std::ops::Range<u64>>> = HashMap::new();
    for s in &refs {
        let entry = declared.entry(s.key.clone()).or_insert((s.element_size, s.numel));
        if entry.0 != s.element_size {
            return Err(format!("damaged: storage {:?} is referred to with two element types", s.key));
        }
        entry.1 = entry.1.max(s.numel);
        used.entry(&s.key).or_default().extend(s.used.iter().cloned());
    }
    // Every element of every storage belongs to some tensor. A damaged size or offset leaves
    // a gap; so would a checkpoint of uncloned tensor views, which we do not read either.
    for (key, ranges) in &mut used {
        ranges.sort_by_key(|r| r.start);
        let numel = declared[*key].1;
        let covered = ranges.iter().try_fold(0u64, |end, r| (r.start <= end).then_some(end.max(r.end)));
        if covered != Some(numel) {
            return Err(format!(
                "damaged: the tensors on storage {key:?} do not cover its {numel} elements (or the \
                 checkpoint holds tensor views: load it in torch and save clones)"
            ));
        }
    }
    Ok(declared)
}

/// Checks a zip-layout checkpoint's storages (entries `PREFIX/data/KEY`) against its
/// `PREFIX/data.pkl`; `entries` are the archive's (name, size) pairs and `pickle` that entry's
/// bytes. Returns what is wrong, or `None`.
pub(crate) fn zip_problem(entries: &[(String, u64)], pickle: &[u8], tensors: usize) -> Option<String> {
    let declared = match storages(pickle, tensors) {
        Ok(declared) => declared,
        Err(message) => return Some(message),
    };
    let stored: HashMap<&str, u64> =
        entries.iter().filter_map(|(name, size)| Some((name.rsplit_once("/data/")?.1, *size))).collect();
    for (key, &(element_size, numel)) in &declared {
        let want = numel.saturating_mul(element_size as u64);
        match stored.get(key.as_str()) {
            None => return Some(format!("damaged: no entry for storage {key:?}")),
            Some(&size) if size != want => {
                return Some(format!(
                "damaged: storage {key:?} has {size} bytes, its tensors say {numel} elements ({want} bytes)"
            ))
            }
            Some(_) => {}
        }
    }
    None
}

/// A pickle value, as far as a storage reference needs it.
#[derive(Debug, Clone)]
enum Value {
    Mark,
    Str(String),
    Int(i64),
    Tuple(Vec<Value>),
    /// The result of a persistent id: the storage reference with this index.
    Storage(usize),
    Other,
}

/// The storage references (persistent ids) of a protocol 2-5 pickle, in order, by running the
/// pickle machine on a stack that keeps only strings, ints and tuples. Errors say what is wrong.
fn storage_refs(pickle: &[u8]) -> Result<Vec<StorageRef>, String> {
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<u64, Value> = HashMap::new();
    let mut refs = Vec::new();
    let mut at = 0usize;
    let bad = |at: usize, what: &str| format!("is damaged at byte {at} ({what})");
    let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
        let bytes = at.checked_add(n).and_then(|end| pickle.get(*at..end)).ok_or("ends early")?;
        *at += n;
        Ok(bytes)
    };
    let uint = |b: &[u8]| b.iter().rev().fold(0u64, |n, &x| (n << 8) | x as u64);
    let line = |at: &mut usize| -> Result<String, String> {
        let n = pickle.get(*at..).and_then(|rest| rest.iter().position(|&b| b == b'\n'));
        let n = n.ok_or("has an unterminated line")?;
        let text = String::from_utf8_lossy(&pickle[*at..*at + n]).into_owned();
        *at += n + 1;
        Ok(text)
    };
    fn pop(stack: &mut Vec<Value>, at: usize) -> Result<Value, String> {
        stack.pop().ok_or_else(|| format!("is damaged at byte {at} (stack underflow)"))
    }
    fn pop_mark(stack: &mut Vec<Value>, at: usize) -> Result<Vec<Value>, String> {
        let mark = stack.iter().rposition(|v| matches!(v, Value::Mark));
        let mark = mark.ok_or_else(|| format!("is damaged at byte {at} (no mark)"))?;
        let items = stack.split_off(mark + 1);
        stack.pop();
        Ok(items)
    }
    while at < pickle.len() {
        let here = at;
        let op = pickle[at];
        at += 1;
        match op {
            b'.' => return Ok(refs),
            b'(' => stack.push(Value::Mark),
            // Strings: (SHORT_)BINUNICODE(8), (SHORT_)BINSTRING, (SHORT_)BINBYTES(8).
            b'U' | b'C' | 0x8c => {
                let n = uint(take(&mut at, 1)?) as usize;
                stack.push(Value::Str(String::from_utf8_lossy(take(&mut at, n)?).into_owned()));
            }
            b'T' | b'X' | b'B' => {
                let n = uint(take(&mut at, 4)?) as usize;
                stack.push(Value::Str(String::from_utf8_lossy(take(&mut at, n)?).into_owned()));
            }
            0x8d | 0x8e => {
                let n = usize::try_from(uint(take(&mut at, 8)?)).map_err(|_| bad(here, "length"))?;
                stack.push(Value::Str(String::from_utf8_lossy(take(&mut at, n)?).into_owned()));
            }
            b'S' | b'V' => {
                let text = line(&mut at)?;
                stack.push(Value::Str(text.trim_matches(|c| c == '\'' || c == '"').to_string()));
            }
            // Ints: BININT1, BININT2, BININT (signed), LONG1, INT and LONG as text.
            b'K' => stack.push(Value::Int(uint(take(&mut at, 1)?) as i64)),
            b'M' => stack.push(Value::Int(uint(take(&mut at, 2)?) as i64)),
            b'J' => stack.push(Value::Int(uint(take(&mut at, 4)?) as u32 as i32 as i64)),
            0x8a => {
                let n = uint(take(&mut at, 1)?) as usize;
                let bytes = take(&mut at, n)?;
                // Little-endian two's complement; storage sizes fit in 8 bytes.
                let value = match n {
                    0 => 0,
                    1..=8 => {
                        let shift = 64 - 8 * n as u32;
                        ((uint(bytes) << shift) as i64) >> shift
                    }
                    _ => return Err(bad(here, "LONG1 over 8 bytes")),
                };
                stack.push(Value::Int(value));
            }
            b'I' | b'L' => {
                let text = line(&mut at)?;
                let value = text.trim_end_matches('L').parse().map_err(|_| bad(here, "INT"))?;
                stack.push(Value::Int(value));
            }
            0x8b => {
                let n = usize::try_from(uint(take(&mut at, 4)?)).map_err(|_| bad(here, "length"))?;
                take(&mut at, n)?;
                stack.push(Value::Other);
            }
            b'F' => {
                line(&mut at)?;
                stack.push(Value::Other);
            }
            b'G' => {
                take(&mut at, 8)?;
                stack.push(Value::Other);
            }
            // GLOBAL "module\nname\n": the storage type is a class such as torch.FloatStorage.
            b'c' => {
                line(&mut at)?;
                stack.push(Value::Str(line(&mut at)?));
            }
            0x93 => {
                let name = pop(&mut stack, here)?;
                pop(&mut stack, here)?;
                stack.push(name);
            }
            b'N' | b')' | b']' | b'}' | 0x88 | 0x89 | 0x8f => stack.push(match op {
                b')' => Value::Tuple(Vec::new()),
                _ => Value::Other,
            }),
            b't' => {
                let items = pop_mark(&mut stack, here)?;
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err(bad(here, "stack underflow"));
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            // Memo: BINPUT, LONG_BINPUT, PUT, MEMOIZE; BINGET, LONG_BINGET, GET.
            b'q' | b'r' | b'p' | 0x94 => {
                let index = match op {
                    b'q' => uint(take(&mut at, 1)?),
                    b'r' => uint(take(&mut at, 4)?),
                    b'p' => line(&mut at)?.parse().map_err(|_| bad(here, "PUT"))?,
                    _ => memo.len() as u64,
                };
                let top = stack.last().ok_or_else(|| bad(here, "stack underflow"))?.clone();
                memo.insert(index, top);
            }
            b'h' | b'j' | b'g' => {
                let index = match op {
                    b'h' => uint(take(&mut at, 1)?),
                    b'j' => uint(take(&mut at, 4)?),
                    _ => line(&mut at)?.parse().map_err(|_| bad(here, "GET"))?,
                };
                let value = memo.get(&index).ok_or_else(|| bad(here, "memo entry not defined"))?;
                stack.push(value.clone());
            }
            // BINPERSID: the storage reference.
            b'Q' => {
                let id = pop(&mut stack, here)?;
                refs.push(storage_ref(&id).ok_or_else(|| bad(here, "not a storage reference"))?);
                stack.push(Value::Storage(refs.len() - 1));
            }
            b'P' => return Err(bad(here, "text persistent id")),
            // Pop to the mark, push one: LIST, DICT, INST-less builders; pop to the mark: APPENDS,
            // SETITEMS, POP_MARK, ADDITEMS; the mark stays below the container they fill.
            b'l' | b'd' | 0x91 => {
                pop_mark(&mut stack, here)?;
                stack.push(Value::Other);
            }
            b'e' | b'u' | b'1' | 0x90 => {
                pop_mark(&mut stack, here)?;
            }
            b'a' | b'0' | b'b' => {
                pop(&mut stack, here)?;
            }
            b's' => {
                pop(&mut stack, here)?;
                pop(&mut stack, here)?;
            }
            b'R' | 0x81 => {
                let args = pop(&mut stack, here)?;
                pop(&mut stack, here)?;
                if let Value::Tuple(args) = &args {
                    check_tensor(args, &mut refs).map_err(|e| bad(here, &e))?;
                }
                stack.push(Value::Other);
            }
            0x92 => {
                for _ in 0..3 {
                    pop(&mut stack, here)?;
                }
                stack.push(Value::Other);
            }
            b'2' => {
                let top = stack.last().ok_or_else(|| bad(here, "stack underflow"))?.clone();
                stack.push(top);
            }
            0x80 => {
                take(&mut at, 1)?;
            }
            0x95 => {
                take(&mut at, 8)?;
            }
            _ => return Err(bad(here, &format!("unknown opcode 0x{op:02x}"))),
        }
    }
    Err("ends without STOP".into())
}

/// The arguments of torch's `_rebuild_tensor(_v2)`: `(storage, offset, size, stride, ...)`.
/// burn-store reads `offset .. offset + numel` of the storage as a contiguous tensor, so the
/// tensor must be contiguous and fit in its storage; anything else would load other values.
fn check_tensor(args: &[Value], refs: &mut [StorageRef]) -> Result<(), String> {
    let [Value::Storage(storage), rest @ ..] = args else {
        return Ok(());
    };
    let [offset, Value::Tuple(size), Value::Tuple(stride), ..] = rest else {
        return Err("a tensor's arguments are not (storage, offset, size, stride, ...)".into());
    };
    let ints = |v: &[Value]| -> Option<Vec<u64>> {
        v.iter().map(|x| if let Value::Int(n) = x { u64::try_from(*n).ok() } else { None }).collect()
    };
    let (Value::Int(offset), Some(size), Some(stride)) = (offset, ints(size), ints(stride)) else {
        return Err("a tensor's offset, size or stride is not a list of non-negative ints".into());
    };
    let storage = &mut refs[*storage];
    let mut contiguous = 1u64;
    for (&n, &s) in size.iter().zip(&stride).rev() {
        if n > 1 && s != contiguous {
            return Err(format!(
                "a tensor on storage {:?} is not contiguous (stride {stride:?})",
                storage.key
            ));
        }
        contiguous = contiguous.saturating_mul(n);
    }
    if contiguous == 0 {
        // burn-store cannot build an empty tensor; no DeBERTa checkpoint holds one.
        return Err(format!("a tensor on storage {:?} has no elements (size {size:?})", storage.key));
    }
    let start = u64::try_from(*offset).ok();
    let range = start.and_then(|o| Some(o..o.checked_add(contiguous)?));
    match range {
        Some(range) if size.len() == stride.len() && range.end <= storage.numel => {
            storage.used.push(range);
            Ok(())
        }
        _ => Err(format!(
            "a tensor of size {size:?} at offset {offset} does not fit its storage {:?} of {} elements",
            storage.key, storage.numel
        )),
    }
}

/// `('storage', FloatStorage, key, location, numel, ...)` as torch's legacy save writes it.
fn storage_ref(id: &Value) -> Option<StorageRef> {
    let Value::Tuple(items) = id else { return None };
    match items.as_slice() {
        [Value::Str(kind), Value::Str(storage), Value::Str(key), _, Value::Int(numel), ..]
            if kind == "storage" =>
        {
            Some(StorageRef {
                key: key.clone(),
                element_size: storage_type_to_element_size(storage).ok()?,
                numel: u64::try_from(*numel).ok()?,
                used: Vec::new(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-written protocol 2 pickle in the shape of `torch.save`'s persistent ids: two
    /// tensors sharing storage '7' (numel 6, the second id memoised) and one on storage '9'
    /// (numel 2 as a LONG1, memoised strings). Python's unpickler, with a `persistent_load` that
    /// returns the id, reads it as `[('storage', 'FloatStorage', '7', 'cpu', 6, None), (same),
    /// ('storage', 'FloatStorage', '9', 'cpu', 2, None)]`.
    #[test]
    fn reads_storage_references_with_memo_and_long_counts() {
        // (('storage', FloatStorage, '7', 'cpu', 6, None) persid, same again via memo,
        //  ('storage', FloatStorage, '9', 'cpu', 2 as LONG1, None) persid) in a list.
        let mut p = vec![0x80, 0x02, b']', b'q', 0x00, b'('];
        p.extend(b"(X\x07\x00\x00\x00storageq\x01ctorch\nFloatStorage\nq\x02X\x01\x00\x00\x007q\x03X\x03\x00\x00\x00cpuq\x04K\x06Ntq\x05Q");
        p.extend(b"h\x05Q");
        p.extend(b"(h\x01h\x02X\x01\x00\x00\x009h\x04\x8a\x01\x02NtQ");
        p.extend(b"e.");
        let refs = storage_refs(&p).unwrap();
        let want = |key: &str, numel| StorageRef { key: key.into(), element_size: 4, numel, used: vec![] };
        assert_eq!(refs, vec![want("7", 6), want("7", 6), want("9", 2)]);
    }

    #[test]
    fn damaged_pickles_are_errors() {
        // A persistent id that is no storage tuple; an unknown opcode; no STOP.
        assert!(storage_refs(b"\x80\x02K\x01Q.").unwrap_err().contains("not a storage reference"));
        assert!(storage_refs(b"\x80\x02\xff.").unwrap_err().contains("unknown opcode 0xff"));
        assert!(storage_refs(b"\x80\x02K\x01").unwrap_err().contains("without STOP"));
        assert!(storage_refs(b"\x80\x02h\x09.").unwrap_err().contains("memo entry"));
    }
}
