//! Classification or regression data in the caller's own files: CSV (`.csv`, quoted fields),
//! TSV (`.tsv`, `.txt`; quotes are plain characters, as in GLUE) or JSON lines (`.jsonl`,
//! `.json`: one object per line), with the column names given by the caller.
//!
//! A file without the label column (a header without it, or JSON objects without the key, or
//! with `null`) reads as unlabelled. JSON labels may be strings, numbers or booleans; numbers
//! and booleans are matched against class names by their JSON text (`1`, `true`).

use super::table::{Column, Dialect, Table};
use super::{finish_dataset, io_error, LabelSpec, RawExample, Result, TaskError, TextDataset};
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;

/// Which columns (CSV/TSV header names, JSON keys) hold the texts and the label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextColumns {
    pub text: String,
    pub text_pair: Option<String>,
    pub label: String,
}

impl TextColumns {
    /// A single-text task.
    pub fn single(text: &str, label: &str) -> Self {
        TextColumns { text: text.into(), text_pair: None, label: label.into() }
    }
    /// A text-pair task.
    pub fn pair(text: &str, text_pair: &str, label: &str) -> Self {
        TextColumns { text: text.into(), text_pair: Some(text_pair.into()), label: label.into() }
    }
}

/// Reads `path` (format by extension, see the module docs).
pub fn read_generic(
    path: impl AsRef<Path>,
    columns: &TextColumns,
    labels: &LabelSpec,
) -> Result<TextDataset> {
    let path = path.as_ref();
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let rows = match extension.as_str() {
        "csv" => read_table(path, Dialect::Csv, columns)?,
        "tsv" | "txt" => read_table(path, Dialect::Tsv, columns)?,
        "jsonl" | "json" => read_jsonl(path, columns)?,
        _ => {
            return Err(TaskError::File {
                path: path.to_path_buf(),
                message: "unknown format: expected a .csv, .tsv, .txt, .jsonl or .json file".into(),
            })
        }
    };
    finish_dataset(path, rows, labels)
}

fn read_table(path: &Path, dialect: Dialect, columns: &TextColumns) -> Result<Vec<RawExample>> {
    let mut table = Table::open(path, dialect)?;
    let header = table.header()?;
    let text = table.column(&header, &columns.text)?;
    let pair = columns.text_pair.as_deref().map(|name| table.column(&header, name)).transpose()?;
    let label = header.find(&columns.label).map(|index| Column { index, name: &columns.label });
    table.text_rows(text, pair, label, |_, _| Ok(true))
}

fn read_jsonl(path: &Path, columns: &TextColumns) -> Result<Vec<RawExample>> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line_no = i as u64 + 1;
        let row_error = |message: String| TaskError::Row { path: path.to_path_buf(), line: line_no, message };
        let line = line.map_err(|e| row_error(e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line).map_err(|e| row_error(e.to_string()))?;
        let object = value.as_object().ok_or_else(|| row_error("not a JSON object".into()))?;
        let text = |key: &str| match object.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(row_error(format!("{key:?} is not a string: {other}"))),
            None => Err(row_error(format!("no key {key:?}"))),
        };
        let label = match object.get(&columns.label) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
            Some(other) => return Err(row_error(format!("label {other} is not a string or number"))),
        };
        rows.push(RawExample {
            line: line_no,
            text_a: text(&columns.text)?,
            text_b: columns.text_pair.as_deref().map(text).transpose()?,
            label,
        });
    }
    Ok(rows)
}
