//! SQuAD 1.1 / 2.0 JSON (`data[].paragraphs[].qas[]`): questions over a context paragraph with
//! answers given as text and character offset; in 2.0 `is_impossible` questions have none.
//! Model inputs and answer decoding are in [`crate::squad`].

use super::{io_error, Result, TaskError};
use serde::Deserialize;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SquadExample {
    pub id: String,
    pub title: String,
    pub question: String,
    pub context: String,
    /// Training files have one answer per answerable question, dev files up to several (the
    /// metric takes the best match).
    pub answers: Vec<Answer>,
    pub is_impossible: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    /// Offset of the answer in the context, in characters (Unicode scalar values, as Python
    /// indexes strings).
    pub start: usize,
}

impl SquadExample {
    /// The answer a model is trained on: the first one, unless the question is unanswerable.
    pub fn training_answer(&self) -> Option<&Answer> {
        if self.is_impossible {
            None
        } else {
            self.answers.first()
        }
    }

    /// The gold answer texts the official evaluation compares with (none: unanswerable).
    pub fn gold_texts(&self) -> Vec<&str> {
        self.answers.iter().map(|a| a.text.as_str()).collect()
    }
}

#[derive(Deserialize)]
struct JsonFile {
    data: Vec<Article>,
}

#[derive(Deserialize)]
struct Article {
    #[serde(default)]
    title: String,
    paragraphs: Vec<Paragraph>,
}

#[derive(Deserialize)]
struct Paragraph {
    context: String,
    qas: Vec<Qa>,
}

#[derive(Deserialize)]
struct Qa {
    id: String,
    question: String,
    #[serde(default)]
    answers: Vec<JsonAnswer>,
    #[serde(default)]
    is_impossible: bool,
}

#[derive(Deserialize)]
struct JsonAnswer {
    text: String,
    answer_start: usize,
}

pub fn read_squad(path: impl AsRef<Path>) -> Result<Vec<SquadExample>> {
    let path = path.as_ref();
    let reader = std::io::BufReader::new(std::fs::File::open(path).map_err(io_error(path))?);
    let file: JsonFile = serde_json::from_reader(reader).map_err(|e| {
        if e.is_io() {
            return TaskError::Io { path: path.to_path_buf(), source: e.into() };
        }
        // serde_json appends the position to its message; it goes in front instead.
        let message = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        let message = message.strip_suffix(&position).unwrap_or(&message);
        TaskError::Row {
            path: path.to_path_buf(),
            line: e.line() as u64,
            message: format!("{message} (column {})", e.column()),
        }
    })?;
    let mut out = Vec::new();
    for article in file.data {
        for paragraph in article.paragraphs {
            let context_chars = paragraph.context.chars().count();
            for qa in paragraph.qas {
                let answers = qa
                    .answers
                    .into_iter()
                    .map(|a| {
                        let end = a.answer_start + a.text.chars().count();
                        if end > context_chars {
                            return Err(TaskError::File {
                                path: path.to_path_buf(),
                                message: format!(
                                    "question {:?}: answer {:?} at {} runs past the end of the context \
                                     ({context_chars} characters)",
                                    qa.id, a.text, a.answer_start
                                ),
                            });
                        }
                        Ok(Answer { text: a.text, start: a.answer_start })
                    })
                    .collect::<Result<Vec<_>>>()?;
                out.push(SquadExample {
                    id: qa.id,
                    title: article.title.clone(),
                    question: qa.question,
                    context: paragraph.context.clone(),
                    answers,
                    is_impossible: qa.is_impossible,
                });
            }
        }
    }
    if out.is_empty() {
        return Err(TaskError::Empty { path: path.to_path_buf() });
    }
    Ok(out)
}
