//! `deberta pretrain`: ELECTRA-style RTD pre-training with GDES (or the ES/NES/MLM baselines)
//! on a text corpus. With no arguments it pre-trains a tiny DeBERTaV3 on the bundled corpus.

use crate::backend::asset;
use crate::flags::{preset_parser, Runtime};
use crate::init::config_json;
use crate::vocab::check_vocab;
use crate::with_backend;
use anyhow::{bail, Context, Result};
use burn::tensor::backend::AutodiffBackend;
use deberta_data::corpus::{corpus_files, Lines, TokenCache};
use deberta_model::DebertaConfig;
use deberta_tokenizer::train::{train_files, write_model_dir, write_tokenizer_files, TrainOptions};
use deberta_tokenizer::DebertaTokenizer;
use deberta_train::optim::AdamWConfig;
use deberta_train::pretrain::run::{
    open_run, run as run_pretraining, Observer, Outcome, PretrainError, RunOptions,
};
use deberta_train::pretrain::{EvalReport, Objective, Pretrainer, Recipe, Settings, StepReport, Vocabulary};
use deberta_train::rtd::EmbeddingSharing;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

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
    /// Discriminator shape (default: tiny).
    #[arg(long, conflicts_with_all = ["config", "init_from"], value_parser = preset_parser())]
    preset: Option<String>,
    /// Discriminator config.json (instead of a preset).
    #[arg(long, conflicts_with = "init_from")]
    config: Option<PathBuf>,
    /// Continue from an HF checkpoint: a directory this command exported (with `discriminator/`
    /// and `generator/`), or any DeBERTa-v2/v3 model directory (used as the discriminator; the
    /// generator starts fresh from its word embeddings).
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// Generator depth (default: half the discriminator's, as DeBERTaV3 does, and at least 2:
    /// the Enhanced Mask Decoder reads the second-to-last layer).
    #[arg(long)]
    generator_layers: Option<usize>,
    /// What the model learns.
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Rtd)]
    objective: ObjectiveArg,
    /// How the discriminator shares the generator's word embeddings (RTD only).
    #[arg(long, value_enum, default_value_t = SharingArg::Gdes)]
    embedding_sharing: SharingArg,
    /// Hyper-parameter defaults: `small` (for tiny to xsmall models and 10^2 to 10^4
    /// steps: Adam with bias correction, warmup 10% of --steps, lr 1e-3) or `official` (the
    /// DeBERTaV3 recipe for long runs: XAdam without bias correction, warmup 10,000 steps,
    /// lr 3e-4). --lr, --warmup-steps, --adam-bias-correction and --rtd-lambda override either.
    #[arg(long, value_enum, default_value_t = RecipeArg::Small)]
    recipe: RecipeArg,
    /// Weight of the RTD loss, >= 0 (default: the recipe's, 10 as in the official code; the paper
    /// and ELECTRA: 50).
    #[arg(long)]
    rtd_lambda: Option<f64>,
    /// Optimiser steps (the default fits the main job, about 5 minutes on 2 cores).
    #[arg(long, default_value_t = 300)]
    steps: u64,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Tokens per line including [CLS] and [SEP] (the official recipe: 512).
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Peak learning rate, > 0 (default: the recipe's).
    #[arg(long)]
    lr: Option<f64>,
    /// Linear warmup steps (default: the recipe's).
    #[arg(long)]
    warmup_steps: Option<u64>,
    /// Decoupled weight decay, >= 0 (not on biases and LayerNorm parameters).
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// Global gradient-norm clip, > 0.
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Correct Adam's moment start-up bias as torch's AdamW does (`true`/`false`; default: the
    /// recipe's: on for `small`, off for `official`, whose XAdam has none).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    adam_bias_correction: Option<bool>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value = "runs/pretrain")]
    out: PathBuf,
    /// Write a checkpoint every N steps, N >= 1 (default: every 10% of the run).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
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
    /// Evaluate on the held-out lines every N steps (default: every 10% of the run); 0: never.
    #[arg(long)]
    eval_every: Option<u64>,
    /// Lines at the end of the corpus kept out of training for evaluation (default: 5% of the
    /// lines, at most 64).
    #[arg(long)]
    eval_lines: Option<usize>,
    /// Log a line every N steps, N >= 1 (the progress bar shows every step on a terminal).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    log_every: u64,
    #[command(flatten)]
    runtime: Runtime,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ObjectiveArg {
    /// Replaced token detection: a generator and a discriminator.
    Rtd,
    /// The MLM-only baseline: one model of the discriminator's shape.
    Mlm,
}

impl From<ObjectiveArg> for Objective {
    fn from(o: ObjectiveArg) -> Objective {
        match o {
            ObjectiveArg::Rtd => Objective::Rtd,
            ObjectiveArg::Mlm => Objective::Mlm,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SharingArg {
    /// Gradient-disentangled: the discriminator adds its own delta, which the RTD loss trains.
    Gdes,
    /// One embedding, trained by both losses.
    Es,
    /// Separate embeddings.
    Nes,
}

impl From<SharingArg> for EmbeddingSharing {
    fn from(s: SharingArg) -> EmbeddingSharing {
        match s {
            SharingArg::Gdes => EmbeddingSharing::Gdes,
            SharingArg::Es => EmbeddingSharing::Es,
            SharingArg::Nes => EmbeddingSharing::Nes,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RecipeArg {
    Small,
    Official,
}

impl RecipeArg {
    fn defaults(self, steps: u64) -> Recipe {
        match self {
            RecipeArg::Small => Recipe::small(steps),
            RecipeArg::Official => Recipe::official(steps),
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    args.runtime.start()?;
    if args.steps == 0 || args.batch_size == 0 {
        bail!("--steps and --batch-size must be positive");
    }
    if !args.resume {
        // The flags' ranges, before any work (a resumed run uses its saved settings instead).
        deberta_train::validate::check_pretrain(&settings_with(&args, Settings::default().vocabulary))
            .map_err(anyhow::Error::msg)?;
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    // One run at a time in a directory: held until the run ends.
    let _lock = deberta_io::lock_dir(&args.out)?;
    with_backend!(args.runtime.device, |B, device| train::<burn::backend::Autodiff<B>>(&args, &device))
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

/// A fresh run, or one started from `--init-from`.
fn new_run<B: AutodiffBackend>(
    args: &Args,
    settings: Settings,
    tok: &DebertaTokenizer,
    device: &B::Device,
) -> Result<Pretrainer<B>> {
    if let Some(dir) = &args.init_from {
        let (run, config) =
            Pretrainer::<B>::from_pretrained(settings, dir, args.generator_layers, device, |p, n| {
                tracing::info!("{}: initialised {n}", p.display())
            })?;
        check_vocab(&config, tok, dir.display())?;
        return Ok(run);
    }
    let mut json = config_json(Some(args.preset.as_deref().unwrap_or("tiny")), None)?;
    if let Some(path) = &args.config {
        json = config_json(None, Some(path))?;
    } else {
        json["vocab_size"] = tok.vocab_size().into();
    }
    let serde_json::Value::Object(map) = json else { bail!("the config is not a JSON object") };
    let disc = DebertaConfig::from_map(map)?;
    if let Some(path) = &args.config {
        check_vocab(&disc, tok, path.display())?;
    }
    Ok(Pretrainer::from_config(settings, disc, args.generator_layers, device)?)
}

/// `--eval-lines` not given: resolved to 5% of the lines (at most 64) once the corpus is cut.
const AUTO_EVAL_LINES: usize = usize::MAX;

fn settings(args: &Args, tok: &DebertaTokenizer) -> Settings {
    settings_with(args, vocabulary(tok))
}

fn settings_with(args: &Args, vocabulary: Vocabulary) -> Settings {
    let recipe = args.recipe.defaults(args.steps);
    Settings {
        objective: args.objective.into(),
        sharing: args.embedding_sharing.into(),
        rtd_lambda: args.rtd_lambda.unwrap_or(recipe.rtd_lambda),
        lr: args.lr.unwrap_or(recipe.lr),
        warmup_steps: args.warmup_steps.unwrap_or(recipe.warmup_steps),
        steps: args.steps,
        batch_size: args.batch_size,
        seq_len: args.seq_len,
        seed: args.seed,
        adam: AdamWConfig {
            weight_decay: args.weight_decay,
            max_grad_norm: Some(args.max_grad_norm),
            bias_correction: args.adam_bias_correction.unwrap_or(recipe.bias_correction),
            ..Default::default()
        },
        vocabulary,
        eval_lines: args.eval_lines.unwrap_or(AUTO_EVAL_LINES),
    }
}

/// Prints progress: a bar on a terminal, log lines every `--log-every` steps and at each
/// evaluation and checkpoint.
struct Printer {
    bar: ProgressBar,
    log_every: u64,
    first: u64,
    total: u64,
    rtd: bool,
}

impl Observer for Printer {
    fn started(&mut self, from: u64, total: u64) {
        self.first = from;
        self.total = total;
        self.bar.set_length(total);
        self.bar.set_position(from);
    }

    fn step(&mut self, r: &StepReport, tps: f64) {
        let st = r.stats;
        let msg = if self.rtd {
            format!("mlm {:.3} rtd {:.3} | {tps:.0} tok/s", st.mlm_loss, st.rtd_loss)
        } else {
            format!("mlm {:.3} | {tps:.0} tok/s", st.mlm_loss)
        };
        self.bar.set_message(msg.clone());
        self.bar.inc(1);
        if r.step.is_multiple_of(self.log_every) || r.step == self.first + 1 {
            self.bar.suspend(|| tracing::info!("step {}/{}: {msg}, lr {:.2e}", r.step, self.total, r.lr));
        }
    }

    fn evaluated(&mut self, e: &EvalReport) {
        let msg = if self.rtd {
            format!(
                "held out at step {}: mlm loss {:.3} acc {:.3} | rtd loss {:.3} acc {:.3} AUC {:.3} | replaced {:.3}",
                e.step, e.mlm_loss, e.mlm_accuracy, e.rtd_loss, e.rtd_accuracy, e.rtd_auc, e.replaced_fraction
            )
        } else {
            format!("held out at step {}: mlm loss {:.3} acc {:.3}", e.step, e.mlm_loss, e.mlm_accuracy)
        };
        self.bar.suspend(|| tracing::info!("{msg}"));
    }

    fn checkpoint(&mut self, dir: &Path) {
        self.bar.suspend(|| tracing::info!("checkpoint {}", dir.display()));
    }

    fn exported(&mut self, dir: &Path) {
        self.bar.suspend(|| println!("wrote {}", dir.display()));
    }
}

fn train<B: AutodiffBackend>(args: &Args, device: &B::Device) -> Result<()> {
    let (files, tok) = corpus_and_tokenizer(args)?;
    let mut run = open_run::<B>(&args.out, args.resume, device, || {
        new_run::<B>(args, settings(args, &tok), &tok, device)
            .map_err(|e| PretrainError::Invalid(format!("{e:#}")))
    })?;
    if args.resume {
        tracing::info!("resuming {} at step {} (its saved settings apply)", args.out.display(), run.step);
    }
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
    let vocab = run
        .discriminator_config
        .as_ref()
        .map_or(run.generator_config.vocab_size, |d| d.vocab_size.min(run.generator_config.vocab_size));
    cache.check_ids(vocab)?;
    let lines = Lines::new(cache, s.seq_len, tok.cls_id(), tok.sep_id())?;
    if run.settings.eval_lines == AUTO_EVAL_LINES {
        run.settings.eval_lines = (lines.len() / 20).min(64);
    }
    let lines = lines.with_held_out(run.settings.eval_lines)?;
    let held_out = lines.held_out_lines();
    tracing::info!(
        "corpus: {} file(s), {} tokens, {} training lines of {} tokens ({} held out); {} steps of {} lines = {:.2} epochs; \
         lr {:.1e}, warmup {} steps, Adam bias correction {}, lambda {}",
        files.len(),
        lines.tokens(),
        lines.len(),
        s.seq_len,
        held_out.len(),
        s.steps,
        s.batch_size,
        (s.steps * s.batch_size as u64) as f64 / lines.len() as f64,
        s.lr,
        s.warmup_steps,
        if s.adam.bias_correction { "on" } else { "off" },
        s.rtd_lambda,
    );

    let options = RunOptions {
        out: args.out.clone(),
        checkpoint_every: args.checkpoint_every.unwrap_or((s.steps / 10).max(1)),
        keep_checkpoints: args.keep_checkpoints,
        stop_at: args.stop_at,
        eval_every: args.eval_every.unwrap_or((s.steps / 10).max(1)),
        eval_batch_size: s.batch_size,
        spm: Some(std::fs::read(args.out.join("spm.model")).context("reading the run's spm.model")?),
    };
    let bar = ProgressBar::new(s.steps).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {per_sec} ETA {eta} {msg}").expect("template"),
    );
    let mut printer = Printer {
        bar: bar.clone(),
        log_every: args.log_every,
        first: 0,
        total: s.steps,
        rtd: run.discriminator.is_some(),
    };
    let outcome = run_pretraining(&mut run, &lines, &held_out, &options, args.resume, &mut printer);
    bar.abandon();
    match outcome? {
        Outcome::Stopped { step } => println!("stopped at step {step} (--stop-at); continue with --resume"),
        Outcome::Finished { last_eval, .. } => {
            if let Some(e) = last_eval {
                println!("held-out: {}", e.to_json());
            }
            println!(
                "metrics: {}, plot: {}",
                args.out.join("metrics.jsonl").display(),
                args.out.join("loss.png").display()
            );
        }
    }
    Ok(())
}
