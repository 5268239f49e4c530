//! The `deberta forward` input file: `{"input_ids": [[...]], "attention_mask": [[...]],
//! "token_type_ids": [[...]]}`, or `[B][C][L]` nesting for multiple choice. Everything is
//! checked against the model before any tensor is built, so bad input is an error naming the
//! file, the key and the row, never a panic inside the model.

use crate::IoError;
use deberta_model::{DebertaConfig, Head};
use serde_json::Value;
use std::path::Path;

/// Validated rows, flattened to `[rows, len]` (rows = B, or B*C for multiple choice).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRows {
    pub rows: usize,
    pub len: usize,
    /// `Some(C)` for `[B][C][L]` input.
    pub choices: Option<usize>,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Option<Vec<i64>>,
}

struct Ctx<'a> {
    path: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, message: impl Into<String>) -> IoError {
        IoError::Input { path: self.path.to_path_buf(), message: message.into() }
    }

    /// Flattens 2- or 3-level nesting of integers; returns (shape, values).
    fn nested(&self, key: &str, v: &Value) -> Result<(Vec<usize>, Vec<i64>), IoError> {
        let outer = v.as_array().ok_or_else(|| self.err(format!("`{key}` must be a list of rows")))?;
        if outer.is_empty() {
            return Err(self.err(format!("`{key}` is empty: nothing to run")));
        }
        let three = outer[0].as_array().and_then(|r| r.first()).map(|x| x.is_array()).unwrap_or(false);
        let mut values = Vec::new();
        let mut inner_shape: Option<Vec<usize>> = None;
        for (b, item) in outer.iter().enumerate() {
            let rows: Vec<(String, &Value)> = if three {
                item.as_array()
                    .ok_or_else(|| self.err(format!("`{key}[{b}]` must be a list of choices")))?
                    .iter()
                    .enumerate()
                    .map(|(c, r)| (format!("{key}[{b}][{c}]"), r))
                    .collect()
            } else {
                vec![(format!("{key}[{b}]"), item)]
            };
            if rows.is_empty() {
                return Err(self.err(format!("`{key}[{b}]` has no choices")));
            }
            let mut lens = Vec::new();
            for (name, row) in &rows {
                let row =
                    row.as_array().ok_or_else(|| self.err(format!("`{name}` must be a list of integers")))?;
                for (i, x) in row.iter().enumerate() {
                    let n = x
                        .as_i64()
                        .ok_or_else(|| self.err(format!("`{name}[{i}]` is {x}, not an integer")))?;
                    values.push(n);
                }
                lens.push(row.len());
            }
            let shape = if three { vec![rows.len(), lens[0]] } else { vec![lens[0]] };
            if lens.iter().any(|&l| l != lens[0]) {
                return Err(self.err(format!(
                    "`{key}[{b}]` has choices of different lengths {lens:?}: pad every row to one length"
                )));
            }
            match &inner_shape {
                None => inner_shape = Some(shape),
                Some(s) if *s != shape => {
                    return Err(self.err(format!(
                        "`{key}` is ragged: row {b} has shape {shape:?}, row 0 has {s:?}; pad every row to one length"
                    )))
                }
                _ => {}
            }
        }
        let mut shape = vec![outer.len()];
        shape.extend(inner_shape.unwrap_or_default());
        if *shape.last().unwrap() == 0 {
            return Err(self.err(format!("`{key}` rows are empty")));
        }
        Ok((shape, values))
    }
}

/// Reads and validates a forward input file against `config` and `head`.
pub fn read_token_rows(path: &Path, config: &DebertaConfig, head: Head) -> Result<TokenRows, IoError> {
    let text = std::fs::read_to_string(path).map_err(|e| IoError::file(path, e))?;
    parse_token_rows(&text, path, config, head)
}

pub fn parse_token_rows(
    text: &str,
    path: &Path,
    config: &DebertaConfig,
    head: Head,
) -> Result<TokenRows, IoError> {
    let ctx = Ctx { path };
    let value: Value = serde_json::from_str(text).map_err(|e| ctx.err(format!("invalid JSON: {e}")))?;
    let obj = value.as_object().ok_or_else(|| ctx.err("expected a JSON object with `input_ids`"))?;
    for key in obj.keys() {
        if !matches!(key.as_str(), "input_ids" | "attention_mask" | "token_type_ids") {
            return Err(
                ctx.err(format!("unknown key `{key}` (expected input_ids, attention_mask, token_type_ids)"))
            );
        }
    }
    let ids_value = obj.get("input_ids").ok_or_else(|| ctx.err("missing `input_ids`"))?;
    let (shape, input_ids) = ctx.nested("input_ids", ids_value)?;
    let choices = match (shape.len(), head) {
        (3, Head::MultipleChoice) => Some(shape[1]),
        (2, Head::MultipleChoice) => {
            return Err(ctx.err("a multiple-choice model needs `input_ids` nested [batch][choice][token]"))
        }
        (3, _) => {
            return Err(ctx.err(format!(
                "`input_ids` is nested [batch][choice][token] but the model's head is {}",
                head.architecture()
            )))
        }
        _ => None,
    };
    let len = *shape.last().unwrap();
    let rows = input_ids.len() / len;

    for (k, &id) in input_ids.iter().enumerate() {
        if id < 0 || id as usize >= config.vocab_size {
            return Err(ctx.err(format!(
                "`input_ids` row {} position {}: id {id} is outside the vocabulary [0, {})",
                k / len,
                k % len,
                config.vocab_size
            )));
        }
    }
    if let Some(max) = config.max_sequence_length(head) {
        if len > max {
            return Err(ctx.err(format!(
                "rows have {len} tokens; this model has absolute positions for at most {max} (max_position_embeddings)"
            )));
        }
    }

    let same_shape = |key: &str| -> Result<Option<Vec<i64>>, IoError> {
        match obj.get(key).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(v) => {
                let (s, values) = ctx.nested(key, v)?;
                if s != shape {
                    return Err(ctx.err(format!("`{key}` has shape {s:?} but `input_ids` has {shape:?}")));
                }
                Ok(Some(values))
            }
        }
    };
    let attention_mask = same_shape("attention_mask")?.unwrap_or_else(|| vec![1; input_ids.len()]);
    if let Some(k) = attention_mask.iter().position(|&m| m != 0 && m != 1) {
        return Err(ctx.err(format!(
            "`attention_mask` row {} position {} is {}; only 0 and 1 are allowed",
            k / len,
            k % len,
            attention_mask[k]
        )));
    }
    let token_type_ids = same_shape("token_type_ids")?;
    if let Some(types) = &token_type_ids {
        if config.type_vocab_size > 0 {
            if let Some(k) = types.iter().position(|&t| t < 0 || t as usize >= config.type_vocab_size) {
                return Err(ctx.err(format!(
                    "`token_type_ids` row {} position {} is {}, outside [0, {}) (type_vocab_size)",
                    k / len,
                    k % len,
                    types[k],
                    config.type_vocab_size
                )));
            }
        }
    }
    Ok(TokenRows {
        rows,
        len,
        choices,
        input_ids,
        attention_mask,
        // HF ignores token types when the model has no type embeddings.
        token_type_ids: token_type_ids.filter(|_| config.type_vocab_size > 0),
    })
}

impl TokenRows {
    pub fn to_batch<B: burn::prelude::Backend>(&self, device: &B::Device) -> deberta_model::Batch<B> {
        use burn::prelude::*;
        let t = |v: &Vec<i64>| {
            Tensor::<B, 2, Int>::from_data(TensorData::new(v.clone(), [self.rows, self.len]), device)
        };
        deberta_model::Batch {
            input_ids: t(&self.input_ids),
            attention_mask: t(&self.attention_mask),
            token_type_ids: self.token_type_ids.as_ref().map(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DebertaConfig {
        DebertaConfig::from_json_str(
            r#"{"hidden_size":8,"num_attention_heads":2,"vocab_size":50,"type_vocab_size":2,"max_position_embeddings":6}"#,
        )
        .unwrap()
    }

    fn parse(json: &str, head: Head) -> Result<TokenRows, String> {
        parse_token_rows(json, Path::new("in.json"), &config(), head).map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_two_and_three_levels() {
        let r = parse(r#"{"input_ids":[[1,5,2],[1,2,0]],"attention_mask":[[1,1,1],[1,1,0]]}"#, Head::Base)
            .unwrap();
        assert_eq!((r.rows, r.len, r.choices), (2, 3, None));
        assert_eq!(r.attention_mask, vec![1, 1, 1, 1, 1, 0]);
        let r = parse(r#"{"input_ids":[[[1,5],[1,6]],[[1,7],[1,8]]]}"#, Head::MultipleChoice).unwrap();
        assert_eq!((r.rows, r.len, r.choices), (4, 2, Some(2)));
    }

    #[test]
    fn rejects_bad_input_with_a_clear_message() {
        let cases = [
            (r#"{"input_ids":[[1,2,3],[1,2]]}"#, "ragged"),
            (r#"{"input_ids":[[1,2,50]]}"#, "outside the vocabulary"),
            (r#"{"input_ids":[[1,2,-1]]}"#, "outside the vocabulary"),
            (r#"{"input_ids":[[1,2]],"attention_mask":[[1,1,1]]}"#, "shape"),
            (r#"{"input_ids":[[1,2]],"attention_mask":[[1,2]]}"#, "only 0 and 1"),
            (r#"{"input_ids":[[1,2]],"token_type_ids":[[0,2]]}"#, "type_vocab_size"),
            (r#"{"input_ids":[]}"#, "empty"),
            (r#"{"input_ids":[[1,2,3,4,5,6,7]]}"#, "max_position_embeddings"),
            (r#"{"input_ids":[[1,"a"]]}"#, "not an integer"),
            (r#"{"input_ids":[[1,2]],"labels":[1]}"#, "unknown key"),
            (r#"{"input_ids":[[[1,2]]]}"#, "choice"),
            (r#"not json"#, "invalid JSON"),
        ];
        for (json, expected) in cases {
            let err = parse(json, Head::Base).unwrap_err();
            assert!(err.contains(expected) && err.contains("in.json"), "{json}: {err}");
        }
        assert!(parse(r#"{"input_ids":[[1,2]]}"#, Head::MultipleChoice)
            .unwrap_err()
            .contains("multiple-choice"));
    }
}
