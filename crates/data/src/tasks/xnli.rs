//! XNLI 1.0 (`xnli.dev.tsv`, `xnli.test.tsv`): one TSV holding all fifteen languages, with a
//! `language` column, `gold_label`, and the premise/hypothesis in `sentence1`/`sentence2`
//! (columns found by header name). Zero-shot cross-lingual transfer trains on MNLI, so the
//! label list is MNLI's (HF's `XnliProcessor` uses the same order).

use super::table::{Dialect, Table};
use super::{finish_dataset, LabelSpec, Result, TextDataset};
use crate::tasks::glue::GlueTask;
use std::collections::BTreeSet;
use std::path::Path;

/// The XNLI languages, in the order the paper's tables use.
pub const XNLI_LANGUAGES: [&str; 15] =
    ["en", "fr", "es", "de", "el", "bg", "ru", "tr", "ar", "vi", "th", "zh", "hi", "sw", "ur"];

/// The examples of `language` (e.g. `"de"`), or of all languages for `None`.
pub fn read_xnli(path: impl AsRef<Path>, language: Option<&str>) -> Result<TextDataset> {
    let path = path.as_ref();
    let mut table = Table::open(path, Dialect::Tsv)?;
    let header = table.header()?;
    let lang = table.column(&header, "language")?;
    let text_a = table.column(&header, "sentence1")?;
    let text_b = table.column(&header, "sentence2")?;
    let label = table.column(&header, "gold_label")?;
    let mut seen = BTreeSet::new();
    let rows = table.text_rows(text_a, Some(text_b), Some(label), |table, row| {
        let value = table.field(row, lang)?;
        let keep = language.is_none_or(|l| l == value);
        if !keep && !seen.contains(value) {
            seen.insert(value.to_string());
        }
        Ok(keep)
    })?;
    if rows.is_empty() {
        if let Some(language) = language {
            return Err(table.file_error(format!("no examples in language {language:?} (found: {seen:?})")));
        }
    }
    finish_dataset(path, rows, &LabelSpec::classes(GlueTask::Mnli.labels()))
}
