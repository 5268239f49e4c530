//! Delimited files (TSV, CSV) streamed row by row with their line numbers, and columns found by
//! header name, shared by every tabular reader.

use super::{io_error, RawExample, Result, TaskError};
use csv::StringRecord;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Tab-separated, quotes are ordinary characters: GLUE and XNLI TSVs contain unbalanced
    /// quotes (`"` opening a sentence that never closes) which a quoting reader would use to
    /// merge thousands of lines into one field. HF's processors read them the same way.
    Tsv,
    /// RFC 4180 comma-separated with quoting (SWAG, user CSVs): fields may contain commas,
    /// quotes and line breaks.
    Csv,
}

pub(crate) struct Row {
    /// 1-based line where the row starts.
    pub line: u64,
    pub fields: StringRecord,
}

pub(crate) struct Table {
    path: PathBuf,
    reader: csv::Reader<BufReader<File>>,
    at_start: bool,
}

/// A column of a header: its index and, for messages, its name.
#[derive(Clone, Copy)]
pub(crate) struct Column<'a> {
    pub index: usize,
    pub name: &'a str,
}

impl Table {
    pub fn open(path: &Path, dialect: Dialect) -> Result<Table> {
        let file = File::open(path).map_err(io_error(path))?;
        let mut builder = csv::ReaderBuilder::new();
        // Headers are handled here (names, BOM, line numbers); rows may be ragged: test files
        // lack the label columns, and a short row is reported when a needed field is missing.
        builder.has_headers(false).flexible(true);
        if dialect == Dialect::Tsv {
            builder.delimiter(b'\t').quoting(false);
        }
        Ok(Table {
            path: path.to_path_buf(),
            reader: builder.from_reader(BufReader::new(file)),
            at_start: true,
        })
    }

    pub fn row_error(&self, line: u64, message: impl Into<String>) -> TaskError {
        TaskError::Row { path: self.path.clone(), line, message: message.into() }
    }

    pub fn file_error(&self, message: impl Into<String>) -> TaskError {
        TaskError::File { path: self.path.clone(), message: message.into() }
    }

    /// The next row; blank lines are skipped (the csv reader's behaviour).
    pub fn next_row(&mut self) -> Result<Option<Row>> {
        let mut record = StringRecord::new();
        match self.reader.read_record(&mut record) {
            Ok(false) => Ok(None),
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                if std::mem::take(&mut self.at_start) {
                    record = strip_bom(record);
                }
                Ok(Some(Row { line, fields: record }))
            }
            Err(e) => Err(self.csv_error(e)),
        }
    }

    fn csv_error(&self, e: csv::Error) -> TaskError {
        let line = e.position().map(|p| p.line());
        match (e.into_kind(), line) {
            (csv::ErrorKind::Io(source), _) => TaskError::Io { path: self.path.clone(), source },
            (csv::ErrorKind::Utf8 { err, .. }, Some(line)) => {
                self.row_error(line, format!("field {} is not valid UTF-8", err.field() + 1))
            }
            (kind, Some(line)) => self.row_error(line, format!("{kind:?}")),
            (kind, None) => self.file_error(format!("{kind:?}")),
        }
    }

    /// The first row, as column names; an empty file is [`TaskError::Empty`].
    pub fn header(&mut self) -> Result<Header> {
        match self.next_row()? {
            Some(row) => Ok(Header::from_row(&row)),
            None => Err(TaskError::Empty { path: self.path.clone() }),
        }
    }

    /// `name` in `header`, or an error listing the columns there are.
    pub fn column<'a>(&self, header: &Header, name: &'a str) -> Result<Column<'a>> {
        header.find(name).map(|index| Column { index, name }).ok_or_else(|| {
            self.file_error(format!("no column {name:?} in the header (columns: {:?})", header.names))
        })
    }

    /// The field of `row` in `column`, or an error naming the line.
    pub fn field<'r>(&self, row: &'r Row, column: Column) -> Result<&'r str> {
        row.fields.get(column.index).ok_or_else(|| {
            self.row_error(
                row.line,
                format!(
                    "no field {} ({:?}): the row has {} fields",
                    column.index + 1,
                    column.name,
                    row.fields.len()
                ),
            )
        })
    }

    /// Every remaining row as a [`RawExample`] taken from these columns; `label: None` reads no
    /// label (a test file). Rows for which `keep` is false are skipped.
    pub fn text_rows(
        &mut self,
        text_a: Column,
        text_b: Option<Column>,
        label: Option<Column>,
        mut keep: impl FnMut(&Table, &Row) -> Result<bool>,
    ) -> Result<Vec<RawExample>> {
        let mut out = Vec::new();
        while let Some(row) = self.next_row()? {
            if !keep(self, &row)? {
                continue;
            }
            out.push(RawExample {
                line: row.line,
                text_a: self.field(&row, text_a)?.to_string(),
                text_b: text_b.map(|c| self.field(&row, c).map(str::to_string)).transpose()?,
                label: label.map(|c| self.field(&row, c).map(str::to_string)).transpose()?,
            });
        }
        Ok(out)
    }
}

/// Column names of a header row.
pub(crate) struct Header {
    pub names: Vec<String>,
}

impl Header {
    pub fn from_row(row: &Row) -> Header {
        Header { names: row.fields.iter().map(|s| s.trim().to_string()).collect() }
    }
    pub fn find(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

/// Files saved by Windows tools (MRPC's among them) start with a UTF-8 byte order mark, which
/// would otherwise become part of the first column's name.
fn strip_bom(record: StringRecord) -> StringRecord {
    match record.get(0) {
        Some(first) if first.starts_with('\u{feff}') => {
            let mut stripped: StringRecord =
                std::iter::once(&first['\u{feff}'.len_utf8()..]).chain(record.iter().skip(1)).collect();
            stripped.set_position(record.position().cloned());
            stripped
        }
        _ => record,
    }
}
