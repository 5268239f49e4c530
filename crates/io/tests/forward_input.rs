//! Property tests (proptest, fixed seed, so CI runs are reproducible) for the `deberta forward`
//! input parser, [`parse_token_rows`]:
//!
//! - `arbitrary_json_never_panics` (256 cases): arbitrary JSON values (recursive: nulls, bools,
//!   numbers incl. floats and huge integers, strings, arrays, objects), both as the whole file
//!   and under the `input_ids`/`attention_mask`/`token_type_ids` keys, give rows or an error for
//!   a base and a multiple-choice model, never a panic; rows that parse are consistent.
//! - `nested_int_lists_never_panic` (256 cases): lists of 0- to 3-level nested lists of small integers
//!   (ragged, empty, mixed depth), the shapes closest to valid input.
//!
//! Plus the regression `empty_choice_list_is_an_error` (a `[B][C][L]` input whose later item
//! has no choices used to panic on an index out of bounds).

mod common;

use common::proptest_config as config;
use deberta_io::inputs::{parse_token_rows, TokenRows};
use deberta_model::{DebertaConfig, Head};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn model_config() -> DebertaConfig {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/parity/v3_base_model");
    deberta_io::read_config(&dir).unwrap()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..130).prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |x| x.is_finite()).prop_map(|x| json!(x)),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("input_ids".to_string()),
                    Just("attention_mask".to_string()),
                    Just("token_type_ids".to_string()),
                    ".{0,4}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn nested_ints() -> impl Strategy<Value = Value> {
    let leaf =
        prop_oneof![8 => (-1i64..4).prop_map(|n| json!(n)), 1 => Just(json!(1.5)), 1 => Just(Value::Null)];
    let any_depth =
        leaf.prop_recursive(3, 32, 4, |inner| proptest::collection::vec(inner, 0..4).prop_map(Value::Array));
    // Always a list at the top: the interesting cases are the shapes of the rows in it.
    proptest::collection::vec(any_depth, 0..4).prop_map(Value::Array)
}

fn check(text: &str) -> Result<(), TestCaseError> {
    let config = model_config();
    for head in [Head::Base, Head::MultipleChoice] {
        if let Ok(TokenRows { rows, len, choices, input_ids, attention_mask, token_type_ids }) =
            parse_token_rows(text, Path::new("input.json"), &config, head)
        {
            prop_assert!(len > 0 && rows > 0);
            prop_assert_eq!(input_ids.len(), rows * len);
            prop_assert_eq!(attention_mask.len(), rows * len);
            if let Some(t) = token_type_ids {
                prop_assert_eq!(t.len(), rows * len);
            }
            if let Some(c) = choices {
                prop_assert!(c > 0 && rows % c == 0);
            }
            prop_assert!(input_ids.iter().all(|&i| i >= 0 && (i as usize) < config.vocab_size));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_json_never_panics(v in json_value(), a in json_value(), b in json_value(), c in json_value()) {
        check(&v.to_string())?;
        check(&json!({"input_ids": a, "attention_mask": b, "token_type_ids": c}).to_string())?;
        check(&json!({"input_ids": a}).to_string())?;
    }

    #[test]
    fn nested_int_lists_never_panic(a in nested_ints(), b in nested_ints(), c in nested_ints()) {
        check(&json!({"input_ids": a}).to_string())?;
        check(&json!({"input_ids": a, "attention_mask": b}).to_string())?;
        check(&json!({"input_ids": a, "attention_mask": b, "token_type_ids": c}).to_string())?;
        check(&json!({"input_ids": a, "attention_mask": a, "token_type_ids": a}).to_string())?;
    }
}

#[test]
fn empty_choice_list_is_an_error() {
    let config = model_config();
    for head in [Head::Base, Head::MultipleChoice] {
        let r = parse_token_rows(r#"{"input_ids": [[[1, 2]], []]}"#, Path::new("in.json"), &config, head);
        assert!(r.is_err(), "{head:?}: {r:?}");
    }
}
