#!/usr/bin/env python3
"""Memory benchmark of the token store on a real Envoy (issue 5). `make bench-memory`.

Phase 1 (million): Envoy (--concurrency 2) with the oauth2_token filter and a store of
65536 buckets x 32 grants. Resident memory (VmRSS of the Envoy process) and the admin
`/memory` figures are read on an empty start, then MEMORY_TOKENS client_credentials tokens
(default 1,000,000) are issued as fast as possible over many keep-alive connections, and
the growth per live token is reported (must be <= 300 bytes).

Phase 2 (churn): a fresh Envoy whose application tokens live MEMORY_CHURN_LIFETIME seconds
(default 20) gets tokens at a steady MEMORY_CHURN_RATE per second (default 3000) for
warm-up (3 lifetimes) plus MEMORY_CHURN_TURNOVERS lifetimes (default 6), so the live set
turns over at least 5 times after warm-up. RSS and /memory are sampled every 2 s; memory
is flat when the maximum RSS of the last half stays within 5 % of the first sample after
warm-up, and the allocated bytes grew by less than a quarter of what the records issued
after warm-up would take if expired ones were not reclaimed. The
shared-data key count is the one logged at configuration ("token store: created N
shared-data keys", = buckets + 256 revocation counters + the store key): keys are only created there, never by traffic.

Load: `wrk` with a Lua script when installed (Debian package `wrk`), else Python
http.client in several processes (slower; the phase then takes longer).

Environment: MEMORY_TOKENS, MEMORY_CONNECTIONS (64), MEMORY_CHURN_LIFETIME,
MEMORY_CHURN_RATE, MEMORY_CHURN_TURNOVERS, MEMORY_CHURN_BUCKETS (4096), MEMORY_PHASES ("million,churn"),
ENVOY_BIN (.venv/bin/envoy), ENVOY_OAUTH2_WASM (target/wasm32-wasip1/release/...),
MEMORY_SECRET_HASH (skip `cargo run --bin hash-secret`).
Results: printed, and written to bench/results/memory.json.

Python standard library only.
"""

import http.client
import json
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from base64 import b64encode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVOY = os.environ.get("ENVOY_BIN", os.path.join(ROOT, ".venv/bin/envoy"))
WASM = os.environ.get(
    "ENVOY_OAUTH2_WASM",
    os.path.join(ROOT, "target/wasm32-wasip1/release/envoy_oauth2.wasm"),
)
RESULTS = os.path.join(ROOT, "bench/results/memory.json")

TOKENS = int(os.environ.get("MEMORY_TOKENS", "1000000"))
CONNECTIONS = int(os.environ.get("MEMORY_CONNECTIONS", "64"))
CHURN_LIFETIME = int(os.environ.get("MEMORY_CHURN_LIFETIME", "20"))
CHURN_RATE = int(os.environ.get("MEMORY_CHURN_RATE", "3000"))
CHURN_TURNOVERS = float(os.environ.get("MEMORY_CHURN_TURNOVERS", "6"))
# The churn store is sized for its live set (rate x lifetime, 60,000 by default): every
# bucket is rewritten every second or two, so reclamation runs all the time and the
# warm-up is not spent on first writes to 65536 never-written buckets.
CHURN_BUCKETS = int(os.environ.get("MEMORY_CHURN_BUCKETS", "4096"))
PHASES = os.environ.get("MEMORY_PHASES", "million,churn").split(",")

BUCKETS = 65536
GRANTS_PER_BUCKET = 32
REVOCATION_SHARDS = 256
LIMIT_BYTES_PER_TOKEN = 300
FLAT_TOLERANCE = 0.05
CLIENT_ID = "bench-client"
# Hex only: RFC 6749 §2.3.1 form-decodes the Basic credentials, so `+` would be a space.
SECRET = "bench-secret-" + os.urandom(12).hex()
BODY = "grant_type=client_credentials"
AUTH = "Basic " + b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()

YAML = """\
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
static_resources:
  listeners:
  - name: http
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          codec_type: AUTO
          route_config:
            name: gateway
            virtual_hosts:
            - name: gateway
              domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                direct_response: {{ status: 404 }}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: oauth2_token
                root_id: oauth2_token
                allow_on_headers_stop_iteration: true
                vm_config:
                  vm_id: oauth2
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{wasm}" }} }}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {config}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""

WRK_LUA = """\
-- POST /token (client_credentials) on every connection; a thread stops after `limit`
-- answers (0: no limit); `pause` ms before each request paces the rate (0: none).
local limit, pause = 0, 0
local counts = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  limit = tonumber(args[1]) or 0
  pause = tonumber(args[2]) or 0
  wrk.method = "POST"
  wrk.body = "%(body)s"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Authorization"] = "%(auth)s"
  req = wrk.format(nil, "/token")
  answered = 0
  ok = 0
end

function request()
  return req
end

function delay()
  return pause
end

function response(status, headers, body)
  answered = answered + 1
  if status == 200 then ok = ok + 1 end
  if limit > 0 and answered >= limit then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local a, o = 0, 0
  for _, t in ipairs(threads) do
    a = a + (t:get("answered") or 0)
    o = o + (t:get("ok") or 0)
  end
  io.write(string.format("WRK_RESULT answered=%%d ok=%%d\\n", a, o))
end
"""


def log(msg):
    print(msg, flush=True)


def secret_hash():
    h = os.environ.get("MEMORY_SECRET_HASH")
    if h:
        return h
    out = subprocess.run(
        ["cargo", "run", "--release", "--quiet", "--bin", "hash-secret", "--", "--iterations", "10000"],
        input=SECRET + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return out.stdout.strip()


def token_config(hash_, lifetime, buckets=BUCKETS):
    cfg = {
        "issuer": "https://issuer.bench.local",
        "clients": [
            {
                "client_id": CLIENT_ID,
                "secret_hash": hash_,
                "grant_types": ["client_credentials"],
                "scopes": ["default"],
            }
        ],
        "store": {"buckets": buckets, "grants_per_bucket": GRANTS_PER_BUCKET},
        "lifetimes": {"application_access_token": lifetime},
    }
    return cfg


class Envoy:
    def __init__(self, config, workdir, name):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        yaml = YAML.format(wasm=WASM, config=json.dumps(json.dumps(config)))
        path = os.path.join(self.dir, "envoy.yaml")
        with open(path, "w") as f:
            f.write(yaml)
        self.log_path = os.path.join(self.dir, "envoy.log")
        admin_file = os.path.join(self.dir, "admin.txt")
        self.proc = subprocess.Popen(
            [ENVOY, "-c", path, "--concurrency", "2", "--disable-hot-restart",
             "--admin-address-path", admin_file,
             "--log-level", "warn", "--component-log-level", "wasm:info"],
            stdin=subprocess.DEVNULL,
            stdout=open(self.log_path, "wb"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        deadline = time.time() + 60
        self.admin = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"Envoy exited:\n{self.log_tail()}")
            try:
                with open(admin_file) as f:
                    a = f.read().strip()
                if ":" in a:
                    self.admin = a
                    if self.get("/ready").strip() == "LIVE":
                        break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            self.stop()
            raise SystemExit(f"Envoy did not become LIVE:\n{self.log_tail()}")
        listeners = json.loads(self.get("/listeners?format=json"))
        self.port = listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]

    def get(self, path):
        with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=10) as r:
            return r.read().decode()

    def rss(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def memory(self):
        return {k: int(v) for k, v in json.loads(self.get("/memory")).items()}

    def stats(self):
        out = {}
        for s in json.loads(self.get("/stats?format=json&filter=oauth2"))["stats"]:
            if "value" in s:
                out[s["name"]] = s["value"]
        return out

    def counter(self, suffix):
        return sum(v for k, v in self.stats().items() if k.endswith(suffix))

    def issued(self):
        return self.counter("oauth2.token.issued.client_credentials")

    def log_tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def created_keys(self):
        with open(self.log_path, errors="replace") as f:
            text = f.read()
        return [int(n) for n in re.findall(r"token store: created (\d+) shared-data keys", text)]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def settle(envoy, seconds=3.0, n=3):
    """Median of `n` (rss, /memory) samples after `seconds` of quiet."""
    time.sleep(seconds)
    rss, mem = [], []
    for _ in range(n):
        rss.append(envoy.rss())
        mem.append(envoy.memory())
        time.sleep(0.5)
    m = {k: int(statistics.median(x[k] for x in mem)) for k in mem[0]}
    return int(statistics.median(rss)), m


# ----------------------------------------------------------------------------- load


def wrk_load(port, workdir, connections, duration, limit_per_thread=0, pause_ms=0, threads=2):
    script = os.path.join(workdir, "token.lua")
    with open(script, "w") as f:
        f.write(WRK_LUA % {"body": BODY, "auth": AUTH})
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(duration)}s",
           "--timeout", "10s", "-s", script, f"http://127.0.0.1:{port}/token",
           "--", str(limit_per_thread), str(pause_ms)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _py_worker(port, quota, pause_s, deadline, counter):
    def one_conn(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": AUTH}
        done = 0
        while done < n and time.time() < deadline:
            try:
                conn.request("POST", "/token", BODY, headers)
                r = conn.getresponse()
                r.read()
                if r.status == 200:
                    with counter.get_lock():
                        counter.value += 1
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            done += 1
            if pause_s:
                time.sleep(pause_s)
        conn.close()

    per_thread = 8
    ts = [threading.Thread(target=one_conn, args=(quota // per_thread + 1,)) for _ in range(per_thread)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def python_load(port, connections, duration, total=0, pause_ms=0):
    """Fallback without wrk: processes x 8 threads, one keep-alive connection each."""
    procs_n = max(1, connections // 8)
    counter = multiprocessing.Value("q", 0)
    quota = (total // procs_n + 1) if total else 1 << 62
    deadline = time.time() + duration
    procs = [multiprocessing.Process(target=_py_worker, args=(port, quota, pause_ms / 1000, deadline, counter))
             for _ in range(procs_n)]
    for p in procs:
        p.start()
    return procs, counter


def wait_load(handle):
    if isinstance(handle, subprocess.Popen):
        out, _ = handle.communicate()
        m = re.search(r"WRK_RESULT answered=(\d+) ok=(\d+)", out or "")
        if handle.returncode != 0 or not m:
            raise SystemExit(f"wrk failed:\n{out}")
        return int(m.group(1)), int(m.group(2)), out
    procs, counter = handle
    for p in procs:
        p.join()
    return counter.value, counter.value, ""


def running(handle):
    if isinstance(handle, subprocess.Popen):
        return handle.poll() is None
    return any(p.is_alive() for p in handle[0])


def interrupt(handle):
    if isinstance(handle, subprocess.Popen):
        if handle.poll() is None:
            handle.send_signal(signal.SIGINT)
    else:
        for p in handle[0]:
            p.terminate()


def start_load(port, workdir, connections, duration, total=0, pause_ms=0):
    if shutil.which("wrk"):
        threads = 2
        per_thread = (total + threads - 1) // threads if total else 0
        return wrk_load(port, workdir, connections, duration, per_thread, pause_ms, threads)
    return python_load(port, connections, duration, total, pause_ms)


# ----------------------------------------------------------------------------- phases


def phase_million(hash_, workdir):
    log(f"== phase 1: {TOKENS:,} live tokens, store {BUCKETS} buckets x {GRANTS_PER_BUCKET}")
    envoy = Envoy(token_config(hash_, 3600), workdir, "million")
    try:
        rss0, mem0 = settle(envoy)
        log(f"empty start: RSS {rss0 / 2**20:.1f} MiB, allocated {mem0['allocated'] / 2**20:.1f} MiB")
        t0 = time.time()
        load = start_load(envoy.port, workdir, CONNECTIONS, 3600, total=TOKENS)
        last, reached = 0, None
        while running(load):
            time.sleep(2)
            n = envoy.issued()
            if n >= TOKENS and reached is None:
                reached = time.time()
                # wrk threads stop at their share; wrk itself waits for -d unless interrupted.
                interrupt(load)
            log(f"  {n:>9,} issued  {(n - last) / 2:>8,.0f}/s  RSS {envoy.rss() / 2**20:.1f} MiB")
            if reached is None and n == last and time.time() - t0 > 10:
                interrupt(load)
                raise SystemExit(f"no tokens issued for 2 s; stats: {envoy.stats()}")
            last = n
        answered, ok, _ = wait_load(load)
        elapsed = (reached or time.time()) - t0
        issued = envoy.issued()
        rss1, mem1 = settle(envoy, seconds=5)
        stats = envoy.stats()
        keys = envoy.created_keys()
    finally:
        envoy.stop()
    # All tokens live an hour and the phase takes minutes: every issued token is live.
    live = issued
    per_rss = (rss1 - rss0) / live
    per_alloc = (mem1["allocated"] - mem0["allocated"]) / live
    res = {
        "store": {"buckets": BUCKETS, "grants_per_bucket": GRANTS_PER_BUCKET},
        "tokens_requested": TOKENS,
        "answers": answered,
        "answers_200": ok,
        "live_tokens": live,
        "seconds": round(elapsed, 1),
        "tokens_per_second": round(issued / elapsed),
        "rss_empty_bytes": rss0,
        "rss_loaded_bytes": rss1,
        "rss_bytes_per_live_token": round(per_rss, 1),
        "allocated_empty_bytes": mem0["allocated"],
        "allocated_loaded_bytes": mem1["allocated"],
        "allocated_bytes_per_live_token": round(per_alloc, 1),
        "memory_empty": mem0,
        "memory_loaded": mem1,
        "limit_bytes_per_live_token": LIMIT_BYTES_PER_TOKEN,
        "pass": per_rss <= LIMIT_BYTES_PER_TOKEN and live >= TOKENS,
        "created_shared_data_keys": keys,
        "stats": stats,
    }
    log(f"issued {issued:,} in {elapsed:.0f} s ({res['tokens_per_second']:,}/s); "
        f"answers {answered:,}, 200s {ok:,}")
    log(f"RSS {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB: {per_rss:.1f} bytes per live token "
        f"(allocated: {per_alloc:.1f}); limit {LIMIT_BYTES_PER_TOKEN}: {'PASS' if res['pass'] else 'FAIL'}")
    return res


def phase_churn(hash_, workdir):
    life = CHURN_LIFETIME
    warmup = 3 * life
    measure = CHURN_TURNOVERS * life
    duration = warmup + measure
    pause_ms = max(0, int(CONNECTIONS * 1000 / CHURN_RATE))
    log(f"== phase 2: churn, lifetime {life} s, ~{CHURN_RATE}/s for {duration:.0f} s "
        f"(warm-up {warmup} s, then {CHURN_TURNOVERS:g} turnovers), store {CHURN_BUCKETS} buckets "
        f"x {GRANTS_PER_BUCKET}")
    envoy = Envoy(token_config(hash_, life, CHURN_BUCKETS), workdir, "churn")
    samples = []
    try:
        rss0, mem0 = settle(envoy)
        t0 = time.time()
        load = start_load(envoy.port, workdir, CONNECTIONS, duration, pause_ms=pause_ms)
        while time.time() - t0 < duration - 1:
            time.sleep(2)
            samples.append({
                "t": round(time.time() - t0, 1),
                "rss": envoy.rss(),
                "allocated": envoy.memory()["allocated"],
                "issued": envoy.issued(),
            })
            s = samples[-1]
            if len(samples) % 5 == 0:
                log(f"  t={s['t']:>5.0f}s  issued {s['issued']:>9,}  RSS {s['rss'] / 2**20:.1f} MiB  "
                    f"allocated {s['allocated'] / 2**20:.1f} MiB")
        answered, ok, _ = wait_load(load)
        stats = envoy.stats()
        keys = envoy.created_keys()
    finally:
        envoy.stop()
    after = [s for s in samples if s["t"] >= warmup]
    if len(after) < 4:
        raise SystemExit("churn: too few samples after warm-up")
    warm = after[0]
    second_half = [s for s in samples if s["t"] >= duration / 2]
    max_rss = max(s["rss"] for s in second_half)
    max_alloc = max(s["allocated"] for s in second_half)
    total = samples[-1]["issued"]
    rate = (after[-1]["issued"] - warm["issued"]) / (after[-1]["t"] - warm["t"])
    # Tokens issued in the last lifetime are the live set.
    tail = [s for s in samples if s["t"] >= samples[-1]["t"] - life]
    live = samples[-1]["issued"] - tail[0]["issued"]
    turnovers = (after[-1]["t"] - warm["t"]) / life
    growth = (max_rss - warm["rss"]) / warm["rss"]
    expected_keys = CHURN_BUCKETS + REVOCATION_SHARDS + 1  # + oauth2/key
    keys_ok = keys == [expected_keys]
    # Bytes one of these grants takes in its bucket (see src/store/bucket.rs): fixed part 44,
    # client u8-len, scope u16-len. Without reclamation the store would grow by at least
    # this much per token issued after warm-up.
    record = 44 + 1 + len(CLIENT_ID) + 2 + len("default")
    unreclaimed = (after[-1]["issued"] - warm["issued"]) * record
    alloc_growth = max_alloc - warm["allocated"]
    flat = growth <= FLAT_TOLERANCE and alloc_growth <= 0.25 * unreclaimed
    res = {
        "store": {"buckets": CHURN_BUCKETS, "grants_per_bucket": GRANTS_PER_BUCKET},
        "lifetime_seconds": life,
        "duration_seconds": duration,
        "warmup_seconds": warmup,
        "issued_total": total,
        "answers": answered,
        "answers_200": ok,
        "rate_per_second": round(rate),
        "live_set_at_end": live,
        "turnovers_after_warmup": round(turnovers, 1),
        "rss_empty_bytes": rss0,
        "rss_after_warmup_bytes": warm["rss"],
        "rss_max_last_half_bytes": max_rss,
        "rss_growth_last_half_vs_warm": round(growth, 4),
        "allocated_after_warmup_bytes": warm["allocated"],
        "allocated_max_last_half_bytes": max_alloc,
        "allocated_growth_last_half_bytes": alloc_growth,
        "unreclaimed_records_would_take_bytes": unreclaimed,
        "flat_tolerance": FLAT_TOLERANCE,
        "flat": flat,
        "created_shared_data_keys": keys,
        "expected_shared_data_keys": expected_keys,
        "keys_within_bound": keys_ok,
        "pass": flat and keys_ok and turnovers >= 5,
        "samples": samples,
        "stats": stats,
    }
    log(f"issued {total:,} at ~{rate:,.0f}/s, live set ~{live:,}, {turnovers:.1f} turnovers after warm-up")
    log(f"RSS after warm-up {warm['rss'] / 2**20:.1f} MiB, max of last half {max_rss / 2**20:.1f} MiB "
        f"({growth * 100:+.2f} %); allocated {warm['allocated'] / 2**20:.1f} -> max "
        f"{max_alloc / 2**20:.1f} MiB ({alloc_growth / 2**20:+.2f} MiB; without reclamation the "
        f"records issued after warm-up alone would take {unreclaimed / 2**20:.1f} MiB): "
        f"{'FLAT' if flat else 'GROWING'}")
    log(f"shared-data keys created at configuration: {keys} (bound {expected_keys}): "
        f"{'OK' if keys_ok else 'UNEXPECTED'}")
    return res


def revision():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "Cargo.toml"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+uncommitted changes in src" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("MEMORY_REVISION", "unknown")


def main():
    for p, what in [(ENVOY, "run `make setup`"), (WASM, "run `make build`")]:
        if not os.path.exists(p):
            raise SystemExit(f"{p} not found: {what}")
    hash_ = secret_hash()
    workdir = tempfile.mkdtemp(prefix="oauth2-memory-")
    out = {
        "command": "make bench-memory",
        "revision": revision(),
        "env": {k: v for k, v in os.environ.items() if k.startswith("MEMORY_")},
        "envoy": subprocess.run([ENVOY, "--version"], capture_output=True, text=True).stdout.strip(),
        "concurrency": 2,
        "load_generator": "wrk" if shutil.which("wrk") else "python http.client",
        "connections": CONNECTIONS,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    ok = True
    try:
        if "million" in PHASES:
            out["million"] = phase_million(hash_, workdir)
            ok &= out["million"]["pass"]
        if "churn" in PHASES:
            out["churn"] = phase_churn(hash_, workdir)
            ok &= out["churn"]["pass"]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out["pass"] = ok
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(out, f, indent=1)
    log(f"== {'PASS' if ok else 'FAIL'}; results in {os.path.relpath(RESULTS, ROOT)}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
