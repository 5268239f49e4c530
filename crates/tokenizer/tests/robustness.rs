//! Property tests (proptest, fixed seed, so CI runs are reproducible):
//!
//! - `encode_never_panics_and_offsets_are_sane` (256 cases, each on every fixture spm model and
//!   with `do_lower_case`/`split_by_punct` on and off): arbitrary Unicode text (control
//!   characters, combining marks, emoji and ZWJ sequences, NFKC expansions, long runs of one
//!   character, the empty string) never panics; the SentencePiece layer's byte offsets lie in
//!   the text, `start <= end`, on character boundaries; the tokenizer's character offsets lie
//!   in the text's character count; every id is below the vocabulary size.
//! - `damaged_spm_model_is_an_error_not_a_panic` (256 cases): random truncations and
//!   bit/byte flips of a real fixture `spm.model` parse to `Ok` or `Err`, never a panic; a
//!   model that does parse then encodes a short text without panicking.

use deberta_tokenizer::spm::SpmModel;
use deberta_tokenizer::{DebertaTokenizer, EncodeOptions, Truncation};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngAlgorithm, RngSeed};
use std::path::PathBuf;
use std::sync::OnceLock;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenizer")
}

const MODELS: [&str; 5] =
    ["deberta_style.model", "suffix.model", "test_ja_model.model", "test_model.model", "variant.model"];

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x0DEB_E27A),
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    }
}

fn tokenizers() -> &'static Vec<DebertaTokenizer> {
    static T: OnceLock<Vec<DebertaTokenizer>> = OnceLock::new();
    T.get_or_init(|| {
        MODELS.iter().map(|m| DebertaTokenizer::from_path(fixtures().join(m)).unwrap()).collect()
    })
}

/// Characters that stress normalisation and byte fallback.
const TRICKY: &[char] = &[
    '\0',
    '\t',
    '\n',
    '\r',
    '\u{7}',
    '\u{1b}',
    '\u{7f}',
    '\u{85}',
    '\u{a0}',
    ' ',
    '\u{3000}',
    '\u{200b}',
    '\u{200d}',
    '\u{feff}',
    '\u{fffd}',
    '\u{301}',
    '\u{308}',
    '\u{20dd}',
    '\u{1f600}',
    '\u{1f468}',
    '\u{1f3fd}',
    '\u{fe0f}',
    'ﬁ',
    'Ⅻ',
    '㍿',
    'Å',
    'ß',
    'İ',
    'ǅ',
    '日',
    'ｶ',
    '\u{10ffff}',
    '\u{e000}',
    'a',
    '.',
    '▁',
];

fn text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![3 => any::<char>(), 3 => proptest::sample::select(TRICKY), 2 => proptest::char::range('\0', '\u{7f}')];
    prop_oneof![
        4 => proptest::collection::vec(ch.clone(), 0..64).prop_map(|v| v.into_iter().collect()),
        1 => (ch, 1..3000usize).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
        1 => Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn encode_never_panics_and_offsets_are_sane(text in text(), lower in any::<bool>(), punct in any::<bool>()) {
        let chars = text.chars().count();
        for (k, tok) in tokenizers().iter().enumerate() {
            let spm = tok.spm().unwrap();
            for t in spm.encode(&text) {
                prop_assert!(t.start <= t.end && t.end <= text.len(), "{}: {t:?} in {} bytes", MODELS[k], text.len());
                prop_assert!(text.is_char_boundary(t.start) && text.is_char_boundary(t.end), "{}: {t:?}", MODELS[k]);
                prop_assert!((t.id as usize) < spm.len());
            }
            let mut tok2 = DebertaTokenizer::from_spm(spm.clone(), tok.source()).unwrap();
            tok2.do_lower_case = lower;
            tok2.split_by_punct = punct;
            let opts = [
                EncodeOptions::default(),
                EncodeOptions {
                    max_length: Some(7),
                    truncation: Some(Truncation::LongestFirst),
                    stride: 2,
                    return_overflowing: true,
                    ..EncodeOptions::default()
                },
            ];
            for (o, opt) in opts.iter().enumerate() {
                let pair = (o == 1).then_some(text.as_str());
                // Truncation with a stride may be refused (an error, as in the `tokenizers` crate).
                let e = match tok2.encode(&text, pair, opt) {
                    Ok(e) => e,
                    Err(err) => {
                        prop_assert!(o == 1, "{}: {err}", MODELS[k]);
                        continue;
                    }
                };
                for e in std::iter::once(&e).chain(&e.overflowing) {
                    prop_assert_eq!(e.offsets.len(), e.input_ids.len());
                    for (&id, &(s, end)) in e.input_ids.iter().zip(&e.offsets) {
                        prop_assert!((id as usize) < tok2.vocab_size(), "{}: id {id}", MODELS[k]);
                        prop_assert!(s <= end && end <= chars, "{}: ({s}, {end}) in {chars} chars", MODELS[k]);
                    }
                }
            }
        }
    }
}

fn mutated_model() -> impl Strategy<Value = (usize, Vec<u8>)> {
    let models: Vec<Vec<u8>> = MODELS.iter().map(|m| std::fs::read(fixtures().join(m)).unwrap()).collect();
    (0..MODELS.len(), any::<u64>(), 0..3u8, proptest::collection::vec((any::<u64>(), any::<u8>()), 1..8))
        .prop_map(move |(m, cut, kind, flips)| {
            let mut bytes = models[m].clone();
            match kind {
                // Truncate.
                0 => bytes.truncate((cut % bytes.len() as u64) as usize),
                // Flip single bits.
                1 => {
                    for (at, bit) in flips {
                        let i = (at % bytes.len() as u64) as usize;
                        bytes[i] ^= 1 << (bit % 8);
                    }
                }
                // Overwrite whole bytes (often in the first bytes: the length prefixes).
                _ => {
                    for (at, b) in flips {
                        let n = if at % 2 == 0 { 64.min(bytes.len()) } else { bytes.len() };
                        let i = ((at / 2) % n as u64) as usize;
                        bytes[i] = b;
                    }
                }
            }
            (m, bytes)
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn damaged_spm_model_is_an_error_not_a_panic((m, bytes) in mutated_model()) {
        if let Ok(model) = SpmModel::from_bytes(&bytes) {
            let text = "Hello wörld 日本 😀 ﬁ\u{301}";
            for t in model.encode(text) {
                prop_assert!(t.start <= t.end && t.end <= text.len(), "{}: {t:?}", MODELS[m]);
            }
            if let Ok(tok) = DebertaTokenizer::from_spm(model, &fixtures().join(MODELS[m])) {
                let _ = tok.encode(text, Some(text), &EncodeOptions::default());
            }
        }
    }
}
