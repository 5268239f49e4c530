//! Training a new DeBERTa-v3-style `spm.model` for from-scratch pre-training.
//!
//! Trainer: the `tokenizers` crate's `UnigramTrainer` (a port of SentencePiece's unigram EM
//! trainer: suffix-array seeds, EM with digamma prior, pruning by loss), so no C++ build and no
//! Python are needed. Around it we do what SentencePiece's trainer does and `tokenizers` leaves
//! out:
//! - text is normalised with *our* exact SentencePiece normaliser and the library's `nmt_nfkc`
//!   charsmap (`data/nmt_nfkc.charsmap`, copied from a model the library wrote), then split into
//!   `▁`-prefixed words, as `split_by_whitespace` does;
//! - `character_coverage` (0.9995): the rarest characters are left out of the vocabulary (words
//!   holding them are split there); byte fallback covers them;
//! - the result is written as a ModelProto in the DeBERTa-v3 layout: `[PAD]`=0, `[CLS]`=1,
//!   `[SEP]`=2 (control), `[UNK]`=3, the 256 `<0xXX>` byte pieces, then the pieces by score.
//!
//! Because encoding is the library's algorithm (see [`crate::spm`]), the sentencepiece library
//! tokenizes text with the written model exactly as we do (checked by the fixtures).

use crate::proto::{ModelProto, NormalizerSpec, PieceType, SentencePiece, TrainerSpec};
use crate::spm::{byte_to_piece, SpmModel, SPACE_SYMBOL};
use std::collections::{BTreeMap, HashMap, HashSet};

/// SentencePiece's `nmt_nfkc` rules, as the library precompiles them.
pub const NMT_NFKC_CHARSMAP: &[u8] = include_bytes!("../data/nmt_nfkc.charsmap");

pub const SPECIALS: [(&str, PieceType); 4] = [
    ("[PAD]", PieceType::Control),
    ("[CLS]", PieceType::Control),
    ("[SEP]", PieceType::Control),
    ("[UNK]", PieceType::Unknown),
];

#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Total pieces, specials and the 256 byte pieces included (DeBERTa-v3: 128000).
    pub vocab_size: usize,
    pub character_coverage: f64,
    pub max_piece_length: usize,
    pub shrinking_factor: f64,
    pub n_sub_iterations: u32,
    /// Run the EM steps on all cores (the sums then depend on thread scheduling, so runs may
    /// differ in the last float bits). Off: single-threaded and reproducible.
    pub parallel: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            vocab_size: 128_000,
            character_coverage: 0.9995,
            max_piece_length: 16,
            shrinking_factor: 0.75,
            n_sub_iterations: 2,
            parallel: false,
        }
    }
}

/// A model with no learned pieces: the DeBERTa-v3 normaliser, specials and byte pieces.
pub fn skeleton(vocab_size: usize) -> ModelProto {
    let mut pieces: Vec<SentencePiece> =
        SPECIALS.iter().map(|&(p, kind)| SentencePiece { piece: p.into(), score: 0.0, kind }).collect();
    for b in 0..=255u8 {
        pieces.push(SentencePiece { piece: byte_to_piece(b), score: 0.0, kind: PieceType::Byte });
    }
    ModelProto {
        pieces,
        trainer_spec: TrainerSpec {
            model_type: 1,
            vocab_size: vocab_size as i32,
            byte_fallback: true,
            unk_id: 3,
            bos_id: 1,
            eos_id: 2,
            pad_id: 0,
            unk_piece: "[UNK]".into(),
            bos_piece: "[CLS]".into(),
            eos_piece: "[SEP]".into(),
            pad_piece: "[PAD]".into(),
            ..TrainerSpec::default()
        },
        normalizer_spec: NormalizerSpec {
            name: "nmt_nfkc".into(),
            precompiled_charsmap: NMT_NFKC_CHARSMAP.to_vec(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        },
        denormalizer_spec: None,
    }
}

/// Trains on the given lines (each line one sentence) and returns the model.
pub fn train<'a>(lines: impl Iterator<Item = &'a str>, opts: &TrainOptions) -> Result<ModelProto, String> {
    let reserved = SPECIALS.len() + 256;
    if opts.vocab_size <= reserved + 1 {
        return Err(format!(
            "vocab size {} leaves no room after the {reserved} special and byte pieces",
            opts.vocab_size
        ));
    }
    let base = skeleton(opts.vocab_size);
    let normalizer = SpmModel::from_proto(base.clone())?;

    // Words (▁-prefixed) with counts, and character counts.
    let mut words: HashMap<String, u64> = HashMap::new();
    for line in lines {
        let (norm, _) = normalizer.normalize(line);
        let norm = String::from_utf8(norm).map_err(|_| "normalised text is not UTF-8".to_string())?;
        for w in split_words(&norm) {
            *words.entry(w.to_string()).or_default() += 1;
        }
    }
    if words.is_empty() {
        return Err("the corpus is empty".into());
    }
    let mut chars: HashMap<char, u64> = HashMap::new();
    for (w, &c) in &words {
        for ch in w.chars() {
            *chars.entry(ch).or_default() += c;
        }
    }
    // Character coverage, as SentencePiece: keep the most frequent characters up to the coverage.
    let total: u64 = chars.values().sum();
    let mut by_freq: Vec<(char, u64)> = chars.into_iter().collect();
    by_freq.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept: HashSet<char> = HashSet::new();
    let mut acc = 0u64;
    for &(ch, c) in &by_freq {
        if (acc as f64) / (total as f64) >= opts.character_coverage {
            break;
        }
        kept.insert(ch);
        acc += c;
    }
    kept.insert('\u{2581}');
    // Split words at dropped characters (byte fallback will cover those).
    let mut sentences: BTreeMap<String, u64> = BTreeMap::new();
    for (w, c) in words {
        for part in w.split(|ch: char| !kept.contains(&ch)) {
            if !part.is_empty() {
                *sentences.entry(part.to_string()).or_default() += c;
            }
        }
    }
    let sentences: Vec<(String, u32)> =
        sentences.into_iter().map(|(s, c)| (s, c.min(u64::from(u32::MAX)) as u32)).collect();

    let learned = opts.vocab_size - reserved;
    let trainer = tokenizers::models::unigram::UnigramTrainer::builder()
        .show_progress(false)
        .vocab_size(learned as u32)
        .max_piece_length(opts.max_piece_length)
        .shrinking_factor(opts.shrinking_factor)
        .n_sub_iterations(opts.n_sub_iterations)
        .build()
        .map_err(|e| e.to_string())?;
    let was = tokenizers::utils::parallelism::get_parallelism();
    tokenizers::utils::parallelism::set_parallelism(opts.parallel);
    let mut model = tokenizers::models::unigram::Unigram::default();
    let result = trainer.do_train(sentences, &mut model);
    tokenizers::utils::parallelism::set_parallelism(was);
    result.map_err(|e| e.to_string())?;

    let reserved_names: HashSet<String> = base.pieces.iter().map(|p| p.piece.clone()).collect();
    let mut pieces: Vec<(String, f64)> = model
        .iter()
        .filter(|(p, _)| !p.is_empty() && !p.contains('\0') && !reserved_names.contains(p.as_str()))
        .filter(|(p, _)| p != "<UNK>")
        .map(|(p, s)| (p.clone(), if s.is_nan() { 0.0 } else { *s }))
        .collect();
    // By score, ties by piece, so the file does not depend on hash order.
    pieces.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then_with(|| a.0.cmp(&b.0)));
    pieces.truncate(learned);
    let mut proto = base;
    for (p, s) in pieces {
        proto.pieces.push(SentencePiece { piece: p, score: s as f32, kind: PieceType::Normal });
    }
    proto.trainer_spec.vocab_size = proto.pieces.len() as i32;
    proto.trainer_spec.character_coverage = opts.character_coverage as f32;
    proto.trainer_spec.max_sentencepiece_length = opts.max_piece_length as i32;
    // Check that it loads.
    SpmModel::from_proto(proto.clone())?;
    Ok(proto)
}

/// Trains on text files (one sentence per line). Errors name the file and line.
pub fn train_files(
    paths: &[std::path::PathBuf],
    opts: &TrainOptions,
) -> Result<ModelProto, crate::TokenizerError> {
    use std::io::BufRead;
    let mut lines = Vec::new();
    for path in paths {
        let io = |source| crate::TokenizerError::Io { path: path.clone(), source };
        let f = std::fs::File::open(path).map_err(io)?;
        let mut reader = std::io::BufReader::new(f);
        let mut buf = Vec::new();
        let mut n = 0usize;
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf).map_err(io)? == 0 {
                break;
            }
            n += 1;
            let line = std::str::from_utf8(&buf).map_err(|e| crate::TokenizerError::Invalid {
                path: path.clone(),
                message: format!("line {n}: not UTF-8 ({e})"),
            })?;
            lines.push(line.trim_end_matches(['\n', '\r']).to_string());
        }
    }
    let source = paths.first().cloned().unwrap_or_default();
    train(lines.iter().map(String::as_str), opts)
        .map_err(|message| crate::TokenizerError::Invalid { path: source, message })
}

/// Writes `dir/spm.model` and a `tokenizer_config.json` for `DebertaV2Tokenizer`.
pub fn write_model_dir(
    dir: &std::path::Path,
    proto: &ModelProto,
) -> Result<std::path::PathBuf, crate::TokenizerError> {
    write_tokenizer_files(dir, &proto.to_bytes())
}

/// Writes `dir/spm.model` (the given bytes) and the `tokenizer_config.json` that makes HF's
/// `AutoTokenizer` load it as a `DebertaV2Tokenizer`.
pub fn write_tokenizer_files(
    dir: &std::path::Path,
    spm_model: &[u8],
) -> Result<std::path::PathBuf, crate::TokenizerError> {
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| crate::TokenizerError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let model = dir.join("spm.model");
    std::fs::write(&model, spm_model).map_err(io(&model))?;
    let config = dir.join(crate::TOKENIZER_CONFIG);
    std::fs::write(&config, crate::tokenizer_config_json(false, false)).map_err(io(&config))?;
    Ok(model)
}

/// `▁a▁bc` → [`▁a`, `▁bc`]: each word keeps its leading `▁`.
fn split_words(norm: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in norm.match_indices(SPACE_SYMBOL) {
        if i > start {
            out.push(&norm[start..i]);
        }
        start = i;
    }
    if start < norm.len() {
        out.push(&norm[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(split_words("▁a▁bc▁"), vec!["▁a", "▁bc", "▁"]);
        assert_eq!(split_words("x▁y"), vec!["x", "▁y"]);
    }

    #[test]
    fn tiny_training_run() {
        let text = "the cat sat on the mat\nthe dog sat on the log\nnew words appear here and there\n";
        let lines: Vec<&str> = text.lines().cycle().take(300).collect();
        let opts = TrainOptions { vocab_size: 320, ..Default::default() };
        let proto = train(lines.iter().copied(), &opts).unwrap();
        assert!(proto.pieces.len() <= 320);
        assert_eq!(proto.pieces[0].piece, "[PAD]");
        assert_eq!(proto.pieces[3].kind, PieceType::Unknown);
        assert_eq!(proto.pieces[4].piece, "<0x00>");
        let m = SpmModel::from_bytes(&proto.to_bytes()).unwrap();
        let ids: Vec<u32> = m.encode("the cat").iter().map(|t| t.id).collect();
        assert!(!ids.is_empty() && ids.iter().all(|&i| i >= 260));
    }
}
