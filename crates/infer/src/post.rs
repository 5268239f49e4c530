//! Model outputs to answers, per task, with HF pipelines' semantics.

use crate::preprocess::{Post, Preprocessor, Scoring};
use crate::types::{InferError, LabelScore, MaskFill, Response, Result};
use deberta_train::finetune::task::{argmax, softmax, Output};

mod qa;
mod tokens;

pub(crate) fn finish(pre: &Preprocessor, post: &Post, outputs: Vec<Output>) -> Result<Response> {
    match post {
        Post::Text { top_k } => {
            let v = vector(&outputs[0])?;
            let labels = pre.labels();
            let scores: Vec<f64> = match pre.scoring() {
                Scoring::Softmax => softmax(v),
                Scoring::Sigmoid => v.iter().map(|&x| 1.0 / (1.0 + (-x as f64).exp())).collect(),
                Scoring::Raw => v.iter().map(|&x| x as f64).collect(),
            };
            let mut out: Vec<LabelScore> = scores
                .iter()
                .enumerate()
                .map(|(i, &s)| LabelScore {
                    label: labels.get(i).cloned().unwrap_or_else(|| format!("LABEL_{i}")),
                    score: s,
                })
                .collect();
            out.sort_by(|a, b| b.score.total_cmp(&a.score));
            out.truncate(top_k.unwrap_or(usize::MAX).max(1));
            Ok(Response::TextClassification(out))
        }
        Post::Choice => {
            let p = softmax(vector(&outputs[0])?);
            Ok(Response::MultipleChoice { label: argmax(&p), scores: p })
        }
        Post::ZeroShot { sequence, labels, multi_label } => {
            let entail =
                pre.entailment().ok_or_else(|| InferError::Unsupported("no entailment label".into()))?;
            let rows = outputs.iter().map(vector).collect::<Result<Vec<_>>>()?;
            let scores: Vec<f64> = if *multi_label || labels.len() == 1 {
                // Entailment against contradiction, each label on its own. HF takes the
                // contradiction logit from id 0, or from the last id when entailment is id 0.
                rows.iter()
                    .map(|r| {
                        let contradiction = if entail == 0 { r.len() - 1 } else { 0 };
                        softmax(&[r[contradiction], r[entail]])[1]
                    })
                    .collect()
            } else {
                softmax(&rows.iter().map(|r| r[entail]).collect::<Vec<f32>>())
            };
            let mut order: Vec<usize> = (0..labels.len()).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
            Ok(Response::ZeroShotClassification {
                sequence: sequence.clone(),
                labels: order.iter().map(|&i| labels[i].clone()).collect(),
                scores: order.iter().map(|&i| scores[i]).collect(),
            })
        }
        Post::Embed { normalize, .. } => {
            let mut v = vector(&outputs[0])?.to_vec();
            if *normalize {
                let norm = v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt();
                // As torch's F.normalize: a zero vector stays zero.
                let scale = 1.0 / norm.max(1e-12);
                v.iter_mut().for_each(|x| *x = (*x as f64 * scale) as f32);
            }
            Ok(Response::Embeddings(v))
        }
        Post::Fill { ids, positions, top_k } => {
            let Output::Tokens(rows) = &outputs[0] else {
                return Err(InferError::Model("expected vocabulary logits at the masks".into()));
            };
            let tok = pre.tokenizer();
            let mut all = Vec::new();
            for (&position, logits) in positions.iter().zip(rows) {
                let p = softmax(logits);
                let mut order: Vec<usize> = (0..p.len()).collect();
                order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
                order.truncate(*top_k);
                let fills: Vec<MaskFill> = order
                    .into_iter()
                    .map(|id| {
                        let mut filled = ids.clone();
                        filled[position] = id as u32;
                        MaskFill {
                            score: p[id],
                            token: id as u32,
                            token_str: tok.decode(&[id as u32]),
                            sequence: tok.decode(&filled),
                        }
                    })
                    .collect();
                all.push(fills);
            }
            Ok(if all.len() == 1 {
                Response::FillMask(all.pop().expect("one mask"))
            } else {
                Response::FillMasks(all)
            })
        }
        Post::Tokens { text, encoding, aggregation } => {
            let Output::Tokens(rows) = &outputs[0] else {
                return Err(InferError::Model("expected token logits".into()));
            };
            Ok(Response::TokenClassification(tokens::entities(pre, text, encoding, rows, *aggregation)))
        }
        Post::Qa { context, windows, top_k, handle_impossible, max_answer_len } => {
            let spans = outputs
                .iter()
                .map(|o| match o {
                    Output::Span { start, end } => Ok((start.as_slice(), end.as_slice())),
                    _ => Err(InferError::Model("expected start/end logits".into())),
                })
                .collect::<Result<Vec<_>>>()?;
            let options = qa::QaDecode {
                top_k: *top_k,
                handle_impossible: *handle_impossible,
                max_answer_len: *max_answer_len,
            };
            Ok(Response::QuestionAnswering(qa::answers(context, windows, &spans, &options)))
        }
    }
}

fn vector(o: &Output) -> Result<&[f32]> {
    match o {
        Output::Vector(v) if !v.is_empty() => Ok(v),
        _ => Err(InferError::Model("expected one logit vector".into())),
    }
}
