//! Throughput of `DebertaTokenizer::tokenize` on a text file, one thread and all threads.
//! `cargo run --release -p deberta-tokenizer --example bench_tokenizer -- MODEL TEXT [REPEAT]`
//! (scripts/bench_tokenizer.py runs the sentencepiece library on the same text.)

use deberta_tokenizer::DebertaTokenizer;
use rayon::prelude::*;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let model = args.next().expect("MODEL");
    let text = args.next().expect("TEXT");
    let repeat: usize = args.next().map(|r| r.parse().unwrap()).unwrap_or(1);
    let tok = DebertaTokenizer::from_path(&model).unwrap_or_else(|e| panic!("{e}"));
    let body = std::fs::read_to_string(&text).unwrap();
    let lines: Vec<&str> = body.lines().collect();
    let lines: Vec<&str> = (0..repeat).flat_map(|_| lines.iter().copied()).collect();
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    // Warm up.
    let tokens: usize = lines.iter().take(1000).map(|l| tok.tokenize(l).len()).sum();
    assert!(tokens > 0);
    let t = Instant::now();
    let tokens: usize = lines.iter().map(|l| tok.tokenize(l).len()).sum();
    let one = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let tokens_par: usize = lines.par_iter().map(|l| tok.tokenize(l).len()).sum();
    let all = t.elapsed().as_secs_f64();
    assert_eq!(tokens, tokens_par);
    let threads = rayon::current_num_threads();
    println!(
        "{{\"impl\": \"deberta-tokenizer\", \"lines\": {}, \"bytes\": {bytes}, \"tokens\": {tokens}, \"one_thread_s\": {one:.4}, \"one_thread_lines_per_s\": {:.0}, \"one_thread_mb_per_s\": {:.2}, \"threads\": {threads}, \"all_threads_s\": {all:.4}, \"all_threads_lines_per_s\": {:.0}, \"all_threads_mb_per_s\": {:.2}}}",
        lines.len(),
        lines.len() as f64 / one,
        bytes as f64 / one / 1e6,
        lines.len() as f64 / all,
        bytes as f64 / all / 1e6
    );
}
