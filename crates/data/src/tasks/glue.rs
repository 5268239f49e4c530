//! The eight GLUE tasks in the layout of the official GLUE download (`CoLA/train.tsv`,
//! `MNLI/dev_matched.tsv`, ...), with the label lists, column choices and metrics of HF
//! `transformers`' glue processors and `glue_compute_metrics`.
//!
//! Columns are found by header name where the file has a header, so the same code reads train,
//! dev and test files: a test file has no label column and gives `label: None`. CoLA's train
//! and dev files have no header (source, label, original mark, sentence); its test file has one
//! (`index`, `sentence`).

use super::table::{Column, Dialect, Header, Table};
use super::{finish_dataset, LabelSpec, RawExample, Result, TextDataset};
use crate::metrics::Metric;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GlueTask {
    Cola,
    Sst2,
    Mrpc,
    Stsb,
    Qqp,
    Mnli,
    Qnli,
    Rte,
}

/// Where a task's texts and label are, by header name.
struct Columns {
    text_a: &'static str,
    text_b: Option<&'static str>,
    label: &'static str,
}

impl GlueTask {
    pub const ALL: [GlueTask; 8] = [
        GlueTask::Cola,
        GlueTask::Sst2,
        GlueTask::Mrpc,
        GlueTask::Stsb,
        GlueTask::Qqp,
        GlueTask::Mnli,
        GlueTask::Qnli,
        GlueTask::Rte,
    ];

    /// HF's task name (`cola`, `sst2`, `mrpc`, `stsb`, `qqp`, `mnli`, `qnli`, `rte`).
    pub fn name(self) -> &'static str {
        match self {
            GlueTask::Cola => "cola",
            GlueTask::Sst2 => "sst2",
            GlueTask::Mrpc => "mrpc",
            GlueTask::Stsb => "stsb",
            GlueTask::Qqp => "qqp",
            GlueTask::Mnli => "mnli",
            GlueTask::Qnli => "qnli",
            GlueTask::Rte => "rte",
        }
    }

    /// The directory name in the GLUE download (`CoLA`, `SST-2`, `MRPC`, `STS-B`, ...).
    pub fn dir_name(self) -> &'static str {
        match self {
            GlueTask::Cola => "CoLA",
            GlueTask::Sst2 => "SST-2",
            GlueTask::Mrpc => "MRPC",
            GlueTask::Stsb => "STS-B",
            GlueTask::Qqp => "QQP",
            GlueTask::Mnli => "MNLI",
            GlueTask::Qnli => "QNLI",
            GlueTask::Rte => "RTE",
        }
    }

    /// Class names in id order, as HF's processors list them (so a model fine-tuned here and
    /// one fine-tuned with `run_glue` agree on ids); empty for STS-B (regression).
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            GlueTask::Cola | GlueTask::Sst2 | GlueTask::Mrpc | GlueTask::Qqp => &["0", "1"],
            GlueTask::Stsb => &[],
            GlueTask::Mnli => &["contradiction", "entailment", "neutral"],
            GlueTask::Qnli | GlueTask::Rte => &["entailment", "not_entailment"],
        }
    }

    pub fn is_regression(self) -> bool {
        self == GlueTask::Stsb
    }

    /// Outputs of the classification head (1 for STS-B).
    pub fn num_labels(self) -> usize {
        self.labels().len().max(1)
    }

    /// Evaluation files of the GLUE download: MNLI has a matched and a mismatched dev set.
    pub fn dev_files(self) -> &'static [&'static str] {
        match self {
            GlueTask::Mnli => &["dev_matched.tsv", "dev_mismatched.tsv"],
            _ => &["dev.tsv"],
        }
    }

    /// Unlabelled test files of the GLUE download.
    pub fn test_files(self) -> &'static [&'static str] {
        match self {
            GlueTask::Mnli => &["test_matched.tsv", "test_mismatched.tsv"],
            _ => &["test.tsv"],
        }
    }

    /// The metrics of HF's `glue_compute_metrics` for this task.
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            GlueTask::Cola => &[Metric::Matthews],
            GlueTask::Mrpc | GlueTask::Qqp => &[Metric::Accuracy, Metric::F1],
            GlueTask::Stsb => &[Metric::Pearson, Metric::Spearman],
            _ => &[Metric::Accuracy],
        }
    }

    fn label_spec(self) -> LabelSpec {
        if self.is_regression() {
            LabelSpec::Regression
        } else {
            LabelSpec::classes(self.labels())
        }
    }

    fn columns(self) -> Columns {
        let pair = |text_a, text_b, label| Columns { text_a, text_b: Some(text_b), label };
        match self {
            GlueTask::Cola => Columns { text_a: "sentence", text_b: None, label: "label" },
            GlueTask::Sst2 => Columns { text_a: "sentence", text_b: None, label: "label" },
            GlueTask::Mrpc => pair("#1 String", "#2 String", "Quality"),
            GlueTask::Stsb => pair("sentence1", "sentence2", "score"),
            GlueTask::Qqp => pair("question1", "question2", "is_duplicate"),
            GlueTask::Mnli => pair("sentence1", "sentence2", "gold_label"),
            GlueTask::Qnli => pair("question", "sentence", "label"),
            GlueTask::Rte => pair("sentence1", "sentence2", "label"),
        }
    }

    /// Reads a train, dev or test file of this task.
    pub fn read(self, path: impl AsRef<Path>) -> Result<TextDataset> {
        let path = path.as_ref();
        let mut table = Table::open(path, Dialect::Tsv)?;
        let rows = if self == GlueTask::Cola {
            read_cola(&mut table)?
        } else {
            let header = table.header()?;
            self.rows_by_header(&mut table, &header)?
        };
        finish_dataset(path, rows, &self.label_spec())
    }

    fn rows_by_header(self, table: &mut Table, header: &Header) -> Result<Vec<RawExample>> {
        let c = self.columns();
        let text_a = table.column(header, c.text_a)?;
        let text_b = c.text_b.map(|name| table.column(header, name)).transpose()?;
        // No label column: a test file.
        let label = header.find(c.label).map(|index| Column { index, name: c.label });
        table.text_rows(text_a, text_b, label, |_, _| Ok(true))
    }
}

impl std::fmt::Display for GlueTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for GlueTask {
    type Err = String;
    /// HF names and GLUE directory names, any case (`sst2`, `SST-2`, `sts-b`, `MNLI`, ...).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let key = s.to_ascii_lowercase().replace('-', "");
        GlueTask::ALL.into_iter().find(|t| t.name() == key).ok_or_else(|| {
            let names: Vec<&str> = GlueTask::ALL.iter().map(|t| t.name()).collect();
            format!("unknown GLUE task {s:?} (one of {})", names.join(", "))
        })
    }
}

/// CoLA train/dev: no header, label in column 2, sentence in column 4. The test file has an
/// `index\tsentence` header, recognised by its first field.
fn read_cola(table: &mut Table) -> Result<Vec<RawExample>> {
    let Some(first) = table.next_row()? else {
        return Ok(Vec::new());
    };
    if first.fields.get(0) == Some("index") {
        return GlueTask::Cola.rows_by_header(table, &Header::from_row(&first));
    }
    let label = Column { index: 1, name: "label" };
    let sentence = Column { index: 3, name: "sentence" };
    let mut rows = Vec::new();
    let mut next = Some(first);
    while let Some(row) = next {
        rows.push(RawExample {
            line: row.line,
            text_a: table.field(&row, sentence)?.to_string(),
            text_b: None,
            label: Some(table.field(&row, label)?.to_string()),
        });
        next = table.next_row()?;
    }
    Ok(rows)
}
