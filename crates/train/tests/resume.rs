//! A run checkpointed at step N and resumed equals the uninterrupted run bit for bit: weights,
//! optimiser moments and losses (dropout on, so the per-step random streams are exercised).

use burn::backend::{Autodiff, Flex};
use deberta_model::DebertaConfig;
use deberta_train::pretrain::{Objective, Pretrainer, Settings, Vocabulary};
use deberta_train::rtd::EmbeddingSharing;
use deberta_train::state::{module_tensors, param_paths};

type B = Autodiff<Flex>;

const VOCAB: i64 = 60;

fn config(layers: usize) -> DebertaConfig {
    DebertaConfig::from_json_str(&format!(
        r#"{{"vocab_size": {}, "hidden_size": 16, "num_hidden_layers": {layers}, "num_attention_heads": 2,
        "intermediate_size": 32, "max_position_embeddings": 32, "relative_attention": true,
        "position_buckets": 4, "pos_att_type": ["p2c", "c2p"], "norm_rel_ebd": "layer_norm",
        "share_att_key": true, "position_biased_input": false, "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1}}"#,
        VOCAB + 1
    ))
    .unwrap()
}

fn settings(objective: Objective, sharing: EmbeddingSharing) -> Settings {
    Settings {
        objective,
        sharing,
        lr: 1e-3,
        warmup_steps: 2,
        steps: 6,
        batch_size: 3,
        seq_len: 20,
        seed: 5,
        vocabulary: Vocabulary { pad: 0, cls: 1, sep: 2, unk: 3, mask: VOCAB, pieces: (4, VOCAB) },
        ..Default::default()
    }
}

/// Rows of step `s` (one shorter row exercises padding), longer than 2 x the 4-bucket midpoint.
fn rows(step: u64) -> Vec<Vec<u32>> {
    (0..3u64)
        .map(|r| {
            let len = if r == 2 { 14 } else { 20 };
            let mut row = vec![1u32];
            row.extend((0..len - 2).map(|i| 4 + ((step * 31 + r * 7 + i * 13) % (VOCAB as u64 - 4)) as u32));
            row.push(2);
            row
        })
        .collect()
}

fn start(objective: Objective, sharing: EmbeddingSharing) -> Pretrainer<B> {
    let discriminator = (objective == Objective::Rtd).then(|| config(2));
    let generator = if objective == Objective::Rtd { config(1) } else { config(2) };
    Pretrainer::new(settings(objective, sharing), generator, discriminator, &Default::default())
}

fn run(trainer: &mut Pretrainer<B>, until: u64) -> Vec<(f32, f32)> {
    let mut losses = Vec::new();
    while trainer.step < until {
        let r = trainer.train_step(&rows(trainer.step));
        losses.push((r.stats.mlm_loss, r.stats.rtd_loss));
    }
    losses
}

fn state(t: &Pretrainer<B>) -> Vec<(String, Vec<u32>)> {
    let mut all = module_tensors(&t.generator);
    all.extend(t.trainer.generator_opt.state_tensors(&param_paths(&t.generator), "opt.g."));
    if let Some(d) = &t.discriminator {
        all.extend(module_tensors(d).into_iter().map(|(k, v)| (format!("d.{k}"), v)));
        all.extend(t.trainer.discriminator_opt.state_tensors(&param_paths(d), "opt.d."));
    }
    all.into_iter().map(|(k, v)| (k, v.data.iter().map(|x| x.to_bits()).collect())).collect()
}

/// Flex keeps one process-wide RNG (dropout draws from it), so tests that compare random
/// streams must not run concurrently.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check(objective: Objective, sharing: EmbeddingSharing) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut straight = start(objective, sharing);
    let losses = run(&mut straight, 6);

    let dir =
        std::env::temp_dir().join(format!("deberta-resume-{objective:?}-{sharing:?}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut first = start(objective, sharing);
    let mut resumed_losses = run(&mut first, 3);
    first.save_checkpoint(&dir, 2).unwrap();
    drop(first);
    let checkpoint = Pretrainer::<B>::latest_checkpoint(&dir).unwrap().expect("a checkpoint");
    let mut second = Pretrainer::<B>::resume(&checkpoint, &Default::default()).unwrap();
    assert_eq!(second.step, 3);
    resumed_losses.extend(run(&mut second, 6));

    let bits = |v: &[(f32, f32)]| v.iter().map(|(a, b)| (a.to_bits(), b.to_bits())).collect::<Vec<_>>();
    assert_eq!(bits(&losses), bits(&resumed_losses), "losses differ after resuming");
    let (a, b) = (state(&straight), state(&second));
    assert_eq!(a.len(), b.len());
    for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
        assert_eq!(ka, kb);
        assert!(va == vb, "{ka} differs after resuming");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rtd_gdes_resumes_bit_identically() {
    check(Objective::Rtd, EmbeddingSharing::Gdes);
}

#[test]
fn rtd_es_resumes_bit_identically() {
    check(Objective::Rtd, EmbeddingSharing::Es);
}

#[test]
fn mlm_resumes_bit_identically() {
    check(Objective::Mlm, EmbeddingSharing::Gdes);
}
