//! `deberta serve` as users run it: the real binary on a free port with tiny random models made
//! by `deberta init`, called over HTTP. Every answer is compared with the library pipeline run on
//! the same input in this process (the server batches requests of several clients together and
//! pads them; the pipeline runs each alone), and the error statuses, the concurrency limit and the
//! drain on SIGTERM are checked.

mod common;

use common::{fixture, ok, scratch};
use deberta_infer::{Aggregation, Pipeline, PipelineOptions, Pooling, Request};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type B = burn::backend::Flex;

/// A tiny random model with `head` (and `extra` init flags), with the test tokenizer; a
/// classifier's labels are renamed `labels`.
fn model(name: &str, head: &str, extra: &[&str], labels: &[&str]) -> PathBuf {
    let dir = scratch("serve", name);
    let d = dir.to_str().unwrap();
    let mut args =
        vec!["init", "--preset", "tiny", "--vocab-size", "2048", "--head", head, "--seed", "3", "--out", d];
    args.extend_from_slice(extra);
    ok(&args);
    std::fs::copy(fixture("tokenizer/deberta_style.model"), dir.join("spm.model")).unwrap();
    if !labels.is_empty() {
        let path = dir.join("config.json");
        let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config["id2label"] = labels.iter().enumerate().map(|(i, l)| (i.to_string(), json!(l))).collect();
        config["label2id"] = labels.iter().enumerate().map(|(i, l)| (l.to_string(), json!(i))).collect();
        std::fs::write(&path, config.to_string()).unwrap();
    }
    dir
}

/// A running `deberta serve`; killed on drop if the test did not stop it.
struct Server {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start(model: &Path, flags: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_deberta"))
            .args(["serve", "--model", model.to_str().unwrap(), "--port", "0", "--threads", "1"])
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            sink.lock().unwrap().push_str(&s);
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let Some(addr) = line.trim().strip_prefix("listening on http://") else {
            let _ = child.wait();
            panic!("deberta serve did not start: {line:?}\n{}", stderr.lock().unwrap());
        };
        Server { addr: addr.parse().unwrap(), child, stderr }
    }

    fn url(&self, route: &str) -> String {
        format!("http://{}{route}", self.addr)
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into()
    }

    /// POSTs `body` as is: (status, JSON answer).
    fn post_raw(&self, route: &str, body: &str) -> (u16, Value) {
        let mut r = Self::agent()
            .post(&self.url(route))
            .header("content-type", "application/json")
            .send(body.to_string())
            .unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{route}: {e}: {text}")))
    }

    fn post(&self, route: &str, body: Value) -> (u16, Value) {
        self.post_raw(route, &body.to_string())
    }

    /// POSTs `body` and expects 200.
    fn ok(&self, route: &str, body: Value) -> Value {
        let (status, v) = self.post(route, body.clone());
        assert_eq!(status, 200, "{route} {body}: {v}");
        v
    }

    fn get(&self, route: &str) -> (u16, String) {
        let mut r = Self::agent().get(&self.url(route)).call().unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipeline(model: &Path, max_length: Option<usize>) -> Pipeline<B> {
    let options = PipelineOptions { max_length, ..PipelineOptions::default() };
    Pipeline::load(model, &options, &Default::default()).unwrap()
}

/// The pipeline's answers to `requests` (each alone), as JSON.
fn expected(p: &Pipeline<B>, requests: &[Request], truncate: bool) -> Vec<Value> {
    requests
        .iter()
        .map(|r| {
            serde_json::to_value(p.run(std::slice::from_ref(r), truncate, 1).remove(0).unwrap()).unwrap()
        })
        .collect()
}

/// Equal JSON, numbers within `tol` (padding in a shared batch moves the last digits).
fn assert_close(got: &Value, want: &Value, tol: f64, at: &str) {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= tol, "{at}: {a} vs {b}");
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{at}: {got} vs {want}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_close(x, y, tol, &format!("{at}[{i}]"));
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(a), keys(b), "{at}");
            for (k, x) in a {
                assert_close(x, &b[k], tol, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(got, want, "{at}"),
    }
}

const TOL: f64 = 1e-4;

fn words(n: usize) -> String {
    (0..n).map(|i| ["alpha", "beta", "gamma", "delta", "river"][i % 5]).collect::<Vec<_>>().join(" ")
}

#[test]
fn classifier_routes_match_the_pipeline() {
    let dir = model("seqcls", "seq-cls", &["--num-labels", "2"], &["entailment", "not_entailment"]);
    let server = Server::start(&dir, &["--max-input-length", "32", "--max-batch-tokens", "256"]);
    let p = pipeline(&dir, Some(32));

    // /health, /info.
    assert_eq!(server.get("/health").0, 200);
    let info: Value = serde_json::from_str(&server.get("/info").1).unwrap();
    assert_eq!(info["model_type"], "DebertaV2ForSequenceClassification");
    assert_eq!(info["max_input_length"], 32);
    assert_eq!(info["id2label"], json!(["entailment", "not_entailment"]));
    let tasks = info["tasks"].as_array().unwrap();
    assert!(tasks.contains(&json!("zero-shot-classification")), "{info}");

    // /predict: single, pair, batch of both; all labels best first, as the pipeline.
    let texts = ["A man eats.", "Rivers run to the sea and the sea is wide"];
    let tc = |t: &str, pair: Option<&str>| Request::TextClassification {
        text: t.into(),
        text_pair: pair.map(str::to_string),
        top_k: None,
    };
    let want = expected(&p, &[tc(texts[0], None), tc(texts[0], Some(texts[1]))], false);
    assert_close(&server.ok("/predict", json!({"inputs": texts[0]})), &want[0], TOL, "single");
    assert_close(&server.ok("/predict", json!({"inputs": texts})), &want[1], TOL, "pair");
    let batch = server.ok("/predict", json!({"inputs": [[texts[0]], texts]}));
    assert_close(&batch, &json!(want), TOL, "batch");
    // raw_scores: logits up to a shift, i.e. log-probabilities for a softmax head.
    let raw = server.ok("/predict", json!({"inputs": texts[0], "raw_scores": true}));
    for (r, w) in raw.as_array().unwrap().iter().zip(want[0].as_array().unwrap()) {
        assert_eq!(r["label"], w["label"]);
        let p = w["score"].as_f64().unwrap();
        assert!((r["score"].as_f64().unwrap() - p.ln()).abs() < TOL, "{r} vs ln {p}");
    }

    // /rerank: P(entailment) of (query, text), best first, indices into texts.
    let query = "Who eats?";
    let docs = ["A man eats.", "The sky is blue.", "Nobody eats at night."];
    let want = expected(&p, &docs.map(|d| tc(query, Some(d))), false);
    let ranks = server.ok("/rerank", json!({"query": query, "texts": docs, "return_text": true}));
    let ranks = ranks.as_array().unwrap();
    assert_eq!(ranks.len(), 3);
    for (k, r) in ranks.iter().enumerate() {
        let i = r["index"].as_u64().unwrap() as usize;
        assert_eq!(r["text"], docs[i]);
        let entail = want[i].as_array().unwrap().iter().find(|l| l["label"] == "entailment").unwrap();
        assert!((r["score"].as_f64().unwrap() - entail["score"].as_f64().unwrap()).abs() < TOL);
        if k > 0 {
            assert!(ranks[k - 1]["score"].as_f64() >= r["score"].as_f64());
        }
    }

    // /zero-shot-classification.
    let labels = ["food", "weather"];
    let want = expected(
        &p,
        &[Request::ZeroShotClassification {
            sequence: texts[0].into(),
            candidate_labels: labels.map(str::to_string).to_vec(),
            hypothesis_template: "This text is about {}.".into(),
            multi_label: false,
        }],
        false,
    );
    let got = server.ok(
        "/zero-shot-classification",
        json!({"inputs": texts[0], "candidate_labels": labels, "hypothesis_template": "This text is about {}."}),
    );
    assert_close(&got, &want[0], TOL, "zero-shot");

    // /embed (mean pooling, normalised) and /v1/embeddings (floats and base64).
    let emb =
        |t: &str, normalize: bool| Request::Embeddings { text: t.into(), pooling: Pooling::Mean, normalize };
    let want = expected(&p, &[emb(texts[0], true), emb(texts[1], true), emb(texts[0], false)], false);
    let got = server.ok("/embed", json!({"inputs": texts}));
    assert_close(&got, &json!(want[..2]), TOL, "embed");
    let got = server.ok("/embed", json!({"inputs": texts[0], "normalize": false}));
    assert_close(&got, &json!([want[2]]), TOL, "embed unnormalised");
    let oa = server.ok("/v1/embeddings", json!({"input": texts, "model": "any"}));
    assert_eq!(oa["object"], "list");
    assert_eq!(oa["model"], "seqcls");
    for (i, d) in oa["data"].as_array().unwrap().iter().enumerate() {
        assert_eq!((d["object"].as_str(), d["index"].as_u64()), (Some("embedding"), Some(i as u64)));
        assert_close(&d["embedding"], &want[i], TOL, "v1/embeddings");
    }
    let tokens: usize =
        texts.iter().map(|t| p.pre.tokenizer().encode(t, None, &Default::default()).unwrap().len()).sum();
    assert_eq!(oa["usage"], json!({"prompt_tokens": tokens, "total_tokens": tokens}));
    let b64 = server.ok("/v1/embeddings", json!({"input": texts[0], "encoding_format": "base64"}));
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_close(&json!(floats), &want[0], TOL, "base64");

    // /tokenize and /decode agree with the tokenizer.
    let tok = p.pre.tokenizer();
    let enc = tok.encode(texts[1], None, &Default::default()).unwrap();
    let got = server.ok("/tokenize", json!({"inputs": texts[1]}));
    let got = got[0].as_array().unwrap();
    let ids: Vec<u32> = got.iter().map(|t| t["id"].as_u64().unwrap() as u32).collect();
    assert_eq!(ids, enc.input_ids);
    assert_eq!((got[0]["special"].as_bool(), got[0]["text"].as_str()), (Some(true), Some("[CLS]")));
    let chars: Vec<char> = texts[1].chars().collect();
    for t in &got[1..got.len() - 1] {
        let (s, e) = (t["start"].as_u64().unwrap() as usize, t["stop"].as_u64().unwrap() as usize);
        assert_eq!(t["text"].as_str().unwrap(), chars[s..e].iter().collect::<String>());
    }
    assert_eq!(server.ok("/decode", json!({"ids": enc.input_ids})), json!([tok.decode(&enc.input_ids)]));
    let with_special = server.ok("/decode", json!({"ids": [enc.input_ids], "skip_special_tokens": false}));
    let s = with_special[0].as_str().unwrap();
    assert!(
        s.starts_with("[CLS] ") && s.ends_with(" [SEP]") && s.contains(&tok.decode(&enc.input_ids)),
        "{s}"
    );

    // Clients at once: each answer is the one it gets alone, and the model saw shared batches.
    let lengths = [3, 10, 6, 9, 5, 1, 7, 8];
    let want = expected(&p, &lengths.map(|n| emb(&words(n), true)), false);
    let server_ref = &server;
    let got: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = lengths
            .iter()
            .map(|&n| s.spawn(move || server_ref.ok("/embed", json!({"inputs": words(n)}))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_close(&g[0], w, TOL, &format!("concurrent[{i}]"));
    }

    // Client mistakes: 422 for any malformed body, 413 over the limits, 400 for another head's
    // task, 404 for no route; each with the JSON error body.
    let error = |status: u16, v: &Value, kind: &str, words: &[&str]| {
        assert_eq!(v["error_type"], kind, "{status}: {v}");
        let msg = v["error"].as_str().unwrap();
        for w in words {
            assert!(msg.contains(w), "{w:?} not in {msg:?}");
        }
    };
    for (body, words) in [
        ("{\"inputs\": ", &["request body", "EOF"][..]),
        ("[1, 2]", &["invalid type"][..]),
        ("{\"inputs\": 5}", &["inputs", "a string or a list of strings"][..]),
        ("{\"inputs\": \"x\", \"normalise\": true}", &["unknown field `normalise`"][..]),
        ("{}", &["missing field `inputs`"][..]),
        ("{\"inputs\": []}", &["no inputs"][..]),
    ] {
        let (status, v) = server.post_raw("/embed", body);
        assert_eq!(status, 422, "{body}: {v}");
        error(status, &v, "validation", words);
    }
    // Not even JSON's content type: still our 422.
    let mut r = Server::agent().post(&server.url("/predict")).send("inputs=x").unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    error(422, &v, "validation", &["expected value"]);
    let (status, v) = server.post_raw("/predict", "{\"inputs\": [[\"a\", \"b\", \"c\"]]}");
    assert_eq!(status, 422, "{v}");
    let (status, v) = server.post_raw("/decode", "{\"ids\": [1, 99999]}");
    assert_eq!(status, 422, "{v}");
    error(status, &v, "validation", &["99999", "vocabulary"]);
    let long = words(60);
    let (status, v) = server.post("/predict", json!({"inputs": long}));
    assert_eq!(status, 413, "{v}");
    error(status, &v, "validation", &["more than the 32 allowed", "truncate"]);
    let (status, v) = server.post("/embed", json!({"inputs": [texts[0], long]}));
    assert_eq!(status, 413, "{v}");
    error(status, &v, "validation", &["inputs[1]"]);
    let want = expected(&p, &[tc(&long, None)], true);
    assert_close(
        &server.ok("/predict", json!({"inputs": long, "truncate": true})),
        &want[0],
        TOL,
        "truncated",
    );
    let (status, v) = server.post("/embed", json!({"inputs": vec!["a"; 33]}));
    assert_eq!(status, 413, "{v}");
    error(status, &v, "validation", &["33 inputs", "--max-client-batch-size"]);
    let (status, v) = server.post("/fill-mask", json!({"inputs": "a [MASK] b"}));
    assert_eq!(status, 400, "{v}");
    error(status, &v, "unsupported", &["fill-mask"]);
    let (status, v) = server.post("/nowhere", json!({}));
    assert_eq!(status, 404, "{v}");

    // The server is still well, and counted all of it.
    assert_eq!(server.get("/health").0, 200);
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    for line in [
        "deberta_requests_total{route=\"/predict\",status=\"413\"} 1",
        "deberta_requests_total{route=\"/embed\",status=\"422\"} 6",
        "deberta_requests_total{route=\"unmatched\",status=\"404\"} 1",
        "# TYPE deberta_batch_requests histogram",
        "# TYPE deberta_queue_duration_seconds histogram",
        "# TYPE deberta_inference_duration_seconds histogram",
    ] {
        assert!(metrics.contains(line), "{line:?} not in\n{metrics}");
    }
    // Fewer batches than embedded inputs: some requests shared a forward pass.
    let count = |name: &str| -> f64 {
        let prefix = format!("{name} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap().parse().unwrap()
    };
    let (batches, sum) = (count("deberta_batch_requests_count"), count("deberta_batch_requests_sum"));
    assert!(sum > batches, "{sum} requests in {batches} batches");

    // The OpenAPI document lists every route.
    let (status, doc) = server.get("/openapi.json");
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    for route in [
        "/predict",
        "/rerank",
        "/embed",
        "/v1/embeddings",
        "/tokenize",
        "/decode",
        "/token-classification",
        "/question-answering",
        "/zero-shot-classification",
        "/fill-mask",
        "/multiple-choice",
        "/info",
        "/health",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(doc["paths"].get(route).is_some(), "{route} missing from /openapi.json");
    }
}

#[test]
fn other_heads_match_the_pipeline() {
    // Token classification.
    let dir = model("tokcls", "token-classification", &["--num-labels", "3"], &["O", "B-PER", "I-PER"]);
    let server = Server::start(&dir, &[]);
    let p = pipeline(&dir, None);
    let text = "Sarah lives in Paris with Tom";
    for aggregation in [Aggregation::None, Aggregation::Simple, Aggregation::First] {
        let want = expected(
            &p,
            &[Request::TokenClassification { text: text.into(), aggregation_strategy: aggregation }],
            false,
        );
        let name = serde_json::to_value(aggregation).unwrap();
        let got = server.ok("/token-classification", json!({"inputs": [text], "aggregation_strategy": name}));
        assert_close(&got, &json!(want), TOL, "token-classification");
    }
    drop(server);

    // Question answering, with a context longer than one window.
    let dir = model("qa", "qa", &[], &[]);
    let server = Server::start(&dir, &["--max-input-length", "24"]);
    let p = pipeline(&dir, Some(24));
    let (question, context) = ("Where does Sarah live?", words(40) + " Sarah lives in Paris.");
    let want = expected(
        &p,
        &[Request::QuestionAnswering {
            question: question.into(),
            context: context.clone(),
            top_k: 2,
            handle_impossible_answer: false,
            max_answer_len: 5,
        }],
        false,
    );
    let got = server.ok(
        "/question-answering",
        json!({"question": question, "context": context, "top_k": 2, "max_answer_len": 5}),
    );
    assert_close(&got, &want[0], TOL, "question-answering");
    drop(server);

    // Fill-mask, one and two masks.
    let dir = model("mlm", "mlm", &[], &[]);
    let server = Server::start(&dir, &[]);
    let p = pipeline(&dir, None);
    let texts = ["Paris is the [MASK] of France.", "[MASK] lives in [MASK]."];
    let want = expected(&p, &texts.map(|t| Request::FillMask { text: t.into(), top_k: 3 }), false);
    let got = server.ok("/fill-mask", json!({"inputs": texts, "top_k": 3}));
    assert_close(&got, &json!(want), TOL, "fill-mask");
    let (status, v) = server.post("/fill-mask", json!({"inputs": "no mask here"}));
    assert_eq!(status, 422, "{v}");
}

/// Sends the head and part of the body of a `/embed` request on a raw connection, so the server
/// holds it (and its concurrency permit) until the rest comes.
fn half_sent(addr: SocketAddr, body: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /embed HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let (head, rest) = body.split_at(5);
    s.write_all(head.as_bytes()).unwrap();
    s.flush().unwrap();
    (s, rest.to_string())
}

#[test]
fn over_the_limit_is_429_and_sigterm_drains() {
    let dir = model("limit", "base", &[], &[]);
    let mut server = Server::start(&dir, &["--max-concurrent-requests", "1"]);
    let body = json!({"inputs": "held back"}).to_string();
    let (mut held, rest) = half_sent(server.addr, &body);
    // Once the server holds that request, every other one is refused with 429 until it ends.
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let (status, v) = server.post("/embed", json!({"inputs": "another"}));
        if status == 429 {
            break v;
        }
        assert_eq!(status, 200, "{v}");
        assert!(Instant::now() < deadline, "never refused");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(refused["error_type"], "overloaded");
    assert!(refused["error"].as_str().unwrap().contains("1 concurrent"), "{refused}");
    // Routes without a model pass are not limited.
    assert_eq!(server.get("/health").0, 200);

    // SIGTERM with the request in flight: it is still answered, then the server exits cleanly.
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_millis(200));
    held.write_all(rest.as_bytes()).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = String::new();
    let _ = held.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_, json_body) = answer.split_once("\r\n\r\n").unwrap();
    let v: Value = serde_json::from_str(json_body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}\n{}", server.stderr.lock().unwrap());
}
