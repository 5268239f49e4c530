//! `deberta tokenize`: JSONL texts to DeBERTa inputs, with the sentencepiece library's ids.

use anyhow::{bail, Context, Result};
use deberta_tokenizer::{DebertaTokenizer, EncodeOptions, Truncation};
use rayon::prelude::*;
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// An spm.model, a tokenizer.json, or a model directory (spm.model preferred over
    /// tokenizer.json; tokenizer_config.json's do_lower_case / split_by_punct are honoured).
    #[arg(long)]
    tokenizer: PathBuf,
    /// JSONL, one {"text": ..., "text_pair": ...} per line (text_pair optional).
    #[arg(long)]
    input: PathBuf,
    /// JSONL, one {"input_ids", "token_type_ids", "attention_mask", "offsets"} per input line.
    #[arg(long)]
    output: PathBuf,
    /// Truncate to this many tokens, special tokens included (longest_first unless --truncation
    /// says otherwise). Without it nothing is truncated.
    #[arg(long)]
    max_length: Option<usize>,
    /// Which text of a pair to cut (needs --max-length; default: longest_first).
    #[arg(long, value_enum)]
    truncation: Option<TruncationArg>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TruncationArg {
    /// The longer text first (both when both are long).
    #[value(name = "longest_first", alias = "longest-first")]
    LongestFirst,
    #[value(name = "only_first", alias = "only-first")]
    OnlyFirst,
    #[value(name = "only_second", alias = "only-second")]
    OnlySecond,
}

impl From<TruncationArg> for Truncation {
    fn from(t: TruncationArg) -> Truncation {
        match t {
            TruncationArg::LongestFirst => Truncation::LongestFirst,
            TruncationArg::OnlyFirst => Truncation::OnlyFirst,
            TruncationArg::OnlySecond => Truncation::OnlySecond,
        }
    }
}

/// Lines per parallel chunk.
const CHUNK: usize = 8192;

pub fn run(args: Args) -> Result<()> {
    let tok = DebertaTokenizer::from_path(&args.tokenizer)?;
    if args.truncation.is_some() && args.max_length.is_none() {
        bail!("--truncation needs --max-length");
    }
    let options = EncodeOptions {
        max_length: args.max_length,
        truncation: args
            .max_length
            .map(|_| args.truncation.map_or_else(Truncation::default, Truncation::from)),
        ..Default::default()
    };
    let input =
        std::fs::File::open(&args.input).with_context(|| format!("opening {}", args.input.display()))?;
    let mut reader = std::io::BufReader::new(input);
    let out =
        std::fs::File::create(&args.output).with_context(|| format!("creating {}", args.output.display()))?;
    let mut out = BufWriter::new(out);
    let (mut line_no, mut written) = (0usize, 0usize);
    let mut buf = Vec::new();
    let mut eof = false;
    while !eof {
        // Parse a chunk (first error wins, naming its line), encode it in parallel, write in order.
        let mut rows: Vec<(usize, String, Option<String>)> = Vec::with_capacity(CHUNK);
        while rows.len() < CHUNK {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("reading {}", args.input.display()))?;
            if n == 0 {
                eof = true;
                break;
            }
            line_no += 1;
            let at = || format!("{}:{line_no}", args.input.display());
            let line = std::str::from_utf8(&buf).map_err(|e| anyhow::anyhow!("{}: not UTF-8 ({e})", at()))?;
            let line = line.trim_end_matches(['\n', '\r']);
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{}: invalid JSON ({e})", at()))?;
            let text = match v.get("text") {
                Some(serde_json::Value::String(s)) => s.clone(),
                _ => bail!("{}: expected an object with a string \"text\"", at()),
            };
            let pair = match v.get("text_pair") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(_) => bail!("{}: \"text_pair\" must be a string", at()),
            };
            rows.push((line_no, text, pair));
        }
        let encoded: Vec<Result<String>> = rows
            .par_iter()
            .map(|(n, text, pair)| {
                let e = tok
                    .encode(text, pair.as_deref(), &options)
                    .with_context(|| format!("{}:{n}", args.input.display()))?;
                let offsets: Vec<[usize; 2]> = e.offsets.iter().map(|&(s, e)| [s, e]).collect();
                // Keys in the documented order.
                Ok(format!(
                    "{{\"input_ids\":{},\"token_type_ids\":{},\"attention_mask\":{},\"offsets\":{}}}",
                    serde_json::to_string(&e.input_ids)?,
                    serde_json::to_string(&e.token_type_ids)?,
                    serde_json::to_string(&e.attention_mask)?,
                    serde_json::to_string(&offsets)?
                ))
            })
            .collect();
        for line in encoded {
            writeln!(out, "{}", line?).with_context(|| format!("writing {}", args.output.display()))?;
            written += 1;
        }
    }
    out.flush().with_context(|| format!("writing {}", args.output.display()))?;
    tracing::info!("{written} lines tokenized with {}", tok.source().display());
    println!("wrote {} ({written} lines)", args.output.display());
    Ok(())
}
