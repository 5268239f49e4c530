//! The task readers on the committed samples under `fixtures/tasks/`, and on malformed copies,
//! whose errors must name the file and the line.

use deberta_data::tasks::conll::{read_conll, CONLL2003_LABELS};
use deberta_data::tasks::generic::{read_generic, TextColumns};
use deberta_data::tasks::glue::GlueTask;
use deberta_data::tasks::squad::read_squad;
use deberta_data::tasks::swag::read_swag;
use deberta_data::tasks::xnli::read_xnli;
use deberta_data::tasks::{Label, LabelSpec, TaskError, TextDataset};
use std::path::PathBuf;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/tasks").join(rel)
}

fn classes(d: &TextDataset) -> Vec<usize> {
    d.examples
        .iter()
        .map(|e| match e.label {
            Some(Label::Class(c)) => c,
            other => panic!("not a class label: {other:?}"),
        })
        .collect()
}

/// The error's message must start with `path:line:`.
fn assert_row_error(err: TaskError, rel: &str, line: u64, contains: &str) {
    let message = err.to_string();
    let prefix = format!("{}:{line}: ", fixture(rel).display());
    assert!(message.starts_with(&prefix), "{message:?} does not start with {prefix:?}");
    assert!(message.contains(contains), "{message:?} does not mention {contains:?}");
}

#[test]
fn glue_train_and_dev_files() {
    let cola = GlueTask::Cola.read(fixture("glue/CoLA/train.tsv")).unwrap();
    assert_eq!(cola.examples.len(), 6);
    assert_eq!(classes(&cola), vec![1, 0, 1, 0, 1, 0]);
    assert_eq!(cola.examples[4].text_a, "She gave the \"old\" lamp to her neighbour.");
    assert_eq!(cola.examples[0].text_b, None);

    let sst = GlueTask::Sst2.read(fixture("glue/SST-2/dev.tsv")).unwrap();
    assert_eq!(classes(&sst), vec![1, 0, 1, 0, 1]);
    // A stray quote stays a character and does not swallow the following lines.
    assert_eq!(sst.examples[2].text_a, "\" glorious nonsense , played with a straight face ");

    // MRPC's file starts with a byte order mark; the header still matches.
    let mrpc = GlueTask::Mrpc.read(fixture("glue/MRPC/train.tsv")).unwrap();
    assert_eq!(classes(&mrpc), vec![1, 0, 1, 0, 1]);
    assert_eq!(mrpc.examples[2].text_a, "\"We are pleased with the result,\" the coach said.");
    assert_eq!(mrpc.examples[2].text_b.as_deref(), Some("The coach said he was pleased with the result."));

    let stsb = GlueTask::Stsb.read(fixture("glue/STS-B/dev.tsv")).unwrap();
    assert!(stsb.is_regression());
    assert_eq!(stsb.num_labels(), 1);
    let scores: Vec<Label> = stsb.examples.iter().map(|e| e.label.unwrap()).collect();
    assert_eq!(scores, [4.8, 0.0, 3.4, 3.75, 4.2].map(Label::Score));
    assert_eq!(stsb.examples[0].text_a, "A man is playing a guitar.");
    assert_eq!(stsb.examples[0].text_b.as_deref(), Some("A man plays the guitar."));

    let qqp = GlueTask::Qqp.read(fixture("glue/QQP/dev.tsv")).unwrap();
    assert_eq!(classes(&qqp), vec![1, 0, 1, 0, 1]);
    assert_eq!(qqp.examples[1].text_a, "Why is the sky blue?");

    let mnli = GlueTask::Mnli.read(fixture("glue/MNLI/dev_matched.tsv")).unwrap();
    assert_eq!(mnli.labels, ["contradiction", "entailment", "neutral"]);
    assert_eq!(classes(&mnli), vec![1, 0, 2, 1, 0]);
    assert_eq!(mnli.examples[0].text_a, "The train left the station an hour late.");
    assert_eq!(mnli.examples[0].text_b.as_deref(), Some("The train was delayed."));

    let qnli = GlueTask::Qnli.read(fixture("glue/QNLI/dev.tsv")).unwrap();
    assert_eq!(classes(&qnli), vec![0, 1, 1, 0, 0]);
    assert_eq!(qnli.examples[0].text_a, "When was the museum founded?");

    let rte = GlueTask::Rte.read(fixture("glue/RTE/train.tsv")).unwrap();
    assert_eq!(classes(&rte), vec![0, 1, 0, 1, 0]);
    assert!(rte.is_labelled());
}

#[test]
fn glue_test_files_have_no_labels() {
    for (task, rel, n) in [
        (GlueTask::Cola, "glue/CoLA/test.tsv", 3),
        (GlueTask::Sst2, "glue/SST-2/test.tsv", 2),
        (GlueTask::Qqp, "glue/QQP/test.tsv", 1),
        (GlueTask::Mnli, "glue/MNLI/test_matched.tsv", 1),
    ] {
        let d = task.read(fixture(rel)).unwrap();
        assert_eq!(d.examples.len(), n, "{rel}");
        assert!(d.examples.iter().all(|e| e.label.is_none()), "{rel}");
        assert!(!d.is_labelled());
    }
    let cola = GlueTask::Cola.read(fixture("glue/CoLA/test.tsv")).unwrap();
    assert_eq!(cola.examples[1].text_a, "Quickly the under table cat.");
    let qqp = GlueTask::Qqp.read(fixture("glue/QQP/test.tsv")).unwrap();
    assert_eq!(qqp.examples[0].text_b.as_deref(), Some("Does drinking coffee harm your health?"));
}

#[test]
fn glue_task_names() {
    for t in GlueTask::ALL {
        assert_eq!(t.name().parse::<GlueTask>().unwrap(), t);
        assert_eq!(t.dir_name().parse::<GlueTask>().unwrap(), t);
    }
    assert!("wnli".parse::<GlueTask>().is_err());
    assert_eq!(GlueTask::Mnli.dev_files(), ["dev_matched.tsv", "dev_mismatched.tsv"]);
}

#[test]
fn glue_malformed_rows_name_file_and_line() {
    let err = GlueTask::Sst2.read(fixture("malformed/SST-2/dev.tsv")).unwrap_err();
    assert_row_error(err, "malformed/SST-2/dev.tsv", 3, "unknown label \"positive\"");
    let err = GlueTask::Rte.read(fixture("malformed/RTE/train.tsv")).unwrap_err();
    assert_row_error(err, "malformed/RTE/train.tsv", 3, "the row has 2 fields");
    let err = GlueTask::Stsb.read(fixture("malformed/STS-B/dev.tsv")).unwrap_err();
    assert_row_error(err, "malformed/STS-B/dev.tsv", 3, "\"high\" is not a number");
    let err = GlueTask::Cola.read(fixture("malformed/CoLA/train.tsv")).unwrap_err();
    assert_row_error(err, "malformed/CoLA/train.tsv", 2, "\"sentence\"");
}

#[test]
fn empty_files_are_errors_naming_the_file() {
    for (task, rel) in [(GlueTask::Qnli, "malformed/QNLI/dev.tsv"), (GlueTask::Sst2, "malformed/empty.tsv")] {
        let err = task.read(fixture(rel)).unwrap_err();
        assert!(matches!(err, TaskError::Empty { .. }), "{err}");
        assert_eq!(err.to_string(), format!("{}: no examples", fixture(rel).display()));
    }
    // A header of another task: the missing column is named.
    let err = GlueTask::Mnli.read(fixture("glue/QNLI/dev.tsv")).unwrap_err();
    assert!(err.to_string().contains("no column \"sentence1\""), "{err}");
}

#[test]
fn xnli_filters_by_language() {
    let all = read_xnli(fixture("xnli/xnli.dev.tsv"), None).unwrap();
    assert_eq!(all.examples.len(), 5);
    let de = read_xnli(fixture("xnli/xnli.dev.tsv"), Some("de")).unwrap();
    assert_eq!(de.examples.len(), 2);
    assert_eq!(de.examples[0].text_a, "Das Museum öffnet um neun Uhr.");
    assert_eq!(classes(&de), vec![0, 2]);
    let en = read_xnli(fixture("xnli/xnli.dev.tsv"), Some("en")).unwrap();
    assert_eq!(en.examples[1].text_a, "She never drinks \"tea\" at night.");
    let err = read_xnli(fixture("xnli/xnli.dev.tsv"), Some("sw")).unwrap_err();
    assert!(err.to_string().contains("no examples in language \"sw\""), "{err}");
    let err = read_xnli(fixture("malformed/xnli.tsv"), None).unwrap_err();
    assert_row_error(err, "malformed/xnli.tsv", 3, "unknown label \"maybe\"");
}

#[test]
fn swag_csv() {
    let swag = read_swag(fixture("swag/val.csv")).unwrap();
    assert_eq!(swag.len(), 5);
    let e = &swag[1];
    assert_eq!(e.id, "lsmdc1002_Clip-05-4207");
    assert_eq!(e.label, Some(1));
    assert_eq!(e.endings[2], "paints the fence, then \"sleeps\".");
    assert_eq!(e.pairs()[1], ("The man ties his shoes.", "He stands up and starts to jog.".to_string()));
    assert_eq!(swag[4].label, Some(3));
    // Line 3 starts a record spanning two lines; the bad label is in the record on line 3.
    let err = read_swag(fixture("malformed/swag.csv")).unwrap_err();
    assert_row_error(err, "malformed/swag.csv", 3, "label \"7\" is not 0 to 3");
}

#[test]
fn squad_json() {
    let squad = read_squad(fixture("squad/dev-v2.0.json")).unwrap();
    assert_eq!(squad.len(), 6);
    let q1 = &squad[0];
    assert_eq!((q1.id.as_str(), q1.title.as_str()), ("q1", "Vélodrome"));
    assert_eq!(q1.gold_texts(), ["1894", "in 1894"]);
    // Character offsets (the context has an é before the answer).
    let chars: Vec<char> = q1.context.chars().collect();
    let a = &q1.answers[0];
    assert_eq!(chars[a.start..a.start + 4].iter().collect::<String>(), "1894");
    assert!(squad[2].is_impossible && squad[2].answers.is_empty() && squad[2].training_answer().is_none());
    assert_eq!(squad[3].training_answer().unwrap().text, "Marta Ruiz");

    let err = read_squad(fixture("malformed/squad.json")).unwrap_err();
    assert_row_error(err, "malformed/squad.json", 6, "missing field `id`");
    let err = read_squad(fixture("malformed/squad_past_end.json")).unwrap_err();
    assert!(err.to_string().contains("question \"z1\""), "{err}");
}

#[test]
fn conll_sentences() {
    let s = read_conll(fixture("conll/train.txt"), &CONLL2003_LABELS).unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].words, ["EU", "rejects", "German", "call", "."]);
    let tag = |t: &str| CONLL2003_LABELS.iter().position(|l| *l == t).unwrap();
    assert_eq!(s[0].tags, [tag("I-ORG"), 0, tag("I-MISC"), 0, 0]);
    assert_eq!(s[1].words[4], "Kraków");
    assert_eq!(s[2].tags[5], tag("B-ORG"));

    let err = read_conll(fixture("malformed/conll.txt"), &CONLL2003_LABELS).unwrap_err();
    assert_row_error(err, "malformed/conll.txt", 4, "unknown tag \"B-PERSON\"");
    let err = read_conll(fixture("malformed/conll_one_field.txt"), &CONLL2003_LABELS).unwrap_err();
    assert_row_error(err, "malformed/conll_one_field.txt", 2, "expected a word and a tag");
}

#[test]
fn generic_csv_tsv_jsonl() {
    let cols = TextColumns::single("review", "verdict");
    let csv = read_generic(fixture("generic/reviews.csv"), &cols, &LabelSpec::Infer).unwrap();
    assert_eq!(csv.labels, ["mixed", "negative", "positive"]);
    assert_eq!(classes(&csv), vec![0, 2, 1, 0, 1]);
    assert_eq!(csv.examples[2].text_a, "The \"premium\" case cracked in a week");
    assert_eq!(csv.examples[3].text_a, "Works fine,\nnothing special");

    let jsonl =
        read_generic(fixture("generic/reviews.jsonl"), &cols, &LabelSpec::Classes(csv.labels.clone()))
            .unwrap();
    assert_eq!(classes(&jsonl), vec![0, 2, 1, 0, 2]);

    let pairs = read_generic(
        fixture("generic/pairs.jsonl"),
        &TextColumns::pair("q", "a", "label"),
        &LabelSpec::Classes(vec!["0".into(), "1".into()]),
    )
    .unwrap();
    assert_eq!(classes(&pairs), vec![1, 0, 1, 0, 1]);
    assert_eq!(pairs.examples[0].text_b.as_deref(), Some("Yes, up to 30 metres."));

    let ratings = read_generic(
        fixture("generic/ratings.tsv"),
        &TextColumns::single("sentence", "score"),
        &LabelSpec::Regression,
    )
    .unwrap();
    assert_eq!(ratings.examples[1].label, Some(Label::Score(-1.1)));
    assert!(ratings.is_regression());

    // Without the label column: unlabelled.
    let unlabelled = read_generic(
        fixture("generic/reviews.csv"),
        &TextColumns::single("review", "stars"),
        &LabelSpec::Infer,
    )
    .unwrap();
    assert!(unlabelled.examples.iter().all(|e| e.label.is_none()));

    let err = read_generic(fixture("malformed/reviews.jsonl"), &cols, &LabelSpec::Infer).unwrap_err();
    assert_row_error(err, "malformed/reviews.jsonl", 2, "\"review\" is not a string");
    let err =
        read_generic(fixture("malformed/reviews_bad_json.jsonl"), &cols, &LabelSpec::Infer).unwrap_err();
    assert_row_error(err, "malformed/reviews_bad_json.jsonl", 3, "expected");
    let err =
        read_generic(fixture("generic/reviews.jsonl"), &cols, &LabelSpec::Classes(vec!["mixed".into()]))
            .unwrap_err();
    assert_row_error(err, "generic/reviews.jsonl", 2, "unknown label \"positive\"");
}
