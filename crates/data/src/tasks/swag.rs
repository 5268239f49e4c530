//! SWAG (`train.csv`, `val.csv`, `test.csv` of the official release): a context `sent1`, the
//! start of the next sentence `sent2`, four endings and the index of the right one (absent in
//! the test file). Quoted CSV; columns by header name, so the leading unnamed index column of
//! the released files does not matter.
//!
//! As HF's `run_swag`, choice `i` is the pair (`sent1`, `sent2 + " " + ending_i`).

use super::table::{Column, Dialect, Table};
use super::{truncating, Result, TaskError};
use deberta_tokenizer::{DebertaTokenizer, Encoding, Truncation};
use std::path::Path;

pub const SWAG_CHOICES: usize = 4;

#[derive(Clone, Debug, PartialEq)]
pub struct ChoiceExample {
    /// `video-id` and `fold-ind`, joined by `-`.
    pub id: String,
    pub context: String,
    /// The start of the sentence each ending completes.
    pub start: String,
    pub endings: Vec<String>,
    pub label: Option<usize>,
}

impl ChoiceExample {
    /// The (first, second) text of each choice.
    pub fn pairs(&self) -> Vec<(&str, String)> {
        self.endings.iter().map(|e| (self.context.as_str(), format!("{} {e}", self.start))).collect()
    }
}

pub fn read_swag(path: impl AsRef<Path>) -> Result<Vec<ChoiceExample>> {
    let path = path.as_ref();
    let mut table = Table::open(path, Dialect::Csv)?;
    let header = table.header()?;
    let video = table.column(&header, "video-id")?;
    let fold = table.column(&header, "fold-ind")?;
    let sent1 = table.column(&header, "sent1")?;
    let sent2 = table.column(&header, "sent2")?;
    let ending_names: Vec<String> = (0..SWAG_CHOICES).map(|i| format!("ending{i}")).collect();
    let endings = ending_names.iter().map(|name| table.column(&header, name)).collect::<Result<Vec<_>>>()?;
    let label = header.find("label").map(|index| Column { index, name: "label" });
    let mut out = Vec::new();
    while let Some(row) = table.next_row()? {
        let label = match label.map(|c| table.field(&row, c)).transpose()? {
            None => None,
            Some(value) => match value.trim().parse::<usize>() {
                Ok(l) if l < SWAG_CHOICES => Some(l),
                _ => return Err(table.row_error(row.line, format!("label {value:?} is not 0 to 3"))),
            },
        };
        out.push(ChoiceExample {
            id: format!("{}-{}", table.field(&row, video)?, table.field(&row, fold)?),
            context: table.field(&row, sent1)?.to_string(),
            start: table.field(&row, sent2)?.to_string(),
            endings: endings
                .iter()
                .map(|&c| table.field(&row, c).map(str::to_string))
                .collect::<Result<_>>()?,
            label,
        });
    }
    if out.is_empty() {
        return Err(TaskError::Empty { path: path.to_path_buf() });
    }
    Ok(out)
}

/// The encodings of each example's choices (`longest_first` truncation to `max_length`, as
/// `run_swag`), unpadded.
pub fn encode_choices(
    tokenizer: &DebertaTokenizer,
    examples: &[ChoiceExample],
    max_length: usize,
) -> Result<Vec<Vec<Encoding>>> {
    let options = truncating(max_length, Truncation::LongestFirst);
    // One batch for all choices of all examples, so the tokenizer parallelises over the lot.
    let pairs: Vec<Vec<(&str, String)>> = examples.iter().map(ChoiceExample::pairs).collect();
    let inputs: Vec<(&str, Option<&str>)> =
        pairs.iter().flatten().map(|(a, b)| (*a, Some(b.as_str()))).collect();
    let mut encodings = tokenizer.encode_batch(&inputs, &options)?.into_iter();
    Ok(pairs.iter().map(|p| encodings.by_ref().take(p.len()).collect()).collect())
}
