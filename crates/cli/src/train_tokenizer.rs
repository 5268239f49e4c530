//! `deberta train-tokenizer`: a new DeBERTa-v3-style spm.model for from-scratch pre-training.

use anyhow::Result;
use deberta_tokenizer::train::{train_files, write_model_dir, TrainOptions};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Text files, one sentence per line.
    #[arg(long, num_args = 1.., required = true)]
    corpus: Vec<PathBuf>,
    /// Pieces in total, including [PAD] [CLS] [SEP] [UNK] and the 256 byte pieces
    /// ([MASK] comes on top, as id vocab_size).
    #[arg(long, default_value_t = 128_000)]
    vocab_size: usize,
    /// Output directory: spm.model and tokenizer_config.json.
    #[arg(long)]
    out: PathBuf,
    /// Fraction of characters covered by the vocabulary; the rest use byte fallback.
    #[arg(long, default_value_t = 0.9995)]
    character_coverage: f64,
    /// Longest piece, in characters.
    #[arg(long, default_value_t = 16)]
    max_piece_length: usize,
    /// Use all cores for EM (faster; results may differ in the last float bits between runs).
    #[arg(long)]
    parallel: bool,
}

pub fn run(args: Args) -> Result<()> {
    let opts = TrainOptions {
        vocab_size: args.vocab_size,
        character_coverage: args.character_coverage,
        max_piece_length: args.max_piece_length,
        parallel: args.parallel,
        ..Default::default()
    };
    tracing::info!("training a {}-piece unigram model on {} file(s)", args.vocab_size, args.corpus.len());
    let proto = train_files(&args.corpus, &opts)?;
    let path = write_model_dir(&args.out, &proto)?;
    println!("wrote {} ({} pieces; [MASK] = {})", path.display(), proto.pieces.len(), proto.pieces.len());
    Ok(())
}
