//! Pre-training corpus (docs/pretraining.md): text files are streamed, tokenized once into a
//! memory-mapped cache of little-endian `u32` ids, and the concatenated stream is cut into
//! fixed-length lines `[CLS] tokens [SEP]`. Each epoch visits the lines in a fresh seeded order,
//! so a batch is a pure function of (seed, step): resuming needs no saved iterator state.

use deberta_tokenizer::DebertaTokenizer;
use memmap2::Mmap;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Line { path: PathBuf, line: usize, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CorpusError + '_ {
    move |source| CorpusError::Io { path: path.to_path_buf(), source }
}

/// The text files named by `paths`: files as given, directories walked recursively (hidden
/// entries skipped), in sorted order so the token stream does not depend on the file system.
/// A directory reached twice (through symbolic links) is walked once; anything that is not a
/// regular file or a directory (a device such as `/dev/zero`, a FIFO, a socket) is an error.
pub fn corpus_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CorpusError> {
    fn walk(
        dir: &Path,
        seen: &mut std::collections::HashSet<PathBuf>,
        out: &mut Vec<PathBuf>,
    ) -> Result<(), CorpusError> {
        if !seen.insert(std::fs::canonicalize(dir).map_err(io(dir))?) {
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .map(|e| e.map(|e| e.path()).map_err(io(dir)))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for path in entries {
            if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
                continue;
            }
            let meta = std::fs::metadata(&path).map_err(io(&path))?;
            if meta.is_dir() {
                walk(&path, seen, out)?;
            } else {
                out.push(regular(&path, &meta)?);
            }
        }
        Ok(())
    }
    fn regular(path: &Path, meta: &std::fs::Metadata) -> Result<PathBuf, CorpusError> {
        if meta.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(CorpusError::Invalid(format!(
                "{}: not a regular file or a directory (devices, pipes and sockets are not corpus text)",
                path.display()
            )))
        }
    }
    let mut files = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(io(path))?;
        if meta.is_dir() {
            walk(path, &mut seen, &mut files)?;
        } else {
            files.push(regular(path, &meta)?);
        }
    }
    if files.is_empty() {
        return Err(CorpusError::Invalid(format!("no files in the corpus {paths:?}")));
    }
    Ok(files)
}

/// FNV-1a: a stable (across Rust versions) fingerprint for cache names.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// Identifies the token stream: the tokenizer's bytes and every file's path, size and mtime.
fn fingerprint(files: &[PathBuf], tokenizer: &Path) -> Result<u64, CorpusError> {
    let mut h = fnv1a(0xcbf29ce484222325, &std::fs::read(tokenizer).map_err(io(tokenizer))?);
    for f in files {
        let meta = std::fs::metadata(f).map_err(io(f))?;
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        h = fnv1a(h, f.to_string_lossy().as_bytes());
        h = fnv1a(h, &meta.len().to_le_bytes());
        h = fnv1a(h, &mtime.map_or(0, |d| d.as_nanos()).to_le_bytes());
    }
    Ok(h)
}

/// The tokenized corpus, memory-mapped.
pub struct TokenCache {
    pub path: PathBuf,
    map: Option<Mmap>,
    len: usize,
    max_id: Option<u32>,
}

/// Lines tokenized together (in parallel) before they are appended to the cache.
const CHUNK_LINES: usize = 4096;

/// The longest line read: a file with more bytes than this without a newline is not text.
pub const MAX_LINE_BYTES: u64 = 64 << 20;

/// Reads one line (with its `\n`) into `buf`, at most [`MAX_LINE_BYTES`]; 0 at the end.
fn read_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    path: &Path,
    line: usize,
) -> Result<usize, CorpusError> {
    use std::io::Read;
    let n = reader.by_ref().take(MAX_LINE_BYTES + 1).read_until(b'\n', buf).map_err(io(path))?;
    if n as u64 > MAX_LINE_BYTES {
        return Err(CorpusError::Line {
            path: path.to_path_buf(),
            line,
            message: format!(
                "more than {} MiB without a newline: not line-oriented text",
                MAX_LINE_BYTES >> 20
            ),
        });
    }
    Ok(n)
}

/// A hash of the cache's ids, kept in the sidecar to catch truncated or modified caches.
fn checksum(hash: u64, ids: impl Iterator<Item = u32>) -> u64 {
    ids.fold(hash, |h, id| (h ^ id as u64).wrapping_mul(0x100000001b3))
}

const CHECKSUM_START: u64 = 0xcbf29ce484222325;

/// `tokens-<fp>.bin.meta`: the cache's token count and checksum, written after the cache.
fn meta_path(cache: &Path) -> PathBuf {
    let mut name = cache.file_name().unwrap_or_default().to_os_string();
    name.push(".meta");
    cache.with_file_name(name)
}

impl TokenCache {
    /// Opens `dir/tokens-<fingerprint>.bin`, building it first if it does not exist. The cache is
    /// written to a temporary file and renamed, so an interrupted build leaves no bad cache.
    /// `progress` is called with the bytes of text read so far.
    pub fn build_or_open(
        files: &[PathBuf],
        tokenizer: &DebertaTokenizer,
        dir: &Path,
        mut progress: impl FnMut(u64),
    ) -> Result<Self, CorpusError> {
        let fp = fingerprint(files, tokenizer.source())?;
        let path = dir.join(format!("tokens-{fp:016x}.bin"));
        // A cache without its sidecar (an older version's, or a build cut short between the
        // two renames) is rebuilt: tokenizing is deterministic.
        if !path.exists() || !meta_path(&path).exists() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let (mut count, mut hash) = (0u64, CHECKSUM_START);
            let tmp = path.with_extension("bin.tmp");
            let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io(&tmp))?);
            let mut read = 0u64;
            for file in files {
                let mut reader = std::io::BufReader::new(std::fs::File::open(file).map_err(io(file))?);
                let mut line_no = 0usize;
                let mut buf = Vec::new();
                loop {
                    let mut chunk = Vec::with_capacity(CHUNK_LINES);
                    while chunk.len() < CHUNK_LINES {
                        buf.clear();
                        let n = read_line(&mut reader, &mut buf, file, line_no + 1)?;
                        if n == 0 {
                            break;
                        }
                        line_no += 1;
                        read += n as u64;
                        let text =
                            String::from_utf8(std::mem::take(&mut buf)).map_err(|e| CorpusError::Line {
                                path: file.clone(),
                                line: line_no,
                                message: format!("not UTF-8 ({})", e.utf8_error()),
                            })?;
                        chunk.push(text);
                    }
                    if chunk.is_empty() {
                        break;
                    }
                    let ids: Vec<Vec<u32>> = chunk
                        .par_iter()
                        .map(|line| tokenizer.tokenize(line.trim_end()).into_iter().map(|t| t.id).collect())
                        .collect();
                    for id in ids.iter().flatten() {
                        out.write_all(&id.to_le_bytes()).map_err(io(&tmp))?;
                    }
                    count += ids.iter().map(|l| l.len() as u64).sum::<u64>();
                    hash = checksum(hash, ids.iter().flatten().copied());
                    progress(read);
                }
            }
            let file = out.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
            file.sync_all().map_err(io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))?;
            let meta = meta_path(&path);
            let meta_tmp = path.with_extension("bin.meta.tmp");
            std::fs::write(&meta_tmp, format!("tokens {count}\nchecksum {hash:016x}\n"))
                .map_err(io(&meta_tmp))?;
            std::fs::rename(&meta_tmp, &meta).map_err(io(&meta))?;
        }
        Self::open(&path)
    }

    pub fn open(path: &Path) -> Result<Self, CorpusError> {
        let file = std::fs::File::open(path).map_err(io(path))?;
        let bytes = file.metadata().map_err(io(path))?.len() as usize;
        if !bytes.is_multiple_of(4) {
            return Err(CorpusError::Invalid(format!(
                "{}: {bytes} bytes is not a whole number of u32 ids (delete it to rebuild)",
                path.display()
            )));
        }
        // An empty file cannot be mapped on every platform.
        // SAFETY: the cache is only ever written by renaming a finished temporary file over it.
        let map = if bytes == 0 { None } else { Some(unsafe { Mmap::map(&file) }.map_err(io(path))?) };
        let mut cache = TokenCache { path: path.to_path_buf(), map, len: bytes / 4, max_id: None };
        cache.verify()?;
        Ok(cache)
    }

    /// Checks the cache against its sidecar (token count and checksum) when there is one, and
    /// records the largest id.
    fn verify(&mut self) -> Result<(), CorpusError> {
        let bytes = self.map.as_deref().unwrap_or(&[]);
        let ids = || bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        self.max_id = ids().max();
        let meta = meta_path(&self.path);
        let text = match std::fs::read_to_string(&meta) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&meta)(e)),
        };
        let field = |key: &str| {
            text.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).ok_or_else(|| {
                CorpusError::Invalid(format!(
                    "{}: no `{}` line (delete it and the cache to rebuild)",
                    meta.display(),
                    key.trim()
                ))
            })
        };
        let count: u64 = field("tokens ")?
            .parse()
            .map_err(|_| CorpusError::Invalid(format!("{}: bad `tokens` line", meta.display())))?;
        let hash = u64::from_str_radix(field("checksum ")?, 16)
            .map_err(|_| CorpusError::Invalid(format!("{}: bad `checksum` line", meta.display())))?;
        let problem = if count != self.len as u64 {
            Some(format!("holds {} tokens, its {} records {count}", self.len, meta.display()))
        } else if checksum(CHECKSUM_START, ids()) != hash {
            Some(format!("its checksum does not match the one in {}", meta.display()))
        } else {
            None
        };
        match problem {
            Some(p) => Err(CorpusError::Invalid(format!(
                "{}: damaged token cache: {p} (truncated or modified; delete both files to rebuild)",
                self.path.display()
            ))),
            None => Ok(()),
        }
    }

    /// The largest token id in the cache (`None` when it is empty).
    pub fn max_id(&self) -> Option<u32> {
        self.max_id
    }

    /// Every id must be a row of an embedding of `vocab_size` rows.
    pub fn check_ids(&self, vocab_size: usize) -> Result<(), CorpusError> {
        match self.max_id {
            Some(id) if id as usize >= vocab_size => Err(CorpusError::Invalid(format!(
                "{}: token id {id} is outside the model's vocabulary ({vocab_size} ids); the cache does not belong to this model (delete it to rebuild)",
                self.path.display()
            ))),
            _ => Ok(()),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, range: std::ops::Range<usize>) -> Vec<u32> {
        let bytes = self.map.as_deref().unwrap_or(&[]);
        bytes[range.start * 4..range.end * 4]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

/// ((seed, epoch), the permutation of line indices).
type EpochOrder = ((u64, u64), std::sync::Arc<Vec<u32>>);

/// The token stream cut into lines of `seq_len - 2` tokens (the last partial line dropped,
/// unless the corpus is shorter than one line), each framed `[CLS] line [SEP]`. The last
/// `held_out` lines of the stream are kept out of training, for evaluation.
pub struct Lines {
    cache: TokenCache,
    body: usize,
    /// Training lines (all lines but the held-out ones).
    count: usize,
    held_out: usize,
    cls: u32,
    sep: u32,
    /// The last epoch order computed (a permutation of all lines is too big to redo per batch).
    order_cache: std::sync::Mutex<Option<EpochOrder>>,
}

impl Lines {
    pub fn new(cache: TokenCache, seq_len: usize, cls: u32, sep: u32) -> Result<Self, CorpusError> {
        if seq_len < 3 {
            return Err(CorpusError::Invalid(format!("--seq-len {seq_len}: at least 3 ([CLS] x [SEP])")));
        }
        if cache.is_empty() {
            return Err(CorpusError::Invalid(format!(
                "{}: the corpus has no tokens (empty files?)",
                cache.path.display()
            )));
        }
        let body = seq_len - 2;
        let count = (cache.len() / body).max(1);
        Ok(Lines { cache, body, count, held_out: 0, cls, sep, order_cache: Default::default() })
    }

    /// Keeps the last `n` lines out of training (at least one line always stays in training).
    pub fn with_held_out(mut self, n: usize) -> Result<Self, CorpusError> {
        let total = self.count + self.held_out;
        if n >= total {
            return Err(CorpusError::Invalid(format!(
                "{}: {total} line(s) of {} tokens cannot spare {n} for evaluation",
                self.cache.path.display(),
                self.body + 2
            )));
        }
        self.count = total - n;
        self.held_out = n;
        *self.order_cache.lock().expect("not poisoned") = None;
        Ok(self)
    }

    /// The held-out lines, in stream order.
    pub fn held_out_lines(&self) -> Vec<Vec<u32>> {
        (self.count..self.count + self.held_out).map(|k| self.line(k)).collect()
    }

    /// Training lines.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn tokens(&self) -> usize {
        self.cache.len()
    }

    /// Line `k`: `[CLS] tokens [SEP]`.
    pub fn line(&self, k: usize) -> Vec<u32> {
        let start = k * self.body;
        let end = (start + self.body).min(self.cache.len());
        let mut ids = Vec::with_capacity(end - start + 2);
        ids.push(self.cls);
        ids.extend(self.cache.get(start..end));
        ids.push(self.sep);
        ids
    }

    /// The visiting order of `epoch`: a permutation seeded by (seed, epoch).
    pub fn order(&self, seed: u64, epoch: u64) -> Vec<u32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(epoch);
        let mut order: Vec<u32> = (0..self.count as u32).collect();
        order.shuffle(&mut rng);
        order
    }

    /// The lines of global batch `step` (`batch_size` consecutive lines of the epoch orders).
    pub fn batch(&self, seed: u64, step: u64, batch_size: usize) -> Vec<Vec<u32>> {
        (0..batch_size as u64)
            .map(|j| {
                let cursor = step * batch_size as u64 + j;
                let (epoch, index) = (cursor / self.count as u64, (cursor % self.count as u64) as usize);
                self.line(self.epoch_order(seed, epoch)[index] as usize)
            })
            .collect()
    }

    fn epoch_order(&self, seed: u64, epoch: u64) -> std::sync::Arc<Vec<u32>> {
        let mut cache = self.order_cache.lock().expect("not poisoned");
        match &*cache {
            Some((key, order)) if *key == (seed, epoch) => order.clone(),
            _ => {
                let order = std::sync::Arc::new(self.order(seed, epoch));
                *cache = Some(((seed, epoch), order.clone()));
                order
            }
        }
    }

    /// (epoch, line within epoch) reached after `step` batches: for logs and checkpoints.
    pub fn position(&self, step: u64, batch_size: usize) -> (u64, u64) {
        let cursor = step * batch_size as u64;
        (cursor / self.count as u64, cursor % self.count as u64)
    }
}
