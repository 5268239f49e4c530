//! Bad input through the `deberta` binary: out-of-range ids, tampered checkpoints and caches,
//! absurd sizes, damaged weights, clashing runs and overwrites each end in an error naming the
//! file, flag or key, never in a panic, an allocator abort, a hang or lost data.

use std::path::{Path, PathBuf};

mod common;

use common::{deberta_env, fails, fails_env, ok, pretrain_args, repo, scratch};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A fresh directory for one test.
fn tmp(name: &str) -> PathBuf {
    let dir = scratch("reliability", name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

#[test]
fn rtd_step_ids_out_of_range() {
    let fixture = repo().join("fixtures/rtd_step");
    let dir = tmp("rtd-step");
    for (key, value) in [("replacements", 99999), ("labels", -7), ("input_ids", 99999)] {
        let batch = dir.join(format!("{key}.json"));
        std::fs::copy(fixture.join("batch.json"), &batch).unwrap();
        edit_json(&batch, |v| v[key][0][3] = value.into());
        fails(
            &[
                "debug",
                "rtd-step",
                "--generator",
                s(&fixture.join("generator")),
                "--discriminator",
                s(&fixture.join("discriminator")),
                "--batch",
                s(&batch),
                "--output",
                s(&dir.join("out.safetensors")),
            ],
            &[&format!("{key}.json"), &format!("`{key}[0][3]` is {value}"), "outside the vocabulary"],
        );
    }
}

/// A 300-line corpus, a small discriminator config and the flags of a two-step pre-training run.
fn pretrain_workspace(name: &str) -> (PathBuf, Vec<String>) {
    let dir = common::pretrain_workspace("reliability", name);
    let mut args = pretrain_args(&dir, "run");
    args.extend(["--steps", "2"].map(str::to_string));
    (dir, args)
}

fn with<'a>(args: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend(extra);
    all
}

#[test]
fn pretrain_resume_checks_state_and_cache() {
    let (dir, args) = pretrain_workspace("resume");
    ok(&with(&args, &["--seq-len", "40", "--stop-at", "1"]));
    let checkpoint = dir.join("run/checkpoints/step-00000001");
    let state = checkpoint.join("state.json");
    let original = std::fs::read_to_string(&state).unwrap();

    // A tampered state.json.
    edit_json(&state, |v| v["settings"]["batch_size"] = 0.into());
    fails(&with(&args, &["--seq-len", "40", "--resume"]), &["state.json", "--batch-size 0"]);
    std::fs::write(&state, &original).unwrap();
    edit_json(&state, |v| v["settings"]["seq_len"] = 1_000_000.into());
    fails(&with(&args, &["--seq-len", "40", "--resume"]), &["state.json", "needs about"]);
    std::fs::write(&state, &original).unwrap();

    // A truncated token cache (still a whole number of ids).
    let cache = std::fs::read_dir(dir.join("run/cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "bin"))
        .unwrap();
    let bytes = std::fs::read(&cache).unwrap();
    std::fs::write(&cache, &bytes[..bytes.len() - 8]).unwrap();
    fails(&with(&args, &["--seq-len", "40", "--resume"]), &[s(&cache), "damaged token cache"]);

    // A cache (consistent with its sidecar) holding an id beyond the vocabulary.
    let mut ids: Vec<u32> =
        bytes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
    ids[5] = 4_000_000;
    let hash = ids.iter().fold(0xcbf29ce484222325u64, |h, &id| (h ^ id as u64).wrapping_mul(0x100000001b3));
    std::fs::write(&cache, ids.iter().flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let mut meta = cache.clone().into_os_string();
    meta.push(".meta");
    std::fs::write(&meta, format!("tokens {}\nchecksum {hash:016x}\n", ids.len())).unwrap();
    fails(&with(&args, &["--seq-len", "40", "--resume"]), &[s(&cache), "token id 4000000"]);
}

#[test]
fn absurd_sizes_are_refused_before_allocating() {
    let dir = tmp("sizes");
    let input = dir.join("long.json");
    let ids: Vec<String> = (0..100_000).map(|i| (5 + i % 100).to_string()).collect();
    std::fs::write(&input, format!("{{\"input_ids\": [[{}]]}}", ids.join(","))).unwrap();
    let memory = [("DEBERTA_MAX_MEMORY", "64G")];
    fails_env(
        &["forward", "--input", s(&input), "--output", s(&dir.join("out.safetensors"))],
        &memory,
        &["long.json", "1 row(s) x 100000 tokens needs about", "DEBERTA_MAX_MEMORY"],
    );

    // A config that does not describe the checkpoint next to it.
    let tiny = repo().join("assets/tiny-deberta-v3");
    for (key, value, expect) in [
        ("vocab_size", 100_000_000_000u64, "`vocab_size` is 100000000000"),
        ("hidden_size", 4_000_000_000_000, "hidden_size 4000000000000"),
        ("num_hidden_layers", 100_000_000, "`num_hidden_layers` is 100000000"),
    ] {
        let model = dir.join(key);
        copy_dir(&tiny, &model);
        edit_json(&model.join("config.json"), |v| v[key] = value.into());
        fails_env(
            &["forward", "--model", s(&model), "--output", "/dev/null"],
            &memory,
            &["config.json", expect],
        );
    }

    fails_env(
        &["init", "--preset", "tiny", "--vocab-size", "100000000000", "--out", s(&dir.join("init"))],
        &memory,
        &["vocab_size 100000000000", "needs about", "TB"],
    );
    assert!(!dir.join("init").exists());

    let (_, args) = pretrain_workspace("seq-len");
    fails_env(&with(&args, &["--seq-len", "100000"]), &memory, &["--seq-len 100000", "needs about"]);

    // bench builds its model from a preset: the shape alone must be refused.
    for train in [false, true] {
        let mut args =
            vec!["bench", "--preset", "tiny", "--batch", "64", "--seq-len", "100000", "--runs", "1"];
        if train {
            args.push("--train");
        }
        fails_env(&args, &memory, &["--batch 64 --seq-len 100000", "needs about"]);
    }
}

#[test]
fn tokenize_never_destroys_files() {
    let dir = tmp("tokenize");
    let tok = repo().join("fixtures/tokenizer/deberta_style.model");
    let input = dir.join("x.jsonl");
    std::fs::write(&input, "{\"text\": \"hello world\"}\n").unwrap();
    fails(
        &["tokenize", "--tokenizer", s(&tok), "--input", s(&input), "--output", s(&input)],
        &["x.jsonl", "is the --input file"],
    );
    assert_eq!(std::fs::read_to_string(&input).unwrap(), "{\"text\": \"hello world\"}\n");

    let output = dir.join("out.jsonl");
    ok(&["tokenize", "--tokenizer", s(&tok), "--input", s(&input), "--output", s(&output)]);
    let good = std::fs::read_to_string(&output).unwrap();
    assert!(good.contains("input_ids"), "{good}");
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"fine\"}\nnot json\n").unwrap();
    fails(
        &["tokenize", "--tokenizer", s(&tok), "--input", s(&bad), "--output", s(&output)],
        &["bad.jsonl:2"],
    );
    assert_eq!(std::fs::read_to_string(&output).unwrap(), good, "a failed run changed --output");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 3, "temporary files left: {left:?}");
}

#[test]
fn init_refuses_a_non_empty_directory() {
    let dir = tmp("init");
    let out = dir.join("model");
    let args = ["init", "--preset", "tiny", "--vocab-size", "64", "--out", s(&out)];
    ok(&args);
    let before = std::fs::read(out.join("model.safetensors")).unwrap();
    fails(&[&args[..], &["--seed", "7"]].concat(), &["model", "is not empty", "--force"]);
    assert_eq!(std::fs::read(out.join("model.safetensors")).unwrap(), before);
    ok(&[&args[..], &["--seed", "7", "--force"]].concat());
    assert_ne!(std::fs::read(out.join("model.safetensors")).unwrap(), before);
}

#[test]
fn damaged_weights_are_refused() {
    let dir = tmp("damaged");
    let fixture = repo().join("fixtures/parity/nobucket_c2p_tokcls");
    let bin = std::fs::read(fixture.join("pytorch_model.bin")).unwrap();
    for (name, len) in [("short-by-one", bin.len() - 1), ("half", bin.len() / 2)] {
        let model = dir.join(name);
        copy_dir(&fixture, &model);
        std::fs::write(model.join("pytorch_model.bin"), &bin[..len]).unwrap();
        fails(
            &["convert", "--model", s(&model), "--out", s(&dir.join("converted"))],
            &["pytorch_model.bin", "truncated: storage"],
        );
        assert!(!dir.join("converted").exists());
    }
    // The torch zip layout: cut short, or a flipped byte inside a storage (its CRC-32 no longer
    // matches).
    let fixture = repo().join("fixtures/parity/v2_conv_mlm_legacy");
    let zip = std::fs::read(fixture.join("pytorch_model.bin")).unwrap();
    let name = b"pytorch_model/data/3";
    let header = zip
        .windows(4 + 26 + name.len())
        .position(|w| w.starts_with(b"PK\x03\x04") && w.ends_with(name))
        .unwrap();
    let (n, e) = (
        u16::from_le_bytes([zip[header + 26], zip[header + 27]]) as usize,
        u16::from_le_bytes([zip[header + 28], zip[header + 29]]) as usize,
    );
    let mut flipped = zip.clone();
    flipped[header + 30 + n + e + 5] ^= 0x5a;
    for (case, bytes, expect) in [
        ("zip-short-by-one", &zip[..zip.len() - 1], "damaged or truncated zip archive"),
        ("zip-flipped", &flipped[..], "zip entry `pytorch_model/data/3`: Invalid checksum"),
    ] {
        let model = dir.join(case);
        copy_dir(&fixture, &model);
        std::fs::write(model.join("pytorch_model.bin"), bytes).unwrap();
        fails(
            &["convert", "--model", s(&model), "--out", s(&dir.join("converted"))],
            &["pytorch_model.bin", expect],
        );
        assert!(!dir.join("converted").exists());
    }

    // safetensors cut short.
    let model = dir.join("safetensors");
    copy_dir(&repo().join("assets/tiny-deberta-v3"), &model);
    let st = std::fs::read(model.join("model.safetensors")).unwrap();
    std::fs::write(model.join("model.safetensors"), &st[..st.len() - 4]).unwrap();
    fails(&["forward", "--model", s(&model), "--output", "/dev/null"], &["model.safetensors"]);

    // A shard index pointing outside the model directory.
    let model = dir.join("sharded");
    copy_dir(&repo().join("fixtures/parity/p2c_qa_sharded"), &model);
    edit_json(&model.join("model.safetensors.index.json"), |v| {
        let map = v["weight_map"].as_object_mut().unwrap();
        let first = map.keys().next().unwrap().clone();
        map[&first] = "../../elsewhere.safetensors".into();
    });
    fails(
        &["forward", "--model", s(&model), "--output", "/dev/null"],
        &["model.safetensors.index.json", "not a file inside the model directory"],
    );
}

#[test]
fn a_locked_run_directory_is_refused() {
    let (dir, args) = pretrain_workspace("lock");
    let out = dir.join("run");
    std::fs::create_dir_all(&out).unwrap();
    let lock = std::fs::File::create(out.join(".lock")).unwrap();
    lock.try_lock().unwrap();
    fails(&with(&args, &["--seq-len", "40"]), &[s(&out), "another run is using this directory"]);
    assert!(!out.join("metrics.jsonl").exists());
    drop(lock);
}

#[test]
fn corpus_devices_and_symlink_loops() {
    let dir = tmp("corpus");
    let missing_tok = dir.join("no-such-spm.model");
    fails(
        &["pretrain", "--corpus", "/dev/zero", "--tokenizer", s(&missing_tok), "--out", s(&dir.join("run"))],
        &["/dev/zero", "not a regular file"],
    );
    // A directory holding two links to itself: walked once (the run then stops at the missing
    // tokenizer, well after the walk).
    let corpus = dir.join("c");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("a.txt"), "some text\n").unwrap();
    std::os::unix::fs::symlink(".", corpus.join("x")).unwrap();
    std::os::unix::fs::symlink(".", corpus.join("y")).unwrap();
    fails(
        &["pretrain", "--corpus", s(&corpus), "--tokenizer", s(&missing_tok), "--out", s(&dir.join("run"))],
        &["no-such-spm.model"],
    );
}

#[test]
fn numeric_flags_are_range_checked() {
    let (_, args) = pretrain_workspace("flags");
    for (flag, expect) in [
        ("--lr=-1", "--lr -1: must be positive"),
        ("--weight-decay=NaN", "--weight-decay NaN: must be a finite number"),
        ("--max-grad-norm=-3", "--max-grad-norm -3: must be positive"),
        ("--checkpoint-every=0", "invalid value '0' for '--checkpoint-every <CHECKPOINT_EVERY>'"),
        ("--log-every=0", "invalid value '0' for '--log-every <LOG_EVERY>'"),
    ] {
        fails(&with(&args, &["--seq-len", "40", flag]), &[expect]);
    }
}

#[test]
fn finetune_flags_and_lock() {
    let dir = tmp("finetune");
    let model = dir.join("model");
    ok(&["init", "--preset", "tiny", "--vocab-size", "2048", "--out", s(&model)]);
    std::fs::copy(repo().join("fixtures/tokenizer/deberta_style.model"), model.join("spm.model")).unwrap();
    let data = repo().join("fixtures/tasks/glue/RTE/train.tsv");
    let out = dir.join("run");
    let base = ["finetune", "--model", s(&model), "--task", "rte", "--data", s(&data), "--dev", s(&data)];
    let base: Vec<&str> = [&base[..], &["--out", s(&out), "--epochs", "1"]].concat();
    for (flag, expect) in [
        ("--lr=-1", "--lr -1: must be positive"),
        ("--warmup-ratio=2", "--warmup-ratio 2: must be in [0, 1]"),
        ("--llrd=-2", "--llrd -2: must be in (0, 1]"),
        ("--adam-beta1=2", "--adam-beta1 2: must be in [0, 1)"),
        ("--adam-epsilon=0", "--adam-epsilon 0: must be positive"),
        ("--weight-decay=NaN", "--weight-decay NaN: must be a finite number"),
        ("--max-grad-norm=-3", "--max-grad-norm -3: must be positive"),
    ] {
        fails(&[&base[..], &[flag]].concat(), &[expect]);
    }
    // Every range is stated where users look first.
    let help = ok(&["finetune", "--help"]);
    for range in ["> 0", "in [0, 1]", "in (0, 1]", "in [0, 1)", ">= 0"] {
        assert!(help.contains(range), "finetune --help does not state {range:?}:\n{help}");
    }
    std::fs::create_dir_all(&out).unwrap();
    let lock = std::fs::File::create(out.join(".lock")).unwrap();
    lock.try_lock().unwrap();
    fails(&base, &[s(&out), "another run is using this directory"]);
    drop(lock);
}

#[test]
fn non_finite_weights_are_reported() {
    let dir = tmp("nan");
    let model = dir.join("model");
    copy_dir(&repo().join("assets/tiny-deberta-v3"), &model);
    let file = model.join("model.safetensors");
    let mut tensors = deberta_io::read_safetensors(&file).unwrap();
    let name = "deberta.encoder.layer.1.output.dense.weight";
    tensors.get_mut(name).unwrap().data[3] = f32::NAN;
    deberta_io::write_safetensors(&file, &tensors).unwrap();
    let (code, _, stderr) =
        deberta_env(&["forward", "--model", s(&model), "--output", s(&dir.join("out.safetensors"))], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains(&format!("tensor `{name}` holds NaN")), "{stderr}");
    assert!(stderr.contains("output `last_hidden_state` holds NaN"), "{stderr}");

    // predict refuses to print non-finite scores.
    let model = dir.join("classifier");
    ok(&["init", "--preset", "tiny", "--vocab-size", "2048", "--head", "seq-cls", "--out", s(&model)]);
    std::fs::copy(repo().join("fixtures/tokenizer/deberta_style.model"), model.join("spm.model")).unwrap();
    let file = model.join("model.safetensors");
    let mut tensors = deberta_io::read_safetensors(&file).unwrap();
    tensors.get_mut("classifier.weight").unwrap().data[0] = f32::NAN;
    deberta_io::write_safetensors(&file, &tensors).unwrap();
    let input = dir.join("in.jsonl");
    std::fs::write(&input, "{\"text\": \"hello world\"}\n").unwrap();
    fails(
        &["predict", "--model", s(&model), "--input", s(&input)],
        &["tensor `classifier.weight` holds NaN", "outputs are not finite", "model.safetensors"],
    );
}

#[test]
fn messages_say_what_is_wrong() {
    let dir = tmp("messages");
    let tok = repo().join("fixtures/tokenizer/deberta_style.model");
    let input = dir.join("pair.jsonl");
    std::fs::write(&input, "{\"text\": \"a b c d\", \"text_pair\": \"e f g h i j k l\"}\n").unwrap();
    let stderr = fails(
        &[
            "tokenize",
            "--tokenizer",
            s(&tok),
            "--input",
            s(&input),
            "--output",
            s(&dir.join("out.jsonl")),
            "--max-length",
            "6",
            "--truncation",
            "only_first",
        ],
        &["pair.jsonl:1", "must be removed to fit the maximum length"],
    );
    assert!(!stderr.contains("fewer than"), "{stderr}");

    // A line with no end (a device) is refused after a bounded read.
    fails(
        &["tokenize", "--tokenizer", s(&tok), "--input", "/dev/zero", "--output", s(&dir.join("z.jsonl"))],
        &["/dev/zero:1", "without a newline"],
    );

    let help = ok(&["predict", "--help"]);
    assert!(help.contains("question answering") && !help.contains("see `deberta predict --help`"), "{help}");
}
