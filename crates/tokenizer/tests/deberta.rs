//! DeBERTa conventions on top of the SentencePiece model.

use deberta_tokenizer::{DebertaTokenizer, EncodeOptions, Padding, Truncation};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tokenizer")
}

fn tok() -> DebertaTokenizer {
    DebertaTokenizer::from_path(fixtures().join("deberta_style.model")).unwrap()
}

#[test]
fn special_ids() {
    let t = tok();
    assert_eq!((t.pad_id(), t.cls_id(), t.sep_id(), t.unk_id()), (0, 1, 2, 3));
    assert_eq!(t.mask_id(), 2000);
    assert_eq!(t.vocab_size(), 2001);
    assert_eq!(t.id_to_token(2000).as_deref(), Some("[MASK]"));
    // A model without [CLS]/[SEP]: bos/eos (<s>, </s>).
    let t = DebertaTokenizer::from_path(fixtures().join("test_model.model")).unwrap();
    assert_eq!((t.cls_id(), t.sep_id(), t.unk_id()), (1, 2, 0));
    assert_eq!(t.mask_id(), 1000);
}

#[test]
fn single_and_pair() {
    let t = tok();
    let a = t.tokenize("Hello world");
    let b = t.tokenize("second text");
    let e = t.encode("Hello world", None, &EncodeOptions::default()).unwrap();
    let mut want = vec![1];
    want.extend(a.iter().map(|x| x.id));
    want.push(2);
    assert_eq!(e.input_ids, want);
    assert!(e.token_type_ids.iter().all(|&x| x == 0));
    assert!(e.attention_mask.iter().all(|&x| x == 1));
    assert_eq!(e.offsets[0], (0, 0));
    assert_eq!(e.offsets[1], (a[0].start, a[0].end));

    let e = t.encode("Hello world", Some("second text"), &EncodeOptions::default()).unwrap();
    assert_eq!(e.len(), a.len() + b.len() + 3);
    assert_eq!(e.input_ids[a.len() + 1], 2);
    assert_eq!(*e.input_ids.last().unwrap(), 2);
    let types: Vec<u32> = e.token_type_ids.clone();
    assert_eq!(types.iter().filter(|&&x| x == 0).count(), a.len() + 2);
    assert_eq!(types.iter().filter(|&&x| x == 1).count(), b.len() + 1);
    assert_eq!(e.sequence_ids[1], Some(0));
    assert_eq!(e.sequence_ids[a.len() + 2], Some(1));
    assert_eq!(t.decode(&e.input_ids), "Hello world second text");
}

#[test]
fn offsets_are_characters() {
    let t = tok();
    let text = "日本 café 😀 done";
    for tk in t.tokenize(text) {
        assert!(tk.start <= tk.end && tk.end <= text.chars().count());
    }
    let toks = t.tokenize(text);
    let last = toks.last().unwrap();
    assert_eq!(last.end, text.chars().count());
}

fn opts(max: usize, strategy: Truncation, stride: usize, overflow: bool) -> EncodeOptions {
    EncodeOptions {
        max_length: Some(max),
        truncation: Some(strategy),
        stride,
        return_overflowing: overflow,
        ..Default::default()
    }
}

#[test]
fn truncation_strategies() {
    let t = tok();
    let q = "a short question";
    let c = "a much longer context that goes on and on and on with many words in it to truncate";
    let (nq, nc) = (t.tokenize(q).len(), t.tokenize(c).len());
    let max = nq + 3 + 10;
    let e = t.encode(q, Some(c), &opts(max, Truncation::OnlySecond, 0, false)).unwrap();
    assert_eq!(e.len(), max);
    assert_eq!(e.token_type_ids.iter().filter(|&&x| x == 1).count(), 11);
    assert!(t.encode(q, Some(c), &opts(3 + 2, Truncation::OnlyFirst, 0, false)).is_err());
    let e = t.encode(c, Some(q), &opts(nq + 3 + 4, Truncation::OnlyFirst, 0, false)).unwrap();
    assert_eq!(e.token_type_ids.iter().filter(|&&x| x == 0).count(), 4 + 2);
    assert!(nc > 4);
    let e = t.encode(q, Some(c), &opts(max, Truncation::LongestFirst, 0, false)).unwrap();
    assert_eq!(e.len(), max);
    // longest_first with both long: split evenly.
    let e = t.encode(c, Some(c), &opts(13, Truncation::LongestFirst, 0, false)).unwrap();
    assert_eq!(e.token_type_ids.iter().filter(|&&x| x == 0).count(), 5 + 2);
    assert_eq!(e.token_type_ids.iter().filter(|&&x| x == 1).count(), 5 + 1);
    // No truncation unless asked.
    let e = t.encode(c, None, &EncodeOptions { max_length: Some(5), ..Default::default() }).unwrap();
    assert_eq!(e.len(), nc + 2);
    assert!(t.encode(c, None, &opts(10, Truncation::OnlySecond, 0, false)).is_err());
}

#[test]
fn overflow_windows_with_stride() {
    let t = tok();
    let q = "a short question";
    let c = "a much longer context that goes on and on and on with many words in it to truncate";
    let (qt, ct) = (t.tokenize(q), t.tokenize(c));
    let budget = 8;
    let max = qt.len() + 3 + budget;
    let e = t.encode(q, Some(c), &opts(max, Truncation::OnlySecond, 3, true)).unwrap();
    let all: Vec<_> = std::iter::once(&e).chain(e.overflowing.iter()).collect();
    let mut start = 0;
    for w in &all {
        assert!(w.len() <= max);
        let ctx: Vec<u32> = w
            .input_ids
            .iter()
            .zip(&w.sequence_ids)
            .filter(|(_, s)| **s == Some(1))
            .map(|(i, _)| *i)
            .collect();
        let end = (start + budget).min(ct.len());
        let want: Vec<u32> = ct[start..end].iter().map(|x| x.id).collect();
        assert_eq!(ctx, want);
        start += budget - 3;
    }
    assert!(start + 3 >= ct.len(), "windows cover the context");
    assert!(e.overflowing.iter().all(|o| o.overflowing.is_empty()));
    // Padding to max_length.
    let mut o = opts(max, Truncation::OnlySecond, 3, true);
    o.padding = Padding::MaxLength;
    let e = t.encode(q, Some(c), &o).unwrap();
    assert!(e.overflowing.iter().all(|w| w.len() == max));
    assert_eq!(*e.overflowing.last().unwrap().attention_mask.last().unwrap(), 0);
}

#[test]
fn batch_is_parallel_and_equal() {
    let t = tok();
    let texts = std::fs::read_to_string(fixtures().join("texts.jsonl")).unwrap();
    let texts: Vec<String> = texts
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].as_str().unwrap().to_string())
        .collect();
    let inputs: Vec<(&str, Option<&str>)> = texts.iter().map(|s| (s.as_str(), None)).collect();
    let o = EncodeOptions { padding: Padding::Longest, ..Default::default() };
    let batch = t.encode_batch(&inputs, &o).unwrap();
    let longest = batch.iter().map(|e| e.len()).max().unwrap();
    for (e, s) in batch.iter().zip(&texts) {
        assert_eq!(e.len(), longest);
        let one = t.encode(s, None, &EncodeOptions::default()).unwrap();
        assert_eq!(&e.input_ids[..one.len()], &one.input_ids[..]);
    }
}

#[test]
fn model_directory_with_config() {
    let dir = std::env::temp_dir().join(format!("deberta-tok-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixtures().join("deberta_style.model"), dir.join("spm.model")).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), r#"{"do_lower_case": true, "split_by_punct": true}"#)
        .unwrap();
    let t = DebertaTokenizer::from_path(&dir).unwrap();
    assert!(t.do_lower_case && t.split_by_punct);
    let base = tok();
    // Lowercased, then "Hello" "," " World" "!" encoded separately.
    let got: Vec<u32> = t.tokenize("Hello, World!").iter().map(|x| x.id).collect();
    let mut want = Vec::new();
    for part in ["hello", ",", " world", "!"] {
        want.extend(base.tokenize(part).iter().map(|x| x.id));
    }
    assert_eq!(got, want);
    let toks = t.tokenize("Hello, World!");
    assert_eq!(toks.last().unwrap().end, 13);
    // The config we write carries the options back, and names the class HF loads.
    let config = t.tokenizer_config_json();
    let v: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        (v["tokenizer_class"].as_str(), v["vocab_type"].as_str()),
        (Some("DebertaV2Tokenizer"), Some("spm"))
    );
    assert_eq!((v["mask_token"].as_str(), v["pad_token"].as_str()), (Some("[MASK]"), Some("[PAD]")));
    std::fs::write(dir.join("tokenizer_config.json"), config).unwrap();
    let again = DebertaTokenizer::from_path(&dir).unwrap();
    assert!(again.do_lower_case && again.split_by_punct);
    std::fs::remove_dir_all(&dir).unwrap();
    // Errors name the file.
    let err = DebertaTokenizer::from_path(fixtures().join("texts.jsonl")).err().unwrap().to_string();
    assert!(err.contains("texts.jsonl"), "{err}");
    let err = DebertaTokenizer::from_path(fixtures().join("nope.model")).err().unwrap().to_string();
    assert!(err.contains("nope.model"), "{err}");
}
