//! `deberta train-tokenizer` without the CLI crate (used by scripts/make_tokenizer_fixtures.py):
//! `cargo run --release -p deberta-tokenizer --example train_tokenizer -- --corpus FILE... --vocab-size N --out DIR`

use deberta_tokenizer::train::{train_files, write_model_dir, TrainOptions};
use std::path::PathBuf;

fn main() {
    let mut corpus = Vec::new();
    let mut opts = TrainOptions::default();
    let mut out = None;
    let mut args = std::env::args().skip(1);
    let mut mode = "";
    while let Some(a) = args.next() {
        match a.as_str() {
            "--corpus" => mode = "corpus",
            "--vocab-size" => {
                opts.vocab_size = args.next().expect("--vocab-size N").parse().expect("a number")
            }
            "--out" => out = Some(PathBuf::from(args.next().expect("--out DIR"))),
            _ if mode == "corpus" => corpus.push(PathBuf::from(a)),
            _ => panic!("unexpected argument {a}"),
        }
    }
    let out = out.expect("--out DIR");
    let proto = train_files(&corpus, &opts).unwrap_or_else(|e| panic!("{e}"));
    let path = write_model_dir(&out, &proto).unwrap_or_else(|e| panic!("{e}"));
    println!("wrote {} ({} pieces)", path.display(), proto.pieces.len());
}
