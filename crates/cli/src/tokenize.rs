//! `deberta tokenize`: JSONL texts to DeBERTa inputs, with the sentencepiece library's ids.

use anyhow::{bail, Context, Result};
use deberta_data::corpus::MAX_LINE_BYTES;
use deberta_tokenizer::{DebertaTokenizer, EncodeOptions, Truncation};
use rayon::prelude::*;
use std::io::{BufRead, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

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
    refuse_same_file(&args.input, &args.output)?;
    let mut reader = std::io::BufReader::new(input);
    // Written beside --output and renamed over it at the end: an error leaves an existing
    // --output as it was.
    // A device or pipe (`/dev/stdout`) is written directly.
    let direct = std::fs::metadata(&args.output).is_ok_and(|m| !m.is_file() && !m.is_dir());
    let tmp = if direct { args.output.clone() } else { temp_path(&args.output) };
    let out =
        if direct { std::fs::OpenOptions::new().write(true).open(&tmp) } else { std::fs::File::create(&tmp) }
            .with_context(|| format!("creating {}", tmp.display()))?;
    let result = tokenize_into(&args, &tok, &options, &mut reader, BufWriter::new(out), &tmp, !direct);
    let written = match result {
        Ok(n) => n,
        Err(e) => {
            if !direct {
                let _ = std::fs::remove_file(&tmp);
            }
            return Err(e);
        }
    };
    if !direct {
        std::fs::rename(&tmp, &args.output).with_context(|| format!("writing {}", args.output.display()))?;
    }
    tracing::info!("{written} lines tokenized with {}", tok.source().display());
    println!("wrote {} ({written} lines)", args.output.display());
    Ok(())
}

/// `--input` and `--output` must be different files (writing one would destroy the other).
fn refuse_same_file(input: &Path, output: &Path) -> Result<()> {
    let same = match (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        bail!("--output {} is the --input file: writing it would destroy the input", output.display());
    }
    Ok(())
}

fn temp_path(output: &Path) -> PathBuf {
    let name = output.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    dir.join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Tokenizes every line of `reader` into `out`; returns the number of lines written.
fn tokenize_into(
    args: &Args,
    tok: &DebertaTokenizer,
    options: &EncodeOptions,
    reader: &mut impl BufRead,
    mut out: BufWriter<std::fs::File>,
    tmp: &Path,
    sync: bool,
) -> Result<usize> {
    let (mut line_no, mut written) = (0usize, 0usize);
    let mut buf = Vec::new();
    let mut eof = false;
    while !eof {
        // Parse a chunk (first error wins, naming its line), encode it in parallel, write in order.
        let mut rows: Vec<(usize, String, Option<String>)> = Vec::with_capacity(CHUNK);
        while rows.len() < CHUNK {
            buf.clear();
            let n = reader
                .by_ref()
                .take(MAX_LINE_BYTES + 1)
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("reading {}", args.input.display()))?;
            if n == 0 {
                eof = true;
                break;
            }
            line_no += 1;
            if n as u64 > MAX_LINE_BYTES {
                bail!(
                    "{}:{line_no}: more than {} MiB without a newline",
                    args.input.display(),
                    MAX_LINE_BYTES >> 20
                );
            }
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
                    .encode(text, pair.as_deref(), options)
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
            writeln!(out, "{}", line?).with_context(|| format!("writing {}", tmp.display()))?;
            written += 1;
        }
    }
    let file =
        out.into_inner().map_err(|e| e.into_error()).with_context(|| format!("writing {}", tmp.display()))?;
    if sync {
        file.sync_all().with_context(|| format!("writing {}", tmp.display()))?;
    }
    Ok(written)
}
