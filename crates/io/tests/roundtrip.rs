//! Save -> load round trips and the errors a bad checkpoint must produce.

use burn::prelude::*;
use deberta_io::checkpoint::checkpoint_tensors;
use deberta_io::tensors::{read_safetensors, write_safetensors};
use deberta_io::{load_model, save_model, LoadOptions};
use deberta_model::{Batch, DebertaConfig, DebertaModel, Head};
use std::path::PathBuf;

type B = burn::backend::Flex;

fn config(extra: &str) -> DebertaConfig {
    DebertaConfig::from_json_str(&format!(
        r#"{{"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 24, "max_position_embeddings": 64, "relative_attention": true,
        "position_buckets": 8, "pos_att_type": "p2c|c2p", "norm_rel_ebd": "layer_norm",
        "share_att_key": false, "position_biased_input": false, "conv_kernel_size": 3,
        "num_labels": 3{extra}}}"#
    ))
    .unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("roundtrip").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn batch(rows: usize) -> Batch<B> {
    let device = Default::default();
    let ids: Vec<i64> = (0..rows * 12).map(|k| (1 + (k * 5) % 49) as i64).collect();
    let mask: Vec<i64> = (0..rows * 12).map(|k| (k % 12 < 10 || k / 12 == 0) as i64).collect();
    let t = |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [rows, 12]), &device);
    Batch { input_ids: t(ids), attention_mask: t(mask), token_type_ids: None }
}

#[test]
fn every_head_survives_save_and_load() {
    let device = Default::default();
    for head in Head::ALL {
        for legacy in [false, true] {
            if legacy && head != Head::MaskedLm {
                continue;
            }
            let config = config(&format!(r#", "legacy": {legacy}"#));
            B::seed(&device, 3);
            let model = DebertaModel::<B>::new(&config, head, &device);
            let dir = tmp(&format!("{head:?}-{legacy}"));
            save_model(&model, &config, &dir).unwrap();
            let loaded = load_model::<B>(&dir, &LoadOptions::default(), &device).unwrap();
            assert_eq!(loaded.model.head(), head, "architectures names the head");
            assert_eq!(
                checkpoint_tensors(&model, &config),
                checkpoint_tensors(&loaded.model, &loaded.config)
            );
            let choices = (head == Head::MultipleChoice).then_some(2);
            let a = model.forward(&batch(2), choices).last_hidden_state().into_data();
            let b = loaded.model.forward(&batch(2), choices).last_hidden_state().into_data();
            assert_eq!(a, b, "{head:?}");
            let keys = checkpoint_tensors(&model, &config).into_keys().collect::<Vec<_>>();
            if head == Head::MaskedLm && legacy {
                assert!(keys.contains(&"cls.predictions.transform.dense.weight".to_string()));
            }
            if head == Head::Base {
                assert!(keys.iter().all(|k| !k.starts_with("deberta.")), "bare model keys carry no prefix");
            } else {
                assert!(
                    keys.contains(&"deberta.encoder.layer.0.attention.self.query_proj.weight".to_string())
                );
            }
        }
    }
}

fn saved(head: Head, name: &str) -> (DebertaConfig, PathBuf) {
    let config = config("");
    let model = DebertaModel::<B>::new(&config, head, &Default::default());
    let dir = tmp(name);
    save_model(&model, &config, &dir).unwrap();
    (config, dir)
}

fn load_err(dir: &std::path::Path, options: LoadOptions) -> String {
    load_model::<B>(dir, &options, &Default::default()).unwrap_err().to_string()
}

#[test]
fn missing_and_unexpected_tensors_are_listed() {
    let (_, dir) = saved(Head::SequenceClassification, "missing");
    let file = dir.join("model.safetensors");
    let mut tensors = read_safetensors(&file).unwrap();
    tensors.remove("deberta.encoder.layer.1.output.dense.weight");
    tensors.insert("deberta.encoder.layer.9.output.dense.weight".into(), tensors["classifier.bias"].clone());
    write_safetensors(&file, &tensors).unwrap();
    let err = load_err(&dir, LoadOptions::default());
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(err.contains("missing (1): deberta.encoder.layer.1.output.dense.weight"), "{err}");
    assert!(err.contains("unexpected (1): deberta.encoder.layer.9.output.dense.weight"), "{err}");
}

#[test]
fn a_new_head_is_initialised_only_when_asked() {
    let (_, dir) = saved(Head::Base, "new-head");
    let options = LoadOptions {
        head: Some(Head::SequenceClassification),
        init_missing_head: false,
        ..LoadOptions::default()
    };
    let err = load_err(&dir, options.clone());
    assert!(err.contains("missing head tensors") && err.contains("classifier.weight"), "{err}");
    let loaded =
        load_model::<B>(&dir, &LoadOptions { init_missing_head: true, ..options }, &Default::default())
            .unwrap();
    assert!(loaded.initialised.contains(&"pooler.dense.weight".to_string()), "{:?}", loaded.initialised);

    // The other way round: a task checkpoint read as a bare encoder drops its head weights.
    let (_, dir) = saved(Head::QuestionAnswering, "drop-head");
    let loaded = load_model::<B>(
        &dir,
        &LoadOptions { head: Some(Head::Base), init_missing_head: false, ..LoadOptions::default() },
        &Default::default(),
    )
    .unwrap();
    assert!(loaded.ignored.iter().any(|k| k.starts_with("qa_outputs.weight")), "{:?}", loaded.ignored);
}

#[test]
fn wrong_shapes_corrupt_files_and_bad_configs_are_errors() {
    let (_, dir) = saved(Head::Base, "shape");
    let file = dir.join("model.safetensors");
    let mut tensors = read_safetensors(&file).unwrap();
    let t = tensors.get_mut("encoder.rel_embeddings.weight").unwrap();
    t.shape = vec![8, 32]; // same element count, wrong layout
    write_safetensors(&file, &tensors).unwrap();
    let err = load_err(&dir, LoadOptions::default());
    assert!(err.contains("rel_embeddings") && err.contains("do not fit"), "{err}");

    std::fs::write(&file, b"garbage").unwrap();
    let err = load_err(&dir, LoadOptions::default());
    assert!(err.contains("model.safetensors") && err.contains("not a valid safetensors"), "{err}");

    std::fs::remove_file(&file).unwrap();
    assert!(load_err(&dir, LoadOptions::default()).contains("no weights"));

    let (_, dir) = saved(Head::Base, "config");
    let path = dir.join("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["hidden_act"] = "mish".into();
    std::fs::write(&path, json.to_string()).unwrap();
    let err = load_err(&dir, LoadOptions::default());
    assert!(err.contains("config.json") && err.contains("`hidden_act`"), "{err}");

    std::fs::write(
        &path,
        r#"{"architectures": ["BertForMaskedLM"], "hidden_size": 16, "num_attention_heads": 2}"#,
    )
    .unwrap();
    let err = load_err(&dir, LoadOptions::default());
    assert!(err.contains("`architectures`"), "{err}");
}
