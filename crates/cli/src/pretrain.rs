//! `deberta pretrain`: ELECTRA-style RTD pre-training with GDES (or the ES/NES/MLM baselines)
//! on a text corpus. With no arguments it pre-trains a tiny DeBERTaV3 on the bundled corpus.

use crate::backend::{asset, parse_device};
use crate::init::config_json;
use crate::with_backend;
use anyhow::{bail, Context, Result};
use burn::module::Param;
use burn::tensor::backend::AutodiffBackend;
use deberta_data::corpus::{corpus_files, Lines, TokenCache};
use deberta_io::{load_model, LoadOptions};
use deberta_model::{DebertaConfig, DebertaModel, Head};
use deberta_tokenizer::train::{train_files, write_model_dir, write_tokenizer_files, TrainOptions};
use deberta_tokenizer::DebertaTokenizer;
use deberta_train::metrics::{plot, MetricsLog};
use deberta_train::optim::AdamWConfig;
use deberta_train::pretrain::{Objective, Pretrainer, Settings, StepReport, Vocabulary};
use deberta_train::rtd::{Discriminator, EmbeddingSharing};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Text files or directories (walked recursively), streamed and tokenized once into a
    /// memory-mapped cache. Default: the bundled public-domain corpus (assets/corpus/text).
    #[arg(long, num_args = 1..)]
    corpus: Vec<PathBuf>,
    /// A DeBERTa-v3 spm.model. Default: the bundled one with the bundled corpus, or the one in
    /// --init-from.
    #[arg(long, conflicts_with = "vocab_size")]
    tokenizer: Option<PathBuf>,
    /// Train a new tokenizer of this many pieces on the corpus first (saved in --out).
    #[arg(long)]
    vocab_size: Option<usize>,
    /// Discriminator shape: tiny, xsmall, small, base, large.
    #[arg(long, conflicts_with_all = ["config", "init_from"])]
    preset: Option<String>,
    /// Discriminator config.json (instead of a preset).
    #[arg(long, conflicts_with = "init_from")]
    config: Option<PathBuf>,
    /// Continue from an HF checkpoint: a directory this command exported (with `discriminator/`
    /// and `generator/`), or any DeBERTa-v2/v3 model directory (used as the discriminator; the
    /// generator starts fresh from its word embeddings).
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Generator depth (default: half the discriminator's, as DeBERTaV3 does).
    #[arg(long)]
    generator_layers: Option<usize>,
    #[arg(long, default_value = "rtd", value_parser = ["rtd", "mlm"])]
    objective: String,
    #[arg(long, default_value = "gdes", value_parser = ["gdes", "es", "nes"])]
    embedding_sharing: String,
    /// Weight of the RTD loss (official code: 10; the paper and ELECTRA: 50).
    #[arg(long, default_value_t = 10.0)]
    rtd_lambda: f64,
    #[arg(long, default_value_t = 200)]
    steps: u64,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Tokens per line including [CLS] and [SEP] (the official recipe: 512).
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Linear warmup steps (default: 10% of --steps, at most 10,000 as in the official recipe).
    #[arg(long)]
    warmup_steps: Option<u64>,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Correct Adam's moment start-up bias as torch's AdamW does (the official XAdam does not).
    #[arg(long)]
    adam_bias_correction: bool,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value = "runs/pretrain")]
    out: PathBuf,
    /// Write a checkpoint every N steps (default: every 10% of the run).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Checkpoints kept on disk (oldest deleted first).
    #[arg(long, default_value_t = 2)]
    keep_checkpoints: usize,
    /// Continue the run in --out from its latest checkpoint (its saved settings are used).
    #[arg(long)]
    resume: bool,
    /// Stop after this step as if interrupted (the checkpoint at it is written first).
    #[arg(long)]
    stop_at: Option<u64>,
    /// Log a line every N steps (the progress bar shows every step on a terminal).
    #[arg(long, default_value_t = 50)]
    log_every: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: crate::backend::Device,
}

pub fn run(args: Args) -> Result<()> {
    crate::backend::set_threads(args.threads)?;
    if args.steps == 0 || args.batch_size == 0 {
        bail!("--steps and --batch-size must be positive");
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    with_backend!(args.device, |B, device| train::<burn::backend::Autodiff<B>>(&args, &device))
}

/// The corpus files and the tokenizer (trained first if asked), with the tokenizer copied to
/// `out/spm.model` so the run directory is self-contained.
fn corpus_and_tokenizer(args: &Args) -> Result<(Vec<PathBuf>, DebertaTokenizer)> {
    let bundled = args.corpus.is_empty();
    let corpus = if bundled { vec![asset("corpus/text")] } else { args.corpus.clone() };
    let files = corpus_files(&corpus)?;
    let kept = args.out.join("spm.model");
    let source = if args.resume && kept.exists() {
        kept.clone()
    } else if let Some(t) = &args.tokenizer {
        t.clone()
    } else if let Some(n) = args.vocab_size {
        tracing::info!("training a {n}-piece tokenizer on {} file(s)", files.len());
        let opts = TrainOptions { vocab_size: n, ..Default::default() };
        let proto = train_files(&files, &opts)?;
        write_model_dir(&args.out, &proto)?
    } else if let Some(dir) = args.init_from.as_ref().map(|d| d.join("spm.model")).filter(|p| p.exists()) {
        dir
    } else if let Some(dir) =
        args.init_from.as_ref().map(|d| d.join("discriminator/spm.model")).filter(|p| p.exists())
    {
        dir
    } else if bundled {
        asset("corpus/spm.model")
    } else {
        bail!("give --tokenizer spm.model, or --vocab-size N to train one on the corpus");
    };
    if source != kept {
        let bytes = std::fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
        write_tokenizer_files(&args.out, &bytes)?;
    }
    Ok((files, DebertaTokenizer::from_path(&kept)?))
}

fn vocabulary(tok: &DebertaTokenizer) -> Vocabulary {
    let s = tok.special_ids();
    let pieces = tok.spm().map_or(tok.vocab_size(), |m| m.len()) as i64;
    Vocabulary {
        pad: s.pad as i64,
        cls: s.cls as i64,
        sep: s.sep as i64,
        unk: s.unk as i64,
        mask: s.mask as i64,
        // DeBERTa-v3 layout: ids 0-3 special, then byte pieces and ordinary pieces.
        pieces: (4, pieces.min(s.mask as i64).max(5)),
    }
}

fn parse_sharing(s: &str) -> EmbeddingSharing {
    match s {
        "es" => EmbeddingSharing::Es,
        "nes" => EmbeddingSharing::Nes,
        _ => EmbeddingSharing::Gdes,
    }
}

fn check_vocab(config: &DebertaConfig, tok: &DebertaTokenizer, what: &str) -> Result<()> {
    if config.vocab_size < tok.vocab_size() {
        bail!(
            "{what}: vocab_size {} is smaller than the tokenizer's {} ids ({})",
            config.vocab_size,
            tok.vocab_size(),
            tok.source().display()
        );
    }
    Ok(())
}

fn generator_config(disc: &DebertaConfig, layers: Option<usize>) -> Result<DebertaConfig> {
    // Through the JSON: a config saves its original keys, so editing the typed field alone
    // would not reach the saved config.json.
    let mut json = disc.to_json_value(Head::Base);
    json["num_hidden_layers"] = layers.unwrap_or((disc.num_hidden_layers / 2).max(1)).into();
    let serde_json::Value::Object(mut map) = json else { unreachable!("configs are objects") };
    map.remove("architectures");
    Ok(DebertaConfig::from_map(map)?)
}

/// A fresh run, or one started from `--init-from`.
fn new_run<B: AutodiffBackend>(
    args: &Args,
    settings: Settings,
    tok: &DebertaTokenizer,
    device: &B::Device,
) -> Result<Pretrainer<B>> {
    let rtd = settings.objective == Objective::Rtd;
    let Some(dir) = &args.init_from else {
        let mut json = config_json(Some(args.preset.as_deref().unwrap_or("tiny")), None)?;
        if let Some(path) = &args.config {
            json = config_json(None, Some(path))?;
        } else {
            json["vocab_size"] = tok.vocab_size().into();
        }
        let serde_json::Value::Object(map) = json else { bail!("the config is not a JSON object") };
        let disc = DebertaConfig::from_map(map)?;
        check_vocab(&disc, tok, "the config")?;
        let gen = if rtd { generator_config(&disc, args.generator_layers)? } else { disc.clone() };
        gen.check_head(Head::EnhancedMaskDecoderLm)?;
        return Ok(Pretrainer::new(settings, gen, rtd.then_some(disc), device));
    };
    let load = |path: &Path, head: Head| {
        let opts = LoadOptions { head: Some(head), init_missing_head: true };
        B::seed(device, settings.seed);
        let loaded = load_model::<B>(path, &opts, device)?;
        for name in &loaded.initialised {
            tracing::info!("{}: initialised {name}", path.display());
        }
        check_vocab(&loaded.config, tok, &path.display().to_string())?;
        anyhow::Ok((loaded.config, loaded.model))
    };
    let exported = dir.join("discriminator").is_dir() && dir.join("generator").is_dir();
    if !rtd {
        let (config, model) =
            load(&if exported { dir.join("generator") } else { dir.clone() }, Head::EnhancedMaskDecoderLm)?;
        return Ok(Pretrainer::assemble(settings, config, model, None, None, device));
    }
    let (disc_config, disc_model) =
        load(&if exported { dir.join("discriminator") } else { dir.clone() }, Head::ReplacedTokenDetection)?;
    let (gen_config, mut generator) = if exported {
        load(&dir.join("generator"), Head::EnhancedMaskDecoderLm)?
    } else {
        let c = generator_config(&disc_config, args.generator_layers)?;
        (c.clone(), DebertaModel::<B>::new(&c, Head::EnhancedMaskDecoderLm, device))
    };
    // The exported discriminator's embedding is E_G + E_delta: continuing GDES from it, E_G
    // takes that merged value and E_delta restarts at zero (the sum, what both models saw, is kept).
    if settings.sharing != EmbeddingSharing::Nes {
        let merged = disc_model.deberta.embeddings.word_embeddings.weight.val();
        if merged.dims() != generator.deberta.embeddings.word_embeddings.weight.dims() {
            bail!("{}: generator and discriminator embeddings differ in shape", dir.display());
        }
        generator.deberta.embeddings.word_embeddings.weight =
            Param::from_tensor(merged.detach().require_grad());
    }
    let discriminator = Discriminator::new(disc_model, settings.sharing);
    Ok(Pretrainer::assemble(settings, gen_config, generator, Some(disc_config), Some(discriminator), device))
}

fn settings(args: &Args, tok: &DebertaTokenizer) -> Settings {
    Settings {
        objective: if args.objective == "mlm" { Objective::Mlm } else { Objective::Rtd },
        sharing: parse_sharing(&args.embedding_sharing),
        rtd_lambda: args.rtd_lambda,
        lr: args.lr,
        warmup_steps: args.warmup_steps.unwrap_or((args.steps / 10).min(10_000)),
        steps: args.steps,
        batch_size: args.batch_size,
        seq_len: args.seq_len,
        seed: args.seed,
        adam: AdamWConfig {
            weight_decay: args.weight_decay,
            max_grad_norm: Some(args.max_grad_norm),
            bias_correction: args.adam_bias_correction,
            ..Default::default()
        },
        vocabulary: vocabulary(tok),
    }
}

fn train<B: AutodiffBackend>(args: &Args, device: &B::Device) -> Result<()> {
    let (files, tok) = corpus_and_tokenizer(args)?;
    let mut run = match Pretrainer::<B>::latest_checkpoint(&args.out)? {
        Some(checkpoint) if args.resume => {
            let run = Pretrainer::<B>::resume(&checkpoint, device)?;
            tracing::info!(
                "resuming {} at step {} (its saved settings apply)",
                checkpoint.display(),
                run.step
            );
            run
        }
        None if args.resume => bail!("--resume: no checkpoint in {}", args.out.join("checkpoints").display()),
        Some(checkpoint) => bail!(
            "{} holds a run (latest checkpoint {}): pass --resume to continue it, or choose another --out",
            args.out.display(),
            checkpoint.display()
        ),
        None => new_run::<B>(args, settings(args, &tok), &tok, device)?,
    };
    let s = run.settings.clone();
    if !args.resume
        && run.discriminator.is_some()
        && s.vocabulary.mask as usize >= run.generator_config.vocab_size
    {
        bail!(
            "[MASK] id {} is outside the embedding ({} rows)",
            s.vocabulary.mask,
            run.generator_config.vocab_size
        );
    }

    let bytes: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let bar = ProgressBar::new(bytes).with_style(
        ProgressStyle::with_template("tokenizing {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
            .expect("template"),
    );
    let cache = TokenCache::build_or_open(&files, &tok, &args.out.join("cache"), |b| bar.set_position(b))?;
    bar.finish_and_clear();
    let lines = Lines::new(cache, s.seq_len, tok.cls_id(), tok.sep_id())?;
    tracing::info!(
        "corpus: {} file(s), {} tokens, {} lines of {} tokens; {} steps of {} lines = {:.2} epochs",
        files.len(),
        lines.tokens(),
        lines.len(),
        s.seq_len,
        s.steps,
        s.batch_size,
        (s.steps * s.batch_size as u64) as f64 / lines.len() as f64
    );

    let every = args.checkpoint_every.unwrap_or((s.steps / 10).max(1));
    let metrics_path = args.out.join("metrics.jsonl");
    let mut log = MetricsLog::open(&metrics_path, args.resume.then_some(run.step))
        .with_context(|| format!("opening {}", metrics_path.display()))?;
    let bar = ProgressBar::new(s.steps).with_position(run.step).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {per_sec} ETA {eta} {msg}").expect("template"),
    );
    let started = Instant::now();
    let first_step = run.step;
    let mut tokens_done = 0usize;
    while run.step < s.steps {
        let rows = lines.batch(s.seed, run.step, s.batch_size);
        let report = run.train_step(&rows);
        tokens_done += report.tokens;
        let elapsed = started.elapsed().as_secs_f64();
        let tps = tokens_done as f64 / elapsed.max(1e-9);
        let (epoch, _) = lines.position(report.step, s.batch_size);
        log.append(&record(&report, tps, elapsed, epoch))?;
        let st = report.stats;
        if !st.mlm_loss.is_finite() || (run.discriminator.is_some() && !st.rtd_loss.is_finite()) {
            bar.abandon();
            let last = Pretrainer::<B>::latest_checkpoint(&args.out)?
                .map_or("none yet".to_string(), |p| p.display().to_string());
            bail!(
                "step {}: the loss is not finite (MLM {}, RTD {}); stopped without saving. Last good checkpoint: {last}",
                report.step,
                st.mlm_loss,
                st.rtd_loss
            );
        }
        let msg = if run.discriminator.is_some() {
            format!("mlm {:.3} rtd {:.3} | {tps:.0} tok/s", st.mlm_loss, st.rtd_loss)
        } else {
            format!("mlm {:.3} | {tps:.0} tok/s", st.mlm_loss)
        };
        bar.set_message(msg.clone());
        bar.inc(1);
        if report.step % args.log_every == 0 || report.step == first_step + 1 {
            bar.suspend(|| tracing::info!("step {}/{}: {msg}, lr {:.2e}", report.step, s.steps, report.lr));
        }
        if report.step % every == 0 || report.step == s.steps || args.stop_at == Some(report.step) {
            let dir = run.save_checkpoint(&args.out, args.keep_checkpoints)?;
            let _ = plot(&metrics_path, &args.out.join("loss.png"), PLOTTED)
                .map_err(|e| tracing::warn!("plot: {e}"));
            bar.suspend(|| tracing::info!("checkpoint {}", dir.display()));
        }
        if args.stop_at == Some(report.step) && report.step < s.steps {
            bar.abandon();
            println!("stopped at step {} (--stop-at); continue with --resume", report.step);
            return Ok(());
        }
    }
    bar.finish();
    let spm = std::fs::read(args.out.join("spm.model")).context("reading the run's spm.model")?;
    for dir in run.export(&args.out)? {
        write_tokenizer_files(&dir, &spm)?;
        println!("wrote {}", dir.display());
    }
    println!("metrics: {}, plot: {}", metrics_path.display(), args.out.join("loss.png").display());
    Ok(())
}

const PLOTTED: &[(&str, &str)] =
    &[("mlm_loss", "generator MLM loss"), ("rtd_loss", "discriminator RTD loss")];

fn record(r: &StepReport, tokens_per_second: f64, elapsed: f64, epoch: u64) -> serde_json::Value {
    let finite = |v: f64| if v.is_finite() { serde_json::json!(v) } else { serde_json::Value::Null };
    serde_json::json!({
        "step": r.step,
        "lr": r.lr,
        "mlm_loss": finite(r.stats.mlm_loss as f64),
        "rtd_loss": finite(r.stats.rtd_loss as f64),
        "generator_grad_norm": finite(r.stats.generator_grad_norm),
        "discriminator_grad_norm": finite(r.stats.discriminator_grad_norm),
        "replaced_fraction": finite(r.stats.replaced_fraction as f64),
        "tokens": r.tokens,
        "tokens_per_second": tokens_per_second,
        "elapsed_seconds": elapsed,
        "epoch": epoch,
    })
}
