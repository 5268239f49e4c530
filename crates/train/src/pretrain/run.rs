//! A whole pre-training run around [`Pretrainer`]: start fresh, from a pre-trained model, or
//! resume; step through the corpus; evaluate on held-out lines; write `metrics.jsonl`, the plot
//! and checkpoints at their cadence; stop on a non-finite loss keeping the last good
//! checkpoint; export HF directories at the end. Front ends (the CLI) watch it through an
//! [`Observer`] and only print.

use super::{EvalReport, Pretrainer, Settings, StepReport};
use crate::metrics::{plot, MetricsLog};
use crate::rtd::{Discriminator, EmbeddingSharing};
use burn::module::Param;
use burn::tensor::backend::AutodiffBackend;
use deberta_data::corpus::Lines;
use deberta_io::{load_model, IoError, LoadOptions};
use deberta_model::{ConfigError, DebertaConfig, DebertaModel, Head};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum PretrainError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error(
        "step {step}: the loss is not finite (MLM {mlm}, RTD {rtd}); stopped without saving. Last good checkpoint: {last}"
    )]
    NonFinite { step: u64, mlm: f32, rtd: f32, last: String },
    #[error("{0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, PretrainError>;

/// The series `loss.png` shows, with their titles.
pub const PLOTTED: &[(&str, &str)] = &[
    ("mlm_loss", "generator MLM loss (training)"),
    ("eval_mlm_loss", "generator MLM loss (held out)"),
    ("rtd_loss", "discriminator RTD loss (training, x lambda)"),
    ("eval_rtd_auc", "discriminator RTD AUC (held out)"),
];

/// How a run is driven (none of this changes its numbers).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run directory: `metrics.jsonl`, `loss.png`, `checkpoints/`, the exports.
    pub out: PathBuf,
    /// A checkpoint every this many steps (and at the last step).
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    /// Stop after this step as if interrupted (its checkpoint is written first).
    pub stop_at: Option<u64>,
    /// Evaluate on the held-out lines every this many steps (and at the last step); 0: never.
    pub eval_every: u64,
    pub eval_batch_size: usize,
    /// The run's `spm.model`, copied (with `tokenizer_config.json`) into every export.
    pub spm: Option<Vec<u8>>,
}

/// Progress callbacks.
pub trait Observer {
    /// Before the first step: the step the run starts from and the last step.
    fn started(&mut self, _from: u64, _total: u64) {}
    fn step(&mut self, _report: &StepReport, _tokens_per_second: f64) {}
    fn evaluated(&mut self, _report: &EvalReport) {}
    fn checkpoint(&mut self, _dir: &Path) {}
    fn exported(&mut self, _dir: &Path) {}
}

impl Observer for () {}

/// How a run ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// All steps done; the HF directories written.
    Finished { exported: Vec<PathBuf>, last_eval: Option<EvalReport> },
    /// `stop_at` reached before the end.
    Stopped { step: u64 },
}

/// The run in `out`: resumed from its latest checkpoint when `resume` is set (its saved settings
/// apply), otherwise built by `fresh` in a directory that must not hold a run already.
pub fn open_run<B: AutodiffBackend>(
    out: &Path,
    resume: bool,
    device: &B::Device,
    fresh: impl FnOnce() -> Result<Pretrainer<B>>,
) -> Result<Pretrainer<B>> {
    match (Pretrainer::<B>::latest_checkpoint(out)?, resume) {
        (Some(checkpoint), true) => Ok(Pretrainer::<B>::resume(&checkpoint, device)?),
        (None, true) => Err(PretrainError::Invalid(format!(
            "--resume: no checkpoint in {}",
            out.join("checkpoints").display()
        ))),
        (Some(checkpoint), false) => Err(PretrainError::Invalid(format!(
            "{} holds a run (latest checkpoint {}): pass --resume to continue it, or choose another --out",
            out.display(),
            checkpoint.display()
        ))),
        (None, false) => fresh(),
    }
}

/// The generator's config for a discriminator's: the same shape, `layers` deep (default: half
/// the discriminator's depth as in DeBERTaV3, and at least 2, which the Enhanced Mask Decoder
/// needs).
pub fn generator_config(
    disc: &DebertaConfig,
    layers: Option<usize>,
) -> std::result::Result<DebertaConfig, ConfigError> {
    // Through the JSON: a config saves its original keys, so editing the typed field alone
    // would not reach the saved config.json.
    let mut json = disc.to_json_value(Head::Base);
    json["num_hidden_layers"] = layers.unwrap_or((disc.num_hidden_layers / 2).max(2)).into();
    let serde_json::Value::Object(mut map) = json else { unreachable!("configs are objects") };
    map.remove("architectures");
    let config = DebertaConfig::from_map(map)?;
    config.check_head(Head::EnhancedMaskDecoderLm)?;
    Ok(config)
}

impl<B: AutodiffBackend> Pretrainer<B> {
    /// Fresh models of the discriminator's `config` (the generator derived by
    /// [`generator_config`]; the MLM objective trains one model of `config`'s shape).
    pub fn from_config(
        settings: Settings,
        config: DebertaConfig,
        generator_layers: Option<usize>,
        device: &B::Device,
    ) -> Result<Self> {
        let rtd = settings.objective == super::Objective::Rtd;
        let generator = if rtd { generator_config(&config, generator_layers)? } else { config.clone() };
        generator.check_head(Head::EnhancedMaskDecoderLm)?;
        crate::validate::check_pretrain_run(&settings, &generator, rtd.then_some(&config))
            .map_err(PretrainError::Invalid)?;
        Ok(Pretrainer::new(settings, generator, rtd.then_some(config), device))
    }

    /// Continues from an HF checkpoint: a directory a run exported (`discriminator/` and
    /// `generator/`), or any DeBERTa model directory, used as the discriminator (the generator
    /// then starts fresh). Heads missing from the checkpoint are initialised; `on_init` hears
    /// their names. Under GDES and ES the generator's `E_G` takes the discriminator's exported
    /// embedding (`E_G + E_delta`) and `E_delta` restarts at zero, so what both models saw is kept.
    pub fn from_pretrained(
        settings: Settings,
        dir: &Path,
        generator_layers: Option<usize>,
        device: &B::Device,
        mut on_init: impl FnMut(&Path, &str),
    ) -> Result<(Self, DebertaConfig)> {
        crate::validate::check_pretrain(&settings).map_err(PretrainError::Invalid)?;
        let mut load = |path: &Path, head: Head| -> Result<(DebertaConfig, DebertaModel<B>)> {
            let opts = LoadOptions { head: Some(head), init_missing_head: true, ..LoadOptions::default() };
            B::seed(device, settings.seed);
            let loaded = load_model::<B>(path, &opts, device)?;
            for name in &loaded.initialised {
                on_init(path, name);
            }
            Ok((loaded.config, loaded.model))
        };
        let exported = dir.join("discriminator").is_dir() && dir.join("generator").is_dir();
        if settings.objective == super::Objective::Mlm {
            let path = if exported { dir.join("generator") } else { dir.to_path_buf() };
            let (config, model) = load(&path, Head::EnhancedMaskDecoderLm)?;
            crate::validate::check_pretrain_run(&settings, &config, None).map_err(PretrainError::Invalid)?;
            return Ok((Self::assemble(settings, config.clone(), model, None, None, device), config));
        }
        let disc_dir = if exported { dir.join("discriminator") } else { dir.to_path_buf() };
        let (disc_config, disc_model) = load(&disc_dir, Head::ReplacedTokenDetection)?;
        let (gen_config, mut generator) = if exported {
            load(&dir.join("generator"), Head::EnhancedMaskDecoderLm)?
        } else {
            let c = generator_config(&disc_config, generator_layers)?;
            (c.clone(), DebertaModel::<B>::new(&c, Head::EnhancedMaskDecoderLm, device))
        };
        crate::validate::check_pretrain_run(&settings, &gen_config, Some(&disc_config))
            .map_err(PretrainError::Invalid)?;
        if settings.sharing != EmbeddingSharing::Nes {
            let merged = disc_model.deberta.embeddings.word_embeddings.weight.val();
            if merged.dims() != generator.deberta.embeddings.word_embeddings.weight.dims() {
                return Err(PretrainError::Invalid(format!(
                    "{}: generator and discriminator embeddings differ in shape",
                    dir.display()
                )));
            }
            generator.deberta.embeddings.word_embeddings.weight =
                Param::from_tensor(merged.detach().require_grad());
        }
        let discriminator = Discriminator::new(disc_model, settings.sharing);
        let config = disc_config.clone();
        Ok((
            Self::assemble(settings, gen_config, generator, Some(disc_config), Some(discriminator), device),
            config,
        ))
    }
}

/// Runs `trainer` to its last step on `lines` (evaluating on `held_out`), from whatever step it
/// is at. `resumed` keeps the records of `metrics.jsonl` up to that step (a fresh run starts the
/// file anew).
pub fn run<B: AutodiffBackend>(
    trainer: &mut Pretrainer<B>,
    lines: &Lines,
    held_out: &[Vec<u32>],
    options: &RunOptions,
    resumed: bool,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    let s = trainer.settings.clone();
    let out = &options.out;
    let metrics_path = out.join("metrics.jsonl");
    let file_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PretrainError::File { path, source }
    };
    let mut log =
        MetricsLog::open(&metrics_path, resumed.then_some(trainer.step)).map_err(file_err(&metrics_path))?;
    let plot_now = || {
        // A plot is a convenience: failing to draw one never stops a run.
        let _ = plot(&metrics_path, &out.join("loss.png"), PLOTTED);
    };
    let evaluate =
        |trainer: &Pretrainer<B>, log: &mut MetricsLog, observer: &mut dyn Observer| -> Result<EvalReport> {
            let report = trainer.evaluate(held_out, options.eval_batch_size);
            log.append(&report.to_json()).map_err(file_err(&metrics_path))?;
            observer.evaluated(&report);
            Ok(report)
        };
    let eval_due = |step: u64| {
        !held_out.is_empty()
            && options.eval_every > 0
            && (step.is_multiple_of(options.eval_every) || step == s.steps)
    };

    observer.started(trainer.step, s.steps);
    let mut last_eval = None;
    if trainer.step == 0 && eval_due(0) {
        last_eval = Some(evaluate(trainer, &mut log, observer)?);
    }
    let started = Instant::now();
    let mut tokens = 0usize;
    while trainer.step < s.steps {
        let rows = lines.batch(s.seed, trainer.step, s.batch_size);
        let report = trainer.train_step(&rows);
        tokens += report.tokens;
        let elapsed = started.elapsed().as_secs_f64();
        let tps = tokens as f64 / elapsed.max(1e-9);
        let mut record = report.to_json();
        record["tokens_per_second"] = tps.into();
        record["elapsed_seconds"] = elapsed.into();
        record["epoch"] = lines.position(report.step, s.batch_size).0.into();
        log.append(&record).map_err(file_err(&metrics_path))?;
        let st = report.stats;
        if !st.mlm_loss.is_finite() || (trainer.discriminator.is_some() && !st.rtd_loss.is_finite()) {
            let last = Pretrainer::<B>::latest_checkpoint(out)?
                .map_or("none yet".to_string(), |p| p.display().to_string());
            return Err(PretrainError::NonFinite {
                step: report.step,
                mlm: st.mlm_loss,
                rtd: st.rtd_loss,
                last,
            });
        }
        observer.step(&report, tps);
        if eval_due(report.step) {
            last_eval = Some(evaluate(trainer, &mut log, observer)?);
        }
        let stop = options.stop_at == Some(report.step);
        if report.step.is_multiple_of(options.checkpoint_every.max(1)) || report.step == s.steps || stop {
            let dir = trainer.save_checkpoint(out, options.keep_checkpoints)?;
            plot_now();
            observer.checkpoint(&dir);
        }
        if stop && report.step < s.steps {
            return Ok(Outcome::Stopped { step: report.step });
        }
    }
    plot_now();
    let exported = trainer.export(out)?;
    for dir in &exported {
        if let Some(spm) = &options.spm {
            deberta_tokenizer::train::write_tokenizer_files(dir, spm)
                .map_err(|e| PretrainError::Invalid(format!("{}: {e}", dir.display())))?;
        }
        observer.exported(dir);
    }
    Ok(Outcome::Finished { exported, last_eval })
}
