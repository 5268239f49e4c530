//! DeBERTa-v3 tokenization.
//!
//! DeBERTa-v3 checkpoints ship a SentencePiece `spm.model` (unigram, byte fallback, `nmt_nfkc`).
//! The official code tokenizes with the sentencepiece library, and the Hugging Face "fast"
//! conversion differs from it (byte fallback, some characters, whitespace runs), so this crate
//! reads `spm.model` itself ([`proto`]) and reimplements the library's normaliser, Viterbi and
//! byte fallback ([`spm`]). The tests compare ids *and* offsets with the library on >1,000 lines
//! per model (fixtures made by `scripts/make_tokenizer_fixtures.py`); every line must match.
//!
//! On top of that [`DebertaTokenizer`] adds the DeBERTa conventions: `[CLS] A [SEP]` and
//! `[CLS] A [SEP] B [SEP]`, token types, attention mask, truncation (`longest_first`,
//! `only_first`, `only_second`) with overflow windows and a stride (the `tokenizers` crate's
//! semantics, which HF question answering relies on), character offsets, parallel batches and
//! decoding.
//!
//! Special ids: `[PAD]`, `[CLS]`, `[SEP]`, `[UNK]` are looked up in the model (0, 1, 2, 3 in
//! DeBERTa-v3). A model without `[CLS]`/`[SEP]` pieces uses its bos/eos pieces instead (`<s>`,
//! `</s>`), one without `[PAD]` its pad piece (or id 0). `[MASK]` is the model's piece if it has
//! one, otherwise the id just past the pieces, i.e. the piece count (128000 for DeBERTa-v3), as in
//! `DebertaV2Tokenizer`, where `[MASK]` is an added token.
//!
//! Offsets are character offsets into the original text, as the library reports them: a piece
//! that starts with `▁` includes the space before it, and of the byte pieces of a byte-fallback
//! character only the last covers the character (the others are empty, at its start).
//!
//! A model directory may instead hold only a `tokenizer.json`; it is then loaded with the
//! `tokenizers` crate (no parity guarantee: that is the HF fast tokenizer). `spm.model` wins
//! when both are present. `tokenizer_config.json` is honoured for `do_lower_case` and
//! `split_by_punct` (as `DebertaV2Tokenizer` applies them: lowercase the text, then encode each
//! punctuation character and each run between them separately).

pub mod proto;
pub mod spm;
pub mod train;
mod trie;

use rayon::prelude::*;
use spm::SpmModel;
use std::path::{Path, PathBuf};

/// A `[start, end)` range of token positions.
type Span = (usize, usize);

/// Errors name the file they concern.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{0}: no spm.model, *.model or tokenizer.json found")]
    NotFound(PathBuf),
    #[error("truncation: {0}")]
    Truncation(String),
}

type Result<T> = std::result::Result<T, TokenizerError>;

/// Which sequence(s) to cut when a pair is longer than `max_length`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Truncation {
    /// Cut the longer sequence first (both when both are long).
    #[default]
    LongestFirst,
    OnlyFirst,
    OnlySecond,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Padding {
    #[default]
    None,
    /// Pad to `max_length`.
    MaxLength,
    /// In a batch: pad to the longest encoding (overflow windows included).
    Longest,
}

#[derive(Clone, Debug)]
pub struct EncodeOptions {
    /// `[CLS] A [SEP] (B [SEP])`; default true.
    pub add_special_tokens: bool,
    /// Maximum length including special tokens; `None`: no limit.
    pub max_length: Option<usize>,
    /// Truncate to `max_length` with this strategy; `None`: never truncate.
    pub truncation: Option<Truncation>,
    /// Tokens shared by consecutive overflow windows.
    pub stride: usize,
    /// Keep the truncated tokens as further windows in [`Encoding::overflowing`].
    pub return_overflowing: bool,
    pub padding: Padding,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            add_special_tokens: true,
            max_length: None,
            truncation: None,
            stride: 0,
            return_overflowing: false,
            padding: Padding::None,
        }
    }
}

/// One encoded input (or one overflow window of it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoding {
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
    /// Character offsets into the text the token came from; `(0, 0)` for special and padding
    /// tokens.
    pub offsets: Vec<(usize, usize)>,
    /// 0 (first text), 1 (second text) or `None` (special or padding token), per token.
    pub sequence_ids: Vec<Option<u8>>,
    /// Further windows when truncating with `return_overflowing`.
    pub overflowing: Vec<Encoding>,
}

impl Encoding {
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
    fn pad_to(&mut self, len: usize, pad_id: u32) {
        while self.input_ids.len() < len {
            self.input_ids.push(pad_id);
            self.token_type_ids.push(0);
            self.attention_mask.push(0);
            self.offsets.push((0, 0));
            self.sequence_ids.push(None);
        }
        for o in &mut self.overflowing {
            o.pad_to(len, pad_id);
        }
    }
    fn max_len(&self) -> usize {
        self.overflowing.iter().map(|o| o.max_len()).fold(self.len(), usize::max)
    }
}

/// A token of one text before the template: id and character offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub id: u32,
    pub start: usize,
    pub end: usize,
}

enum Backend {
    Spm(Box<SpmModel>),
    Hf(Box<tokenizers::Tokenizer>),
}

/// The special ids a [`DebertaTokenizer`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialIds {
    pub pad: u32,
    pub cls: u32,
    pub sep: u32,
    pub unk: u32,
    pub mask: u32,
}

pub struct DebertaTokenizer {
    backend: Backend,
    special: SpecialIds,
    vocab_size: usize,
    /// `tokenizer_config.json`: lowercase the text first.
    pub do_lower_case: bool,
    /// `tokenizer_config.json`: encode punctuation and the runs between it separately.
    pub split_by_punct: bool,
    source: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| TokenizerError::Io { path: path.to_path_buf(), source })
}

#[derive(Default)]
struct TokenizerConfig {
    do_lower_case: bool,
    split_by_punct: bool,
}

/// The file a model directory keeps the tokenizer's options in (HF's name).
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";

/// The `tokenizer_config.json` that makes HF's `AutoTokenizer` load a directory's `spm.model` as
/// a `DebertaV2Tokenizer` with these text options (the special tokens are DeBERTa-v3's). Every
/// directory this project writes gets its config from here, so they all load alike in HF and in
/// [`DebertaTokenizer::from_path`].
pub fn tokenizer_config_json(do_lower_case: bool, split_by_punct: bool) -> String {
    let json = serde_json::json!({
        "tokenizer_class": "DebertaV2Tokenizer",
        "vocab_type": "spm",
        "do_lower_case": do_lower_case,
        "split_by_punct": split_by_punct,
        "bos_token": "[CLS]",
        "eos_token": "[SEP]",
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "unk_token": "[UNK]",
        "pad_token": "[PAD]",
        "mask_token": "[MASK]",
    });
    serde_json::to_string_pretty(&json).expect("a JSON literal serialises") + "\n"
}

fn read_config(path: &Path) -> Result<TokenizerConfig> {
    let bytes = read(path)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| TokenizerError::Invalid { path: path.to_path_buf(), message: e.to_string() })?;
    Ok(TokenizerConfig {
        do_lower_case: v.get("do_lower_case").and_then(|b| b.as_bool()).unwrap_or(false),
        split_by_punct: v.get("split_by_punct").and_then(|b| b.as_bool()).unwrap_or(false),
    })
}

impl DebertaTokenizer {
    /// `path`: an `spm.model` (any SentencePiece unigram model), a `tokenizer.json`, or a model
    /// directory holding `spm.model` (or another single `*.model`) or `tokenizer.json`, and
    /// optionally `tokenizer_config.json`.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            let config = path.join(TOKENIZER_CONFIG);
            let config = if config.is_file() { read_config(&config)? } else { TokenizerConfig::default() };
            let mut tok = if path.join("spm.model").is_file() {
                Self::from_spm_file(&path.join("spm.model"))?
            } else if let Some(m) = single_model_file(path) {
                Self::from_spm_file(&m)?
            } else if path.join("tokenizer.json").is_file() {
                Self::from_tokenizer_json(&path.join("tokenizer.json"))?
            } else {
                return Err(TokenizerError::NotFound(path.to_path_buf()));
            };
            tok.do_lower_case = config.do_lower_case;
            tok.split_by_punct = config.split_by_punct;
            Ok(tok)
        } else if path.extension().is_some_and(|e| e == "json") {
            Self::from_tokenizer_json(path)
        } else {
            Self::from_spm_file(path)
        }
    }

    fn from_spm_file(path: &Path) -> Result<Self> {
        let bytes = read(path)?;
        let model = SpmModel::from_bytes(&bytes)
            .map_err(|message| TokenizerError::Invalid { path: path.to_path_buf(), message })?;
        Self::from_spm(model, path)
    }

    /// From a loaded model (`source` is only used in messages).
    pub fn from_spm(model: SpmModel, source: &Path) -> Result<Self> {
        let ts = &model.proto().trainer_spec;
        let by_piece_or_id = |piece: &str, id: i32| -> Option<u32> {
            model
                .lookup_piece(piece)
                .or_else(|| (id >= 0 && (id as usize) < model.len()).then_some(id as u32))
        };
        let invalid = |message: String| TokenizerError::Invalid { path: source.to_path_buf(), message };
        let cls = by_piece_or_id("[CLS]", ts.bos_id)
            .ok_or_else(|| invalid("no [CLS] piece and no bos piece".into()))?;
        let sep = by_piece_or_id("[SEP]", ts.eos_id)
            .ok_or_else(|| invalid("no [SEP] piece and no eos piece".into()))?;
        let pad = by_piece_or_id("[PAD]", ts.pad_id).unwrap_or(0);
        let (mask, vocab_size) = match model.lookup_piece("[MASK]") {
            Some(m) => (m, model.len()),
            None => (model.len() as u32, model.len() + 1),
        };
        let special = SpecialIds { pad, cls, sep, unk: model.unk_id(), mask };
        Ok(DebertaTokenizer {
            backend: Backend::Spm(Box::new(model)),
            special,
            vocab_size,
            do_lower_case: false,
            split_by_punct: false,
            source: source.to_path_buf(),
        })
    }

    fn from_tokenizer_json(path: &Path) -> Result<Self> {
        let tok = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| TokenizerError::Invalid { path: path.to_path_buf(), message: e.to_string() })?;
        let invalid = |message: String| TokenizerError::Invalid { path: path.to_path_buf(), message };
        let id = |s: &str| tok.token_to_id(s);
        let cls = id("[CLS]").ok_or_else(|| invalid("no [CLS] token".into()))?;
        let sep = id("[SEP]").ok_or_else(|| invalid("no [SEP] token".into()))?;
        let unk = id("[UNK]").unwrap_or(3);
        let pad = id("[PAD]").unwrap_or(0);
        let vocab_size = tok.get_vocab_size(true);
        let mask = id("[MASK]").unwrap_or(vocab_size as u32);
        Ok(DebertaTokenizer {
            backend: Backend::Hf(Box::new(tok)),
            special: SpecialIds { pad, cls, sep, unk, mask },
            vocab_size: vocab_size.max(mask as usize + 1),
            do_lower_case: false,
            split_by_punct: false,
            source: path.to_path_buf(),
        })
    }

    /// The `tokenizer_config.json` that carries this tokenizer's text options.
    pub fn tokenizer_config_json(&self) -> String {
        tokenizer_config_json(self.do_lower_case, self.split_by_punct)
    }
    /// The file the tokenizer was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }
    /// The SentencePiece model, unless loaded from `tokenizer.json`.
    pub fn spm(&self) -> Option<&SpmModel> {
        match &self.backend {
            Backend::Spm(m) => Some(m),
            Backend::Hf(_) => None,
        }
    }
    pub fn special_ids(&self) -> SpecialIds {
        self.special
    }
    pub fn pad_id(&self) -> u32 {
        self.special.pad
    }
    pub fn cls_id(&self) -> u32 {
        self.special.cls
    }
    pub fn sep_id(&self) -> u32 {
        self.special.sep
    }
    pub fn unk_id(&self) -> u32 {
        self.special.unk
    }
    pub fn mask_id(&self) -> u32 {
        self.special.mask
    }
    /// Pieces plus `[MASK]` when it is not a piece (128001 for DeBERTa-v3, whose embedding
    /// matrix is padded to 128100).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The pieces of one text (no special tokens), with character offsets into `text`.
    pub fn tokenize(&self, text: &str) -> Vec<Token> {
        let lowered;
        let (work, map): (&str, Option<Vec<usize>>) = if self.do_lower_case {
            let (s, m) = lowercase_with_map(text);
            lowered = s;
            (&lowered, Some(m))
        } else {
            (text, None)
        };
        // Byte offsets in `work`.
        let mut out: Vec<Token> = Vec::new();
        let encode_piece = |offset: usize, piece: &str, out: &mut Vec<Token>| match &self.backend {
            Backend::Spm(m) => {
                for t in m.encode(piece) {
                    out.push(Token { id: t.id, start: t.start + offset, end: t.end + offset });
                }
            }
            Backend::Hf(tok) => {
                if let Ok(enc) = tok.encode(piece, false) {
                    for (&id, &(s, e)) in enc.get_ids().iter().zip(enc.get_offsets()) {
                        out.push(Token { id, start: s + offset, end: e + offset });
                    }
                }
            }
        };
        if self.split_by_punct {
            for (start, end) in split_on_punct(work) {
                encode_piece(start, &work[start..end], &mut out);
            }
        } else {
            encode_piece(0, work, &mut out);
        }
        // Bytes of `work` -> bytes of `text` -> characters of `text`.
        let to_orig = |b: usize| map.as_ref().map_or(b, |m| m[b]);
        let mut char_at = vec![0usize; text.len() + 1];
        let mut ci = 0;
        for (bi, ch) in text.char_indices() {
            for k in 0..ch.len_utf8() {
                char_at[bi + k] = ci;
            }
            ci += 1;
        }
        char_at[text.len()] = ci;
        for t in &mut out {
            t.start = char_at[to_orig(t.start)];
            t.end = char_at[to_orig(t.end)];
        }
        out
    }

    /// `[CLS] text [SEP]` or `[CLS] text [SEP] pair [SEP]`, truncated and padded as asked.
    pub fn encode(&self, text: &str, pair: Option<&str>, options: &EncodeOptions) -> Result<Encoding> {
        let a = self.tokenize(text);
        let b = pair.map(|p| self.tokenize(p));
        self.assemble(a, b, options)
    }

    /// Many texts (or pairs) in parallel; with [`Padding::Longest`] all are padded to the longest.
    pub fn encode_batch(
        &self,
        inputs: &[(&str, Option<&str>)],
        options: &EncodeOptions,
    ) -> Result<Vec<Encoding>> {
        let mut encs =
            inputs.par_iter().map(|(a, b)| self.encode(a, *b, options)).collect::<Result<Vec<_>>>()?;
        if options.padding == Padding::Longest {
            let longest = encs.iter().map(|e| e.max_len()).max().unwrap_or(0);
            for e in &mut encs {
                e.pad_to(longest, self.special.pad);
            }
        }
        Ok(encs)
    }

    fn assemble(&self, a: Vec<Token>, b: Option<Vec<Token>>, options: &EncodeOptions) -> Result<Encoding> {
        let added = if options.add_special_tokens {
            if b.is_some() {
                3
            } else {
                2
            }
        } else {
            0
        };
        let (wa, wb) = match (options.truncation, options.max_length) {
            (Some(strategy), Some(max_length)) => {
                let budget = max_length.checked_sub(added).ok_or_else(|| {
                    TokenizerError::Truncation(format!("max_length {max_length} < {added} special tokens"))
                })?;
                truncate(&a, b.as_deref(), budget, strategy, options.stride)?
            }
            _ => (vec![(0, a.len())], b.as_ref().map(|b| vec![(0, b.len())])),
        };
        // Windows combined like the `tokenizers` crate's `Encoding::merge_with`: the first window
        // of each, then each further first-text window with every second-text window, then the
        // first first-text window with each further second-text window.
        let mut combos: Vec<(Span, Option<Span>)> = Vec::new();
        match &wb {
            None => combos.extend(wa.iter().map(|&x| (x, None))),
            Some(wb) => {
                combos.push((wa[0], Some(wb[0])));
                for &x in &wa[1..] {
                    for &y in wb {
                        combos.push((x, Some(y)));
                    }
                }
                for &y in &wb[1..] {
                    combos.push((wa[0], Some(y)));
                }
            }
        }
        if !options.return_overflowing {
            combos.truncate(1);
        }
        let mut encodings = combos
            .into_iter()
            .map(|(x, y)| self.template(&a[x.0..x.1], y.map(|y| &b.as_ref().unwrap()[y.0..y.1]), options))
            .collect::<Vec<_>>();
        if options.padding == Padding::MaxLength {
            if let Some(m) = options.max_length {
                for e in &mut encodings {
                    e.pad_to(m, self.special.pad);
                }
            }
        }
        let mut main = encodings.remove(0);
        main.overflowing = encodings;
        Ok(main)
    }

    fn template(&self, a: &[Token], b: Option<&[Token]>, options: &EncodeOptions) -> Encoding {
        let mut e = Encoding::default();
        let push = |e: &mut Encoding, id: u32, tt: u32, off: (usize, usize), seq: Option<u8>| {
            e.input_ids.push(id);
            e.token_type_ids.push(tt);
            e.attention_mask.push(1);
            e.offsets.push(off);
            e.sequence_ids.push(seq);
        };
        let special = options.add_special_tokens;
        if special {
            push(&mut e, self.special.cls, 0, (0, 0), None);
        }
        for t in a {
            push(&mut e, t.id, 0, (t.start, t.end), Some(0));
        }
        if special {
            push(&mut e, self.special.sep, 0, (0, 0), None);
        }
        if let Some(b) = b {
            for t in b {
                push(&mut e, t.id, 1, (t.start, t.end), Some(1));
            }
            if special {
                push(&mut e, self.special.sep, 1, (0, 0), None);
            }
        }
        e
    }

    /// Text of `ids`, as the library's `DecodeIds` (special tokens and `[MASK]` are dropped).
    pub fn decode(&self, ids: &[u32]) -> String {
        let s = self.special;
        let kept: Vec<u32> =
            ids.iter().copied().filter(|&i| i != s.cls && i != s.sep && i != s.pad && i != s.mask).collect();
        match &self.backend {
            Backend::Spm(m) => m.decode(&kept),
            Backend::Hf(t) => t.decode(&kept, true).unwrap_or_default(),
        }
    }

    /// The piece of an id (`[MASK]` for the mask id).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        if id == self.special.mask {
            return Some("[MASK]".into());
        }
        match &self.backend {
            Backend::Spm(m) => m.id_to_piece(id).map(str::to_string),
            Backend::Hf(t) => t.id_to_token(id),
        }
    }
}

fn single_model_file(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "model") && p.is_file())
        .collect();
    (found.len() == 1).then(|| found.pop().unwrap())
}

/// Windows (start, end) over `a` and `b` for a token budget, with the `tokenizers` crate's
/// truncation semantics.
type Windows = Vec<(usize, usize)>;
fn truncate(
    a: &[Token],
    b: Option<&[Token]>,
    budget: usize,
    strategy: Truncation,
    stride: usize,
) -> Result<(Windows, Option<Windows>)> {
    let (na, nb) = (a.len(), b.map_or(0, |b| b.len()));
    let total = na + nb;
    if total <= budget {
        return Ok((vec![(0, na)], b.map(|_| vec![(0, nb)])));
    }
    let to_remove = total - budget;
    let (ka, kb) = match (strategy, b.is_some()) {
        (Truncation::LongestFirst, true) => {
            let (mut n1, mut n2) = (na, nb);
            let swap = n1 > n2;
            if swap {
                std::mem::swap(&mut n1, &mut n2);
            }
            n2 = if n1 > budget { n1 } else { n2.min(budget - n1).max(n1) };
            if n1 + n2 > budget {
                n1 = budget / 2;
                n2 = n1 + budget % 2;
            }
            if swap {
                std::mem::swap(&mut n1, &mut n2);
            }
            (n1, n2)
        }
        (Truncation::LongestFirst, false) | (Truncation::OnlyFirst, _) => {
            if na <= to_remove {
                return Err(TokenizerError::Truncation(format!(
                    "the first sequence has {na} tokens but {to_remove} must be removed to fit the maximum length, which would leave none of it (raise the maximum length or truncate the other sequence)"
                )));
            }
            (na - to_remove, nb)
        }
        (Truncation::OnlySecond, false) => {
            return Err(TokenizerError::Truncation("only_second needs a second sequence".into()));
        }
        (Truncation::OnlySecond, true) => {
            if nb <= to_remove {
                return Err(TokenizerError::Truncation(format!(
                    "the second sequence has {nb} tokens but {to_remove} must be removed to fit the maximum length, which would leave none of it (raise the maximum length or truncate the other sequence)"
                )));
            }
            (na, nb - to_remove)
        }
    };
    Ok((windows(na, ka, stride)?, b.map(|_| windows(nb, kb, stride)).transpose()?))
}

/// `Encoding::truncate(max_len, stride)` of the `tokenizers` crate: the kept part first, then
/// windows of `max_len` tokens starting every `max_len - stride` tokens, until the end.
fn windows(n: usize, max_len: usize, stride: usize) -> Result<Windows> {
    if max_len >= n {
        return Ok(vec![(0, n)]);
    }
    if max_len == 0 {
        return Ok(vec![(0, 0), (0, n)]);
    }
    if stride >= max_len {
        return Err(TokenizerError::Truncation(format!(
            "stride {stride} must be smaller than the {max_len} tokens left for the sequence"
        )));
    }
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let stop = (start + max_len).min(n);
        out.push((start, stop));
        if stop == n {
            break;
        }
        start += max_len - stride;
    }
    Ok(out)
}

/// Python's `str.lower()` character by character, with a map from each byte of the result (and
/// its end) to the byte of `text` it came from.
fn lowercase_with_map(text: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(text.len());
    let mut map = Vec::with_capacity(text.len() + 1);
    for (bi, ch) in text.char_indices() {
        let before = out.len();
        for l in ch.to_lowercase() {
            out.push(l);
        }
        map.extend(std::iter::repeat_n(bi, out.len() - before));
    }
    map.push(text.len());
    (out, map)
}

/// `DebertaV2Tokenizer._run_split_on_punc`: each punctuation character alone, and the runs
/// between them. Byte ranges.
fn split_on_punct(text: &str) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut start_new = true;
    for (i, ch) in text.char_indices() {
        let end = i + ch.len_utf8();
        if is_punctuation(ch) {
            out.push((i, end));
            start_new = true;
        } else {
            if start_new {
                out.push((i, end));
            } else {
                out.last_mut().unwrap().1 = end;
            }
            start_new = false;
        }
    }
    out
}

fn is_punctuation(ch: char) -> bool {
    let cp = ch as u32;
    if (33..=47).contains(&cp)
        || (58..=64).contains(&cp)
        || (91..=96).contains(&cp)
        || (123..=126).contains(&cp)
    {
        return true;
    }
    use unicode_categories::UnicodeCategories;
    ch.is_punctuation()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_like_tokenizers() {
        assert_eq!(windows(10, 4, 1).unwrap(), vec![(0, 4), (3, 7), (6, 10)]);
        assert_eq!(windows(10, 4, 0).unwrap(), vec![(0, 4), (4, 8), (8, 10)]);
        assert_eq!(windows(3, 4, 2).unwrap(), vec![(0, 3)]);
        assert!(windows(10, 4, 4).is_err());
    }

    #[test]
    fn punct_split() {
        let s = "Hello, world!";
        let parts: Vec<&str> = split_on_punct(s).into_iter().map(|(a, b)| &s[a..b]).collect();
        assert_eq!(parts, vec!["Hello", ",", " world", "!"]);
    }

    #[test]
    fn lowercase_map() {
        let (s, m) = lowercase_with_map("AİB");
        assert_eq!(s, "ai\u{307}b");
        assert_eq!(m, vec![0, 1, 1, 1, 3, 4]);
    }
}
