#!/usr/bin/env bash
# Starts `deberta serve` on tiny random models and calls every route the way clients do: curl for
# each route, the `openai` Python client for /v1/embeddings, and an OpenAPI 3 validator for
# /openapi.json. Every model answer is compared with `deberta predict` on the same input.
#
#   scripts/serve_clients.sh                 # builds target/release/deberta if missing
#   DEBERTA=target/debug/deberta scripts/serve_clients.sh
#
# Needs curl and a Python with `openai` and `openapi-spec-validator`
# (PYTHON, default /work/main/.venv-ref/bin/python; `pip install openai openapi-spec-validator`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/work/main/.venv-ref/bin/python}
DEBERTA=${DEBERTA:-target/release/deberta}
[ -x "$DEBERTA" ] || cargo build --release -p deberta-cli
TMP=$(mktemp -d)
PID=
stop() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; PID=; }
trap 'stop; rm -rf "$TMP"' EXIT

# model NAME HEAD [init flags...]: a tiny random model with the test tokenizer.
model() {
    local name=$1 head=$2
    shift 2
    "$DEBERTA" init --preset tiny --vocab-size 2048 --head "$head" --seed 3 --out "$TMP/$name" "$@" >/dev/null
    cp fixtures/tokenizer/deberta_style.model "$TMP/$name/spm.model"
}

# serve NAME [flags...]: starts the server on a free port; sets URL.
serve() {
    local name=$1
    shift
    stop
    "$DEBERTA" serve --model "$TMP/$name" --port 0 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    PID=$!
    for _ in $(seq 300); do
        URL=$(sed -n 's/^listening on //p' "$TMP/$name.out")
        [ -n "$URL" ] && return
        kill -0 "$PID" 2>/dev/null || { cat "$TMP/$name.err"; exit 1; }
        sleep 0.1
    done
    echo "server did not start"; exit 1
}

# call ROUTE JSON: POSTs and prints the answer; fails on a non-200 status.
call() {
    curl -sS --fail-with-body -H 'content-type: application/json' -d "$2" "$URL$1"
}

# predict NAME TASK JSONL: `deberta predict` output lines.
predict() {
    printf '%s\n' "$3" >"$TMP/in.jsonl"
    "$DEBERTA" predict --model "$TMP/$1" --task "$2" --input "$TMP/in.jsonl" 2>/dev/null
}

# same LABEL GOT WANT: the JSON values agree to 1e-4.
same() {
    "$PYTHON" - "$1" "$2" "$3" <<'EOF'
import json, sys
label, got, want = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
def close(a, b, at):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        assert abs(a - b) <= 1e-4, f"{at}: {a} vs {b}"
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{at}: {a} vs {b}"
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{at}[{i}]")
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{at}: {a.keys()} vs {b.keys()}"
        for k in a:
            close(a[k], b[k], f"{at}.{k}")
    else:
        assert a == b, f"{at}: {a!r} vs {b!r}"
close(got, want, label)
print(f"ok  {label}")
EOF
}

# A classifier whose first label is an NLI "entailment": /predict, /rerank and zero-shot.
model nli seq-cls --num-labels 2
"$PYTHON" - "$TMP/nli/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["id2label"] = {"0": "entailment", "1": "not_entailment"}
c["label2id"] = {"entailment": 0, "not_entailment": 1}
json.dump(c, open(sys.argv[1], "w"))
EOF
serve nli
echo "serving nli at $URL"
curl -sS --fail "$URL/health" >/dev/null && echo "ok  /health"
curl -sS --fail "$URL/info" | "$PYTHON" -c 'import json,sys; i=json.load(sys.stdin); assert i["model_type"]=="DebertaV2ForSequenceClassification", i; print("ok  /info")'

got=$(call /predict '{"inputs": ["A man eats.", "Someone eats."]}')
want=$(predict nli text-classification '{"text": "A man eats.", "text_pair": "Someone eats."}')
same /predict "$got" "$("$PYTHON" -c 'import json,sys; p=json.loads(sys.argv[1])["probabilities"]; print(json.dumps(sorted([{"score": v, "label": k} for k, v in p.items()], key=lambda x: -x["score"])))' "$want")"

got=$(call /rerank '{"query": "Who eats?", "texts": ["A man eats.", "The sky is blue."]}')
want=$(predict nli text-classification $'{"text": "Who eats?", "text_pair": "A man eats."}\n{"text": "Who eats?", "text_pair": "The sky is blue."}')
same /rerank "$got" "$("$PYTHON" -c '
import json, sys
ps = [json.loads(l)["probabilities"]["entailment"] for l in sys.argv[1].splitlines()]
print(json.dumps(sorted([{"index": i, "score": p} for i, p in enumerate(ps)], key=lambda r: -r["score"])))' "$want")"

got=$(call /zero-shot-classification '{"inputs": "I love this film", "candidate_labels": ["cinema", "sport"]}')
want=$(predict nli zero-shot-classification '{"sequence": "I love this film", "candidate_labels": ["cinema", "sport"]}')
same /zero-shot-classification "$got" "$want"

got=$(call /embed '{"inputs": "I love this film"}')
want=$(predict nli embeddings '{"text": "I love this film"}')
same /embed "$got" "[$want]"

"$PYTHON" - "$URL" "$want" <<'EOF'
import json, sys
from openai import OpenAI
url, want = sys.argv[1], json.loads(sys.argv[2])
client = OpenAI(base_url=url + "/v1", api_key="unused")
for fmt in ("float", None):  # None: the client's default (base64, decoded by the client)
    kw = {"encoding_format": fmt} if fmt else {}
    r = client.embeddings.create(model="nli", input=["I love this film"], **kw)
    got = r.data[0].embedding
    assert len(got) == len(want) and max(abs(a - b) for a, b in zip(got, want)) < 1e-4, fmt
    assert r.usage.prompt_tokens > 0 and r.model == "nli", r
print("ok  /v1/embeddings (openai client, float and base64)")
EOF

ids=$(call /tokenize '{"inputs": "I love this film"}' | "$PYTHON" -c 'import json,sys; print(json.dumps([t["id"] for t in json.load(sys.stdin)[0]]))')
text=$(call /decode "{\"ids\": $ids}")
[ "$text" = '["I love this film"]' ] && echo "ok  /tokenize + /decode" || { echo "decode gave $text"; exit 1; }

curl -sS --fail "$URL/metrics" | grep -q 'deberta_requests_total{route="/predict",status="200"}' && echo "ok  /metrics"
curl -sS --fail "$URL/openapi.json" >"$TMP/openapi.json"
"$PYTHON" -c 'import json,sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print("ok  /openapi.json is valid OpenAPI 3")' "$TMP/openapi.json"

status=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' -d '{"inputs": 5}' "$URL/embed")
[ "$status" = 422 ] && echo "ok  422 on a wrong type" || { echo "got $status"; exit 1; }

# The other heads, one server each.
model ner token-classification --num-labels 3
serve ner
got=$(call /token-classification '{"inputs": "Sarah lives in Paris", "aggregation_strategy": "simple"}')
want=$(predict ner token-classification '{"text": "Sarah lives in Paris", "aggregation_strategy": "simple"}')
same /token-classification "$got" "$want"

model qa qa
serve qa
got=$(call /question-answering '{"question": "Where does Sarah live?", "context": "Sarah lives in Paris."}')
want=$(predict qa question-answering '{"question": "Where does Sarah live?", "context": "Sarah lives in Paris."}')
same /question-answering "$got" "$want"

model mlm mlm
serve mlm
got=$(call /fill-mask '{"inputs": "Paris is the [MASK] of France.", "top_k": 3}')
want=$(predict mlm fill-mask '{"text": "Paris is the [MASK] of France.", "top_k": 3}')
same /fill-mask "$got" "$want"

model mc multiple-choice
serve mc
got=$(call /multiple-choice '{"text": "The man", "choices": ["eats.", "flies.", "sleeps."]}')
want=$(predict mc multiple-choice '{"text": "The man", "choices": ["eats.", "flies.", "sleeps."]}')
same /multiple-choice "$got" "$want"

echo "all routes answered as deberta predict does"
