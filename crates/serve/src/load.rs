//! A load generator for the server: `/embed` requests of a fixed mix of token lengths at several
//! concurrencies (throughput, latency percentiles, errors), and an overload run past
//! `--max-concurrent-requests` (how many 429s, and whether the server answers normally after).

use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{0}")]
    Bad(String),
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The server, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// Input lengths in tokens (special tokens included), sent in equal shares.
    pub lengths: Vec<usize>,
    pub concurrency: Vec<usize>,
    /// Requests per concurrency level (after one warm-up request per length).
    pub requests: usize,
    /// Clients in the overload run, as a multiple of the server's `max_concurrent_requests`;
    /// 0: no overload run.
    pub overload_factor: usize,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Level {
    pub concurrency: usize,
    pub requests: usize,
    pub ok: usize,
    /// 429 answers.
    pub rejected: usize,
    /// Anything else: other statuses and transport errors.
    pub failed: usize,
    pub seconds: f64,
    /// Tokens the model ran for the successful requests (the server's `x-compute-tokens`).
    pub tokens: usize,
    pub tokens_per_second: f64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The first failure seen, to say what went wrong.
    pub first_error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Overload {
    pub max_concurrent_requests: usize,
    pub level: Level,
    /// Every one of the requests sent one at a time after the overload run answered 200.
    pub recovered: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub url: String,
    /// The token length of each text of the mix, as the server counts them.
    pub lengths: Vec<usize>,
    pub levels: Vec<Level>,
    pub overload: Option<Overload>,
}

const WORDS: &[&str] = &[
    "the",
    "model",
    "reads",
    "a",
    "sentence",
    "and",
    "returns",
    "one",
    "vector",
    "for",
    "each",
    "input",
    "while",
    "many",
    "clients",
    "send",
    "requests",
    "at",
    "once",
    "server",
    "batches",
    "them",
    "by",
    "tokens",
    "so",
    "that",
    "short",
    "texts",
    "wait",
    "little",
    "long",
    "documents",
    "about",
    "rivers",
    "mountains",
    "history",
    "music",
    "science",
    "cooking",
    "travel",
    "weather",
    "markets",
    "games",
];

fn text_of(words: usize, seed: usize) -> String {
    (0..words)
        .map(|i| WORDS[(i * 7 + seed * 13 + i / WORDS.len()) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

struct Client {
    agent: ureq::Agent,
    url: String,
}

/// One answer: status, `x-compute-tokens`, body.
struct Reply {
    status: u16,
    tokens: usize,
    body: String,
}

impl Client {
    fn new(url: &str, connections: usize) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .max_idle_connections(connections.max(1))
            .max_idle_connections_per_host(connections.max(1))
            .build()
            .into();
        Client { agent, url: url.trim_end_matches('/').to_string() }
    }

    fn call(&self, method: &str, route: &str, body: Option<&serde_json::Value>) -> Result<Reply, LoadError> {
        let url = format!("{}{route}", self.url);
        let err = |e: ureq::Error| LoadError::Http { url: url.clone(), message: e.to_string() };
        let mut response = match body {
            Some(b) => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(b.to_string())
                .map_err(err)?,
            None if method == "GET" => self.agent.get(&url).call().map_err(err)?,
            None => return Err(LoadError::Bad(format!("{method} {route}: no body"))),
        };
        let status = response.status().as_u16();
        let tokens = response
            .headers()
            .get("x-compute-tokens")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let body = response.body_mut().read_to_string().map_err(err)?;
        Ok(Reply { status, tokens, body })
    }

    fn json(
        &self,
        method: &str,
        route: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, LoadError> {
        let r = self.call(method, route, body)?;
        if r.status != 200 {
            return Err(LoadError::Http {
                url: format!("{}{route}", self.url),
                message: format!("{}: {}", r.status, r.body),
            });
        }
        serde_json::from_str(&r.body).map_err(|e| LoadError::Bad(format!("{route}: {e}")))
    }

    /// Tokens of `text` as the server counts them.
    fn tokens(&self, text: &str) -> Result<usize, LoadError> {
        let v = self.json("POST", "/tokenize", Some(&serde_json::json!({"inputs": text})))?;
        Ok(v[0].as_array().map_or(0, Vec::len))
    }

    /// A text of at most `target` tokens, as close to it as words allow.
    fn text_of_length(&self, target: usize, seed: usize) -> Result<(String, usize), LoadError> {
        let (mut lo, mut hi) = (1usize, target.max(1));
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if self.tokens(&text_of(mid, seed))? <= target {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let text = text_of(lo, seed);
        let n = self.tokens(&text)?;
        Ok((text, n))
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `requests` requests from `concurrency` threads, the texts in turn.
fn level(client: &Client, bodies: &[serde_json::Value], concurrency: usize, requests: usize) -> Level {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(Result<Reply, LoadError>, f64)>> = Mutex::new(Vec::with_capacity(requests));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let t = Instant::now();
                let r = client.call("POST", "/embed", Some(&bodies[i % bodies.len()]));
                let ms = t.elapsed().as_secs_f64() * 1e3;
                results.lock().unwrap_or_else(|e| e.into_inner()).push((r, ms));
            });
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut out = Level { concurrency, requests, seconds, ..Level::default() };
    let mut latencies = Vec::new();
    for (r, ms) in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        match r {
            Ok(r) if r.status == 200 => {
                out.ok += 1;
                out.tokens += r.tokens;
                latencies.push(ms);
            }
            Ok(r) if r.status == 429 => out.rejected += 1,
            Ok(r) => {
                out.failed += 1;
                out.first_error.get_or_insert(format!("{}: {}", r.status, r.body));
            }
            Err(e) => {
                out.failed += 1;
                out.first_error.get_or_insert(e.to_string());
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    out.tokens_per_second = out.tokens as f64 / seconds;
    out.requests_per_second = out.ok as f64 / seconds;
    out.p50_ms = percentile(&latencies, 50.0);
    out.p99_ms = percentile(&latencies, 99.0);
    out
}

/// Runs the whole load test against a running server.
pub fn run(options: &LoadOptions) -> Result<LoadReport, LoadError> {
    if options.lengths.is_empty() || options.concurrency.is_empty() || options.requests == 0 {
        return Err(LoadError::Bad("give at least one length, one concurrency and one request".into()));
    }
    let most = options.concurrency.iter().copied().max().unwrap_or(1);
    let info = Client::new(&options.url, 1).json("GET", "/info", None)?;
    let limit = info["max_concurrent_requests"].as_u64().unwrap_or(0) as usize;
    let client = Client::new(&options.url, most.max(limit * options.overload_factor));
    let mut texts = Vec::new();
    let mut lengths = Vec::new();
    for (i, &target) in options.lengths.iter().enumerate() {
        let (text, n) = client.text_of_length(target, i)?;
        texts.push(serde_json::json!({"inputs": text}));
        lengths.push(n);
    }
    // Warm-up: every length once (first-touch allocations, caches).
    let warm = level(&client, &texts, 1, texts.len());
    if warm.ok != texts.len() {
        return Err(LoadError::Bad(format!("warm-up failed: {}", warm.first_error.unwrap_or_default())));
    }
    let levels =
        options.concurrency.iter().map(|&c| level(&client, &texts, c.max(1), options.requests)).collect();
    let overload = if options.overload_factor > 0 && limit > 0 {
        let clients = limit * options.overload_factor;
        let level = level(&client, &texts, clients, clients * 4);
        let after = self::level(&client, &texts, 1, 10);
        Some(Overload { max_concurrent_requests: limit, level, recovered: after.ok == after.requests })
    } else {
        None
    };
    Ok(LoadReport { url: options.url.clone(), lengths, levels, overload })
}

impl LoadReport {
    /// A Markdown table of the levels and the overload run.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("Token lengths of the mix: {:?}\n\n", self.lengths));
        s.push_str(
            "| concurrency | requests | ok | 429 | failed | tokens/s | requests/s | p50 ms | p99 ms |\n",
        );
        s.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let row = |l: &Level| {
            format!(
                "| {} | {} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} |\n",
                l.concurrency,
                l.requests,
                l.ok,
                l.rejected,
                l.failed,
                l.tokens_per_second,
                l.requests_per_second,
                l.p50_ms,
                l.p99_ms
            )
        };
        for l in &self.levels {
            s.push_str(&row(l));
        }
        if let Some(o) = &self.overload {
            s.push_str(&format!(
                "\nOverload: {} clients against --max-concurrent-requests {}\n\n",
                o.level.concurrency, o.max_concurrent_requests
            ));
            s.push_str(
                "| concurrency | requests | ok | 429 | failed | tokens/s | requests/s | p50 ms | p99 ms |\n",
            );
            s.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            s.push_str(&row(&o.level));
            s.push_str(&format!(
                "\nRecovered after the overload (10 sequential requests all 200): {}\n",
                o.recovered
            ));
        }
        for l in self.levels.iter().chain(self.overload.as_ref().map(|o| &o.level)) {
            if let Some(e) = &l.first_error {
                s.push_str(&format!("\nFirst error at concurrency {}: {e}\n", l.concurrency));
            }
        }
        s
    }
}
