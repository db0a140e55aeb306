# shellcheck shell=bash
# Shared by scripts/bench/run-all and scripts/bench/smoke: tools, builds,
# process handling and the five whole-binary benchmarks. Sizes come from
# variables the caller sets (see run-all). Loopback only; every process this
# file starts is recorded and stopped by PID on exit; every load loop is
# bounded by a count and a time limit.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/../.." && pwd)
RELAY=$ROOT/target/release/discourse-relay
HELPERS_TARGET=$ROOT/target/bench-helpers
HELPERS=$HELPERS_TARGET/release
PY=python3
SECRET=bench-webhook-secret-0123456789
export DISCOURSE_WEBHOOK_SECRET=$SECRET
export RUST_LOG=${RUST_LOG:-info}
PIDS=()

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}

# result NAME JSON: one line of $OUT/results.jsonl.
result() { printf '{"bench":"%s","data":%s}\n' "$1" "$2" >>"$OUT/results.jsonl"; }

# jget JSON EXPR: a value from a JSON document (EXPR is Python over `d`).
jget() { $PY -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
  rm -rf "$OUT"/data-* 2>/dev/null || true
}

# stop_relay: stops the relay and deletes its data dir (they grow to GBs).
stop_relay() {
  stop "$RELAY_PID"
  rm -rf "$RELAY_DATA"
}

track() { PIDS+=("$1"); }

# stop PID: SIGTERM, wait up to 15 s, then SIGKILL; forgets the PID.
stop() {
  local pid=$1 i keep=() p
  for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_for FILE REGEX SECONDS: until a line of FILE matches.
wait_for() {
  local file=$1 re=$2 secs=$3 i
  for i in $(seq $((secs * 20))); do
    grep -qE "$re" "$file" 2>/dev/null && return 0
    sleep 0.05
  done
  die "no line matching '$re' in $file after ${secs}s: $(tail -5 "$file" 2>/dev/null)"
}

rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/{print $2}' "/proc/$1/status"; }
threads() { awk '/^Threads:/{print $2}' "/proc/$1/status"; }
# cpu_us PID: user + system CPU time the process (all its threads) used so far,
# in microseconds. CPU per request is steadier than requests per second on a
# shared machine: a neighbour's load slows a run down but costs it no CPU.
cpu_us() { awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%d\n", ($12 + $13) * 1e6 / hz}' "/proc/$1/stat"; }
# with_cpu JSON PID CPU0: adds cpu_us and cpu_us_per_req (over "requests").
with_cpu() {
  local used=$(($(cpu_us "$2") - $3))
  jset "$1" cpu_us "$used" cpu_us_per_req "$($PY -c 'import json,sys; d=json.loads(sys.argv[1]); print(round(int(sys.argv[2])/max(d["requests"],1),1))' "$1" "$used")"
}

machine_json() {
  $PY - "$@" <<'EOF'
import json, os, platform, subprocess
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
load = open("/proc/loadavg").read().split()[:3]
def ver(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except Exception:
        return "?"
print(json.dumps({"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "loadavg_at_start": load,
                  "mem_total_kb": int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))),
                  "wrk": ver(["wrk", "-v"]), "alertmanager": ver(["prometheus-alertmanager", "--version"]),
                  "python": ver(["python3", "--version"]), "rustc": ver(["rustc", "--version"])}))
EOF
}

# ------------------------------------------------------------------ setup

setup_tools() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
  command -v python3 >/dev/null || missing+=(python3)
  command -v curl >/dev/null || missing+=(curl)
  if ((${#missing[@]})); then
    log "installing ${missing[*]} with apt-get"
    # Debian's policy-rc.d may or may not keep alertmanager's service from
    # starting; either way the benchmark starts its own on 127.0.0.1 only.
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  command -v cargo >/dev/null || die "cargo is needed (rustup or the distribution's)"
}

build() {
  log "cargo build --release (the relay)"
  (cd "$ROOT" && cargo build --release -q)
  log "cargo build --release (scripts/bench/ceiling: ceiling + sink, target/bench-helpers)"
  CARGO_TARGET_DIR=$HELPERS_TARGET cargo build --release -q --manifest-path "$BENCH_DIR/ceiling/Cargo.toml"
  [[ -x $RELAY && -x $HELPERS/ceiling && -x $HELPERS/sink ]] || die "build outputs missing"
  # Other builds in the same tree may replace target/release while this
  # runs: every run uses this copy.
  cp "$RELAY" "$OUT/discourse-relay"
  RELAY=$OUT/discourse-relay
}

# ------------------------------------------------------------------ processes

# start_sink [PORT]: sets SINK_PID, SINK_URL.
start_sink() {
  local port=${1:-0} out
  out=$OUT/sink.$RANDOM.out
  "$HELPERS/sink" "127.0.0.1:$port" >"$out" 2>&1 &
  SINK_PID=$!
  track "$SINK_PID"
  wait_for "$out" '^listening ' 10
  SINK_URL="http://$(awk '/^listening /{print $2; exit}' "$out")"
}

sink_reset() { curl -sf -X POST "$SINK_URL/_reset" >/dev/null; }
sink_count() { $PY -c 'import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1]+"/_stats"))["count"])' "$SINK_URL"; }

# start_relay CONFIG NAME: fresh data dir; sets RELAY_PID, RELAY_URL, ADMIN_URL, RELAY_DATA.
start_relay() {
  local config=$1 name=$2 log addrs
  RELAY_DATA=$OUT/data-$name
  rm -rf "$RELAY_DATA"
  log=$OUT/relay-$name.log
  "$RELAY" --log-format json serve --config "$config" --data-dir "$RELAY_DATA" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 >"$OUT/relay-$name.stdout" 2>"$log" &
  RELAY_PID=$!
  track "$RELAY_PID"
  RELAY_STARTED_NS=$(date +%s%N)
  wait_for "$log" '"message":"listening"' 120
  RELAY_READY_NS=$(date +%s%N)
  addrs=$($PY -c '
import json, sys
for line in open(sys.argv[1]):
    if "\"listening\"" in line:
        f = json.loads(line).get("fields", {})
        print(f["public"], f["admin"]); break' "$log")
  RELAY_URL="http://${addrs% *}"
  ADMIN_URL="http://${addrs#* }"
  curl -sf "$ADMIN_URL/readyz" >/dev/null || die "relay $name not ready"
}

# start_ceiling: sets CEIL_PID, CEIL_URL.
start_ceiling() {
  local out=$OUT/ceiling.$RANDOM.out
  "$HELPERS/ceiling" 127.0.0.1:0 >"$out" 2>&1 &
  CEIL_PID=$!
  track "$CEIL_PID"
  wait_for "$out" '^listening ' 10
  CEIL_URL="http://$(awk '/^listening /{print $2; exit}' "$out")"
}

# start_am NAME: Alertmanager on 127.0.0.1 only (no cluster gossip), its
# webhook receiver = the sink; fresh storage. Sets AM_PID, AM_URL.
start_am() {
  local name=$1 dir port i
  dir=$OUT/am-$name
  rm -rf "$dir" && mkdir -p "$dir/data"
  port=$(free_port)
  cat >"$dir/alertmanager.yml" <<EOF
route:
  receiver: hook
  group_by: ['alertname']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: $SINK_URL/alertmanager
        send_resolved: false
EOF
  prometheus-alertmanager --config.file="$dir/alertmanager.yml" --storage.path="$dir/data" \
    --web.listen-address="127.0.0.1:$port" --cluster.listen-address= >"$dir/out.log" 2>&1 &
  AM_PID=$!
  track "$AM_PID"
  AM_URL="http://127.0.0.1:$port"
  for i in $(seq 200); do
    curl -sf "$AM_URL/-/ready" >/dev/null && return 0
    sleep 0.05
  done
  die "alertmanager did not become ready: $(tail -5 "$dir/out.log")"
}

# wrk_run LABEL URL SCRIPT CLOSE(0|1) SECONDS CONNS THREADS: prints the
# BENCHJSON object plus "rps" (successful answers per second).
wrk_run() {
  local label=$1 url=$2 script=$3 close=$4 secs=$5 conns=$6 threads=$7 out line
  out=$OUT/wrk-$label.txt
  BENCH_CLOSE=$close timeout $((secs + 60)) wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 5s \
    -s "$BENCH_DIR/$script" "$url" -- "$threads" >"$out" 2>&1 || die "wrk $label: $(tail -3 "$out")"
  line=$(sed -n 's/^BENCHJSON //p' "$out")
  [[ -n $line ]] || die "wrk $label printed no result: $(tail -3 "$out")"
  $PY -c 'import json,sys; d=json.loads(sys.argv[1]); d["rps"]=round(d["ok"]/(d["duration_us"]/1e6),1); d["label"]=sys.argv[2]; print(json.dumps(d))' "$line" "$label"
}

# ------------------------------------------------------------------ 1. ingest

# The signatures ingest.lua sends (also used by the sink-capacity run, so
# `run-all latency` works on its own).
ensure_sigs() {
  [[ -n ${BENCH_SIGS:-} && -f $BENCH_SIGS ]] && return
  export BENCH_SIGS=$OUT/sigs.lua
  $PY "$BENCH_DIR/gen.py" sigs --secret "$SECRET" --base 0 --count "$INGEST_SIGS" --out "$BENCH_SIGS"
}

bench_ingest() {
  log "== 1. ingest: $INGEST_RUNS run(s) x ${INGEST_SECS}s per server and mode, $INGEST_CONNS connections"
  ensure_sigs
  $PY "$BENCH_DIR/gen.py" config ingest --sink "$SINK_URL" --out "$OUT/ingest.toml"
  sed 's|subscribe = \["all"\]|subscribe = ["c/no-such-category"]|' "$OUT/ingest.toml" >"$OUT/ingest-nomatch.toml"
  local run mode close r cpu0
  for run in $(seq "$INGEST_RUNS"); do
    for mode in keepalive close; do
      close=0
      [[ $mode == close ]] && close=1
      # Interleaved: ceiling, relay, Alertmanager, so drift hits all three.
      start_ceiling
      cpu0=$(cpu_us "$CEIL_PID")
      r=$(wrk_run "ceiling-$mode-$run" "$CEIL_URL/webhooks/discourse" ingest.lua "$close" "$INGEST_SECS" "$INGEST_CONNS" 2)
      r=$(with_cpu "$r" "$CEIL_PID" "$cpu0")
      stop "$CEIL_PID"
      result ingest "$(jset "$r" run "$run" mode "$mode" server ceiling)"
      log "   run $run $mode ceiling: $(jget "$r" 'd["rps"]') req/s"

      sink_reset
      start_relay "$OUT/ingest.toml" "ingest-$mode-$run"
      cpu0=$(cpu_us "$RELAY_PID")
      r=$(wrk_run "relay-$mode-$run" "$RELAY_URL/webhooks/discourse" ingest.lua "$close" "$INGEST_SECS" "$INGEST_CONNS" 2)
      r=$(with_cpu "$r" "$RELAY_PID" "$cpu0")
      r=$(jset "$r" rss_kb_after "$(rss_kb "$RELAY_PID")")
      stop_relay
      result ingest "$(jset "$r" run "$run" mode "$mode" server relay)"
      log "   run $run $mode relay: $(jget "$r" 'd["s202"]') answered 202 = $(jget "$r" 'round(d["s202"]/(d["duration_us"]/1e6),1)') /s, non-2xx $(jget "$r" 'd["non2xx"]'), duplicates $(jget "$r" 'd["s2xx_other"]')"
      [[ $(jget "$r" 'd["s202"]') -gt 0 ]] || die "relay accepted nothing"
      [[ $(jget "$r" 'd["non2xx"]') -eq 0 ]] || die "relay answered non-2xx during ingest"

      if [[ $mode == keepalive ]]; then
        # Diagnosis: the same requests when no chat matches (accept + route,
        # no delivery), to split ingest cost from delivery cost.
        start_relay "$OUT/ingest-nomatch.toml" "nomatch-$run"
        cpu0=$(cpu_us "$RELAY_PID")
        r=$(wrk_run "relay-nomatch-$run" "$RELAY_URL/webhooks/discourse" ingest.lua 0 "$INGEST_SECS" "$INGEST_CONNS" 2)
        r=$(with_cpu "$r" "$RELAY_PID" "$cpu0")
        stop_relay
        result ingest "$(jset "$r" run "$run" mode "$mode" server relay_nomatch)"
        log "   run $run $mode relay, no chat matching: $(jget "$r" 'round(d["s202"]/(d["duration_us"]/1e6),1)') 202/s"
      fi

      start_am "$mode-$run"
      cpu0=$(cpu_us "$AM_PID")
      r=$(wrk_run "am-$mode-$run" "$AM_URL" alertmanager.lua "$close" "$INGEST_SECS" "$INGEST_CONNS" 2)
      r=$(with_cpu "$r" "$AM_PID" "$cpu0")
      r=$(jset "$r" rss_kb_after "$(rss_kb "$AM_PID")")
      stop "$AM_PID"
      result ingest "$(jset "$r" run "$run" mode "$mode" server alertmanager)"
      log "   run $run $mode alertmanager: $(jget "$r" 'd["rps"]') req/s"
      [[ $(jget "$r" 'd["ok"]') -gt 0 ]] || die "alertmanager accepted nothing"
    done
  done
}

# jset JSON KEY VALUE...: adds keys (numbers stay numbers).
jset() {
  $PY -c '
import json, sys
d = json.loads(sys.argv[1]); a = sys.argv[2:]
for k, v in zip(a[::2], a[1::2]):
    try: d[k] = json.loads(v)
    except ValueError: d[k] = v
print(json.dumps(d))' "$@"
}

# ------------------------------------------------------------------ 2. latency and fan-out

bench_latency() {
  log "== 2a. end to end latency: ${E2E_RATE}/s for ${E2E_SECS}s (floor: same load straight to the sink for ${FLOOR_SECS}s)"
  local r i p w
  sink_reset
  r=$($PY "$BENCH_DIR/load.py" rate --url "$SINK_URL/direct" --secret "$SECRET" --base 5000000 \
    --rate "$E2E_RATE" --duration "$FLOOR_SECS" --sink "$SINK_URL" --path /direct --direct)
  result e2e_floor "$r"
  log "   harness floor (python -> sink): p50 $(jget "$r" 'd["e2e_ms"]["p50"]') ms, p99 $(jget "$r" 'd["e2e_ms"]["p99"]') ms"

  $PY "$BENCH_DIR/gen.py" config ingest --sink "$SINK_URL" --out "$OUT/e2e.toml"
  sink_reset
  start_relay "$OUT/e2e.toml" e2e
  r=$($PY "$BENCH_DIR/load.py" rate --url "$RELAY_URL/webhooks/discourse" --secret "$SECRET" --base 6000000 \
    --rate "$E2E_RATE" --duration "$E2E_SECS" --sink "$SINK_URL" --path /hook/sink)
  r=$(jset "$r" rss_kb_after "$(rss_kb "$RELAY_PID")")
  stop_relay
  result e2e "$r"
  log "   relay: delivered $(jget "$r" 'd["delivered"]')/$(jget "$r" 'd["sent"]'), e2e p50 $(jget "$r" 'd["e2e_ms"]["p50"]') ms, p99 $(jget "$r" 'd["e2e_ms"]["p99"]') ms; 202 p50 $(jget "$r" 'd["ack_ms"]["p50"]') ms, p99 $(jget "$r" 'd["ack_ms"]["p99"]') ms"
  [[ $(jget "$r" 'd["delivered"] == d["sent"] and d["statuses"].get("202") == d["sent"]') == True ]] ||
    die "end to end: not every event was accepted and delivered"
  local rate
  for rate in $E2E_EXTRA_RATES; do
    sink_reset
    start_relay "$OUT/e2e.toml" "e2e-$rate"
    r=$($PY "$BENCH_DIR/load.py" rate --url "$RELAY_URL/webhooks/discourse" --secret "$SECRET" --base $((6100000 + rate * 1000)) \
      --rate "$rate" --duration "$E2E_EXTRA_SECS" --sink "$SINK_URL" --path /hook/sink)
    stop_relay
    result e2e_extra "$r"
    log "   relay at ${rate}/s: e2e p50 $(jget "$r" 'd["e2e_ms"]["p50"]') ms, p99 $(jget "$r" 'd["e2e_ms"]["p99"]') ms; 202 p99 $(jget "$r" 'd["ack_ms"]["p99"]') ms"
  done

  log "== 2c. one chat's delivery rate: $SINGLE_EVENTS events posted at once, one webhook chat (rate_limit 100000/s)"
  sink_reset
  start_relay "$OUT/e2e.toml" single
  p=$($PY "$BENCH_DIR/load.py" post --url "$RELAY_URL/webhooks/discourse" --secret "$SECRET" \
    --base 6900000 --count "$SINGLE_EVENTS" --concurrency 16 --timeout 60)
  w=$($PY "$BENCH_DIR/load.py" wait-sink --sink "$SINK_URL" --count "$SINGLE_EVENTS" --timeout 120)
  stop_relay
  r=$($PY -c '
import json, sys
p, w = json.loads(sys.argv[1]), json.loads(sys.argv[2])
span = (w["last_ns"] - w["first_ns"]) / 1e9
print(json.dumps({"events": p["sent"], "accepted": p["accepted"], "post_s": p["elapsed_s"], "delivered": w["count"],
                  "complete": w["complete"], "span_s": round(span, 3), "deliveries_per_s": round(w["count"] / span, 1) if span > 0 else None}))' "$p" "$w")
  result single_chat "$r"
  log "   one chat: $(jget "$r" 'd["delivered"]') deliveries in $(jget "$r" 'd["span_s"]') s = $(jget "$r" 'd["deliveries_per_s"]')/s (posting took $(jget "$r" 'd["post_s"]') s)"
  [[ $(jget "$r" 'd["complete"]') == True ]] || die "one chat: deliveries missing"

  log "== 2b. fan-out: $FANOUT_EVENTS events x $FANOUT_CHATS chats (rate_limit 1000/s each), $FANOUT_RUNS run(s)"
  sink_reset
  ensure_sigs
  r=$(wrk_run "sink-capacity" "$SINK_URL/" ingest.lua 0 "$FANOUT_SINK_SECS" "$FANOUT_CHATS" 1)
  result sink_capacity "$r"
  log "   sink capacity with $FANOUT_CHATS keep-alive connections (wrk): $(jget "$r" 'd["rps"]') req/s"
  $PY "$BENCH_DIR/gen.py" config fanout --chats "$FANOUT_CHATS" --rate 1000/s --sink "$SINK_URL" --out "$OUT/fanout.toml"
  local want=$((FANOUT_EVENTS * FANOUT_CHATS))
  for i in $(seq "$FANOUT_RUNS"); do
    sink_reset
    start_relay "$OUT/fanout.toml" "fanout-$i"
    p=$($PY "$BENCH_DIR/load.py" post --url "$RELAY_URL/webhooks/discourse" --secret "$SECRET" \
      --base $((7000000 + i * 100000)) --count "$FANOUT_EVENTS" --concurrency 8 --timeout 60)
    [[ $(jget "$p" 'd["accepted"]') -eq $FANOUT_EVENTS ]] || die "fan-out: not all events accepted: $p"
    w=$($PY "$BENCH_DIR/load.py" wait-sink --sink "$SINK_URL" --count "$want" --timeout "$FANOUT_TIMEOUT")
    r=$($PY -c '
import json, sys
p, w, want = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
span = (w["last_ns"] - w["first_ns"]) / 1e9
print(json.dumps({"run": int(sys.argv[4]), "events": p["sent"], "post_s": p["elapsed_s"], "deliveries": w["count"],
                  "expected": want, "complete": w["complete"], "span_s": round(span, 3),
                  "deliveries_per_s": round(w["count"] / span, 1) if span > 0 else None}))' "$p" "$w" "$want" "$i")
    r=$(jset "$r" rss_kb_after "$(rss_kb "$RELAY_PID")")
    stop_relay
    result fanout "$r"
    log "   run $i: $(jget "$r" 'd["deliveries"]')/$want deliveries in $(jget "$r" 'd["span_s"]') s = $(jget "$r" 'd["deliveries_per_s"]')/s"
    [[ $(jget "$r" 'd["complete"]') == True ]] || die "fan-out: deliveries missing"
  done
}

# ------------------------------------------------------------------ 3. reload (+ 4. memory with 10k chats)

bench_reload() {
  log "== 3. reload: $RELOAD_CHATS chats x 10 rules (+1 sink chat); $RELOAD_IDLE idle reload(s), then $RELOAD_TIMES during wrk"
  local cfg=$OUT/tenk.toml r w rules wrk_secs
  $PY "$BENCH_DIR/gen.py" config tenk --chats "$RELOAD_CHATS" --sink "$SINK_URL" --out "$cfg"
  rules=$((RELOAD_CHATS * 10 + 1))
  # Baseline: the same load + validate in a fresh process (time, peak RSS).
  r=$($PY -c '
import json, resource, subprocess, sys, time
t = time.monotonic()
p = subprocess.run([sys.argv[1], "validate", sys.argv[2]], capture_output=True)
print(json.dumps({"ok": p.returncode == 0, "ms": round((time.monotonic() - t) * 1000),
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))' "$RELAY" "$cfg")
  [[ $(jget "$r" 'd["ok"]') == True ]] || die "generated config does not validate"
  result reload_validate "$(jset "$r" rules "$rules" bytes "$(stat -c %s "$cfg")")"
  log "   discourse-relay validate: $(jget "$r" 'd["ms"]') ms, peak RSS $(jget "$r" 'd["maxrss_kb"]') kB ($(stat -c %s "$cfg") bytes)"

  sink_reset
  start_relay "$cfg" reload
  result memory "{\"case\": \"chats_loaded\", \"chats\": $((RELOAD_CHATS + 1)), \"rules\": $rules, \"rss_kb\": $(rss_kb "$RELAY_PID"), \"threads\": $(threads "$RELAY_PID"), \"start_ms\": $(((RELAY_READY_NS - RELAY_STARTED_NS) / 1000000))}"
  log "   started in $(((RELAY_READY_NS - RELAY_STARTED_NS) / 1000000)) ms; RSS $(rss_kb "$RELAY_PID") kB"
  sleep 1
  result memory "{\"case\": \"chats_loaded_settled\", \"chats\": $((RELOAD_CHATS + 1)), \"rss_kb\": $(rss_kb "$RELAY_PID")}"
  r=$($PY "$BENCH_DIR/load.py" reload --admin "$ADMIN_URL" --times "$RELOAD_IDLE")
  result reload_idle "$(jset "$r" rules "$rules")"
  result memory "{\"case\": \"chats_after_idle_reloads\", \"chats\": $((RELOAD_CHATS + 1)), \"reloads\": $RELOAD_IDLE, \"rss_kb\": $(rss_kb "$RELAY_PID"), \"hwm_kb\": $(hwm_kb "$RELAY_PID"), \"threads\": $(threads "$RELAY_PID")}"
  log "   idle reload: median $(jget "$r" 'd["median_ms"]') ms, max $(jget "$r" 'd["max_ms"]') ms, ok $(jget "$r" 'd["ok"]')"
  [[ $(jget "$r" 'd["ok"]') == True ]] || die "reload failed"

  # wrk long enough to cover every reload (bounded), with 16 connections.
  wrk_secs=$($PY -c 'import sys, math; print(min(180, max(int(sys.argv[3]), math.ceil(float(sys.argv[1]) / 1000 * int(sys.argv[2]) * 2.5) + 2)))' \
    "$(jget "$r" 'd["max_ms"]')" "$RELOAD_TIMES" "$RELOAD_MIN_WRK_SECS")
  export BENCH_SIGS=$OUT/sigs-reload.lua
  $PY "$BENCH_DIR/gen.py" sigs --secret "$SECRET" --base 8000000 --count "$RELOAD_SIGS" --out "$BENCH_SIGS"
  wrk_run "reload" "$RELAY_URL/webhooks/discourse" ingest.lua 0 "$wrk_secs" 16 1 >"$OUT/reload-wrk.json" &
  w=$!
  sleep 1
  r=$($PY "$BENCH_DIR/load.py" reload --admin "$ADMIN_URL" --times "$RELOAD_TIMES")
  wait "$w" || die "wrk during reloads failed"
  w=$(cat "$OUT/reload-wrk.json")
  result reload_under_load "$(jset "$r" rules "$rules" wrk "$w" wrk_secs "$wrk_secs")"
  result memory "{\"case\": \"chats_after_reloads\", \"chats\": $((RELOAD_CHATS + 1)), \"reloads\": $((RELOAD_IDLE + RELOAD_TIMES)), \"rss_kb\": $(rss_kb "$RELAY_PID"), \"hwm_kb\": $(hwm_kb "$RELAY_PID"), \"threads\": $(threads "$RELAY_PID")}"
  log "   $RELOAD_TIMES reloads during wrk (${wrk_secs}s): median $(jget "$r" 'd["median_ms"]') ms, max $(jget "$r" 'd["max_ms"]') ms; wrk: $(jget "$w" 'd["requests"]') requests, $(jget "$w" 'd["s202"]') x 202, non-2xx $(jget "$w" 'd["non2xx"]'), socket errors $(jget "$w" 'd["err_connect"]+d["err_read"]+d["err_write"]+d["err_timeout"]'), p99 $(jget "$w" 'd["p99_us"]') us"
  log "   RSS after reloads $(rss_kb "$RELAY_PID") kB (peak $(hwm_kb "$RELAY_PID") kB)"
  stop_relay
  [[ $(jget "$r" 'd["ok"]') == True ]] || die "a reload under load failed"
  [[ $(jget "$w" 'd["non2xx"]+d["err_connect"]+d["err_read"]+d["err_write"]+d["err_timeout"]') -eq 0 ]] ||
    die "requests failed during reloads"

  # Diagnosis of the RSS growth across reloads: the same idle reloads with
  # glibc limited to 2 malloc arenas (allocator retention vs live data).
  if ((RELOAD_ARENA_CHECK)); then
    MALLOC_ARENA_MAX=2 start_relay "$cfg" reload-arena2
    local k
    for k in $(seq "$RELOAD_IDLE"); do
      $PY "$BENCH_DIR/load.py" reload --admin "$ADMIN_URL" --times 1 >/dev/null
    done
    sleep 0.5
    result memory "{\"case\": \"chats_after_idle_reloads_arena2\", \"chats\": $((RELOAD_CHATS + 1)), \"reloads\": $RELOAD_IDLE, \"rss_kb\": $(rss_kb "$RELAY_PID"), \"hwm_kb\": $(hwm_kb "$RELAY_PID"), \"threads\": $(threads "$RELAY_PID")}"
    log "   with MALLOC_ARENA_MAX=2, after $RELOAD_IDLE idle reloads: RSS $(rss_kb "$RELAY_PID") kB"
    stop_relay
  fi
}

# ------------------------------------------------------------------ 4. memory + 5. backlog drain

bench_memory_backlog() {
  log "== 4. memory (idle) and 5. backlog: $BACKLOG_EVENTS events x $BACKLOG_CHATS chats queued with the provider down"
  local port cfg r q d rate
  # Idle, tiny config (one webhook chat); reference: an idle Alertmanager.
  $PY "$BENCH_DIR/gen.py" config ingest --sink "$SINK_URL" --out "$OUT/tiny.toml"
  start_relay "$OUT/tiny.toml" idle
  sleep "$IDLE_SETTLE"
  result memory "{\"case\": \"idle_tiny\", \"rss_kb\": $(rss_kb "$RELAY_PID")}"
  log "   idle relay (1 chat): $(rss_kb "$RELAY_PID") kB"
  stop_relay
  start_am idle
  sleep "$IDLE_SETTLE"
  result memory "{\"case\": \"idle_alertmanager\", \"rss_kb\": $(rss_kb "$AM_PID")}"
  log "   idle alertmanager (reference): $(rss_kb "$AM_PID") kB"
  stop "$AM_PID"

  # The chats point at a port nothing listens on (yet).
  rate=$BACKLOG_RATE
  if [[ $rate == auto ]]; then
    # Half the measured fan-out capacity, spread over the chats, so the rate
    # limit (not the CPU) is what should bound the drain.
    rate=$($PY -c '
import json, sys, statistics
v = [json.loads(l)["data"]["deliveries_per_s"] for l in open(sys.argv[1]) if json.loads(l)["bench"] == "fanout"]
print(max(5, min(100, int(statistics.median(v) / 2 / int(sys.argv[2])))) if v else 20)' "$OUT/results.jsonl" "$BACKLOG_CHATS")
  fi
  port=$(free_port)
  cfg=$OUT/backlog.toml
  $PY "$BENCH_DIR/gen.py" config fanout --chats "$BACKLOG_CHATS" --rate "$rate/s" --sink "http://127.0.0.1:$port" --out "$cfg"
  start_relay "$cfg" backlog
  local want=$((BACKLOG_EVENTS * BACKLOG_CHATS))
  r=$($PY "$BENCH_DIR/load.py" post --url "$RELAY_URL/webhooks/discourse" --secret "$SECRET" \
    --base 9000000 --count "$BACKLOG_EVENTS" --concurrency 8 --timeout 120)
  [[ $(jget "$r" 'd["accepted"]') -eq $BACKLOG_EVENTS ]] || die "backlog: not all events accepted: $r"
  q=$($PY "$BENCH_DIR/load.py" queued --admin "$ADMIN_URL" --count "$want" --timeout 120)
  [[ $(jget "$q" 'd["complete"]') == True ]] || die "backlog: queues never reached $want: $q"
  sleep 1
  result memory "{\"case\": \"queued\", \"deliveries\": $want, \"chats\": $BACKLOG_CHATS, \"rss_kb\": $(rss_kb "$RELAY_PID"), \"hwm_kb\": $(hwm_kb "$RELAY_PID"), \"post_s\": $(jget "$r" 'd["elapsed_s"]'), \"route_wait_s\": $(jget "$q" 'd["waited_s"]'), \"db_bytes\": $(du -sb "$RELAY_DATA" | cut -f1)}"
  log "   $want deliveries queued ($BACKLOG_EVENTS events posted in $(jget "$r" 'd["elapsed_s"]') s): RSS $(rss_kb "$RELAY_PID") kB, peak $(hwm_kb "$RELAY_PID") kB, store $(du -sh "$RELAY_DATA" | cut -f1)"

  # Bring the provider up and time the drain.
  local t_up main_sink_pid=$SINK_PID main_sink_url=$SINK_URL
  t_up=$(date +%s%N)
  start_sink "$port"
  local drain_sink_pid=$SINK_PID drain_sink_url=$SINK_URL
  SINK_PID=$main_sink_pid SINK_URL=$main_sink_url
  d=$($PY "$BENCH_DIR/load.py" wait-sink --sink "$drain_sink_url" --count "$want" --timeout "$BACKLOG_TIMEOUT")
  r=$($PY "$BENCH_DIR/load.py" drain --sink "$drain_sink_url" --chats "$BACKLOG_CHATS" --per-chat "$BACKLOG_EVENTS" --rate "$rate")
  r=$(jset "$r" complete "$(jget "$d" 'd["complete"]')" sink_up_to_first_s "$(jget "$d" "round((d['first_ns'] - $t_up) / 1e9, 3)")" \
    sink_up_to_last_s "$(jget "$d" "round((d['last_ns'] - $t_up) / 1e9, 3)")" rss_kb_after "$(rss_kb "$RELAY_PID")")
  result backlog "$r"
  log "   drain at $rate/s per chat: per chat median $(jget "$r" 'd["span_s"]["median"]') s (min $(jget "$r" 'd["span_s"]["min"]'), max $(jget "$r" 'd["span_s"]["max"]')) vs $(jget "$r" 'd["expected_span_s"]') s allowed by the limit; sink up -> first $(jget "$r" 'd["sink_up_to_first_s"]') s, -> last $(jget "$r" 'd["sink_up_to_last_s"]') s; delivered $(jget "$r" 'd["delivered"]')/$want"
  stop_relay
  stop "$drain_sink_pid"
  [[ $(jget "$r" 'd["complete"]') == True ]] || die "backlog: not everything was delivered"
}
