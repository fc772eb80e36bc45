#!/usr/bin/env python3
"""`make bench`: the guard and the token endpoint side by side with Envoy's
native filters and a standalone OAuth2 server, in one run.

Method
- One Envoy per measured run, `--concurrency 1`, pinned to core 0; the load
  generator `wrk` (-t1) pinned to core 1. Every route answers with a
  direct_response: no upstream.
- ROUNDS interleaved rounds (A B C ..., A B C ...). Each run: start Envoy, check
  the variant really authenticates (fail loudly otherwise), warm up WARMUP s,
  measure SECONDS s, stop Envoy. Every response must have the expected status
  (counted in wrk's Lua response() callback), or the run fails.
- Per run: requests/s, p50/p99 latency (wrk), Envoy CPU microseconds per
  request (utime+stime of /proc/<pid>/stat around the measured run), wrk CPU,
  CPU used by anything else on the machine. Per variant: medians over rounds,
  and the ratio to `none` taken round by round, then the median.
- etcd-* variants: the guard and /token with `store.backend: etcd`, on a 3-member
  etcd cluster this script starts (pinned to core 1 with wrk; data in a temp dir
  removed at exit), compared round by round with their shared-data twin. Each
  checks, through etcd's gateway and counters, that it really used etcd.
- attack-* variants (issue 17): guard-hit's load beside a flood of random client
  credentials (a second wrk, wrk/flood.lua) at /token (attack-cc) or at a
  direct_response 401 with no auth filter (attack-control, the floor attack-cc is
  compared with round by round); the real client's /token beside wrong secrets for
  it from 127.0.0.2 (attack-lockout, lockout_attacker.py). The attack shares core 1
  with wrk.

Environment: BENCH_SECONDS (5), BENCH_WARMUP (1), BENCH_ROUNDS (4),
BENCH_CONNECTIONS (16), BENCH_VARIANTS (comma list; default all),
BENCH_OUT (bench/results; latest.json, latest.svg, latest.md),
ENVOY_BIN (.venv/bin/envoy), ETCD_BIN (etcd), BENCH_SKIP_PEER=1 (no oidc-provider),
BENCH_BASELINE_WASM (a .wasm of another commit: every selected guard/token/attack
variant also runs with it, as `<variant>@base`, interleaved: an A/B in one run).

Python 3.11 standard library only. It installs `wrk` with apt-get and the peer
server's npm packages (bench/peer) when they are missing.
"""

from __future__ import annotations

import atexit
import base64
import dataclasses
import hashlib
import hmac
import http.client
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TEMPLATES = BENCH / "templates"
RUN_DIR = BENCH / ".run"
PEER_DIR = BENCH / "peer"
WRK_SCRIPT = BENCH / "wrk" / "bench.lua"
FLOOD_SCRIPT = BENCH / "wrk" / "flood.lua"
LOCKOUT_ATTACKER = BENCH / "lockout_attacker.py"
MAIN_WASM = ROOT / "target/wasm32-wasip1/release/envoy_oauth2.wasm"
NOOP_WASM = BENCH / "noop-filter/target/wasm32-wasip1/release/bench_noop_filter.wasm"

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "1"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
SEEDS = CONNECTIONS + 4   # refresh tokens per wrk run
OUT_DIR = Path(os.environ.get("BENCH_OUT", str(BENCH / "results")))
ENVOY_BIN = Path(os.environ.get("ENVOY_BIN", str(ROOT / ".venv/bin/envoy")))
SKIP_PEER = os.environ.get("BENCH_SKIP_PEER", "") not in ("", "0")
BASELINE_WASM = os.environ.get("BENCH_BASELINE_WASM", "")
ENVOY_CORE, LOAD_CORE = "0", "1"
ETCD_BIN = os.environ.get("ETCD_BIN", "etcd")
ETCD_MEMBERS = 3
# The etcd-* variants' store, a 3-member etcd cluster, runs on the load generator's core,
# never on Envoy's: what the bench measures is the pinned Envoy (its req/s and its CPU per
# request from /proc/<pid>/stat), and etcd on core 0 would take its CPU from Envoy and count
# as Envoy's slowness (in a deployment etcd runs on other machines). The price: wrk and the
# three members share core 1, so the etcd section prints etcd's CPU per request next to wrk's
# CPU%: a variant that core 1 limits shows there (wrk + etcd near a whole core).
ETCD_CORE = LOAD_CORE
# Other work on a shared machine (builds, tests) competes for the two cores: the measured
# server and wrk run at nice -20 (root only) so that the CPU scheduler gives them their
# core; the rest of the machine gets what they leave.
NICE = os.environ.get("BENCH_NICE", "-20")


def pinned(core: str, args: list[str]) -> list[str]:
    pre = ["nice", "-n", NICE] if NICE and os.geteuid() == 0 else []
    return pre + ["taskset", "-c", core] + args


def boost(p: subprocess.Popen) -> None:
    """With autogroups (CONFIG_SCHED_AUTOGROUP), nice only weighs within a session: each
    process started here has its own session, so give that session's group the same nice."""
    if NICE and os.geteuid() == 0:
        try:
            Path(f"/proc/{p.pid}/autogroup").write_text(NICE)
        except OSError:
            pass
HASH_ITERATIONS = 10000
# attack-* variants (issue 17): the flood of random client credentials (a second wrk,
# flood.lua) and the lockout attacker (lockout_attacker.py, bound to its own loopback
# address) run on core 1 with the measured wrk: on 2 cores there is no other place for them
# that would not take Envoy's CPU.
FLOOD_CONNECTIONS = 8
LOCKOUT_SOURCE, LOCKOUT_CONNECTIONS = "127.0.0.2", 4
EDGE = "use_remote_address: true"   # the HCM option that makes the peer the client address
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Demo credentials of the bench (plain values only here; Envoy gets PBKDF2 hashes).
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-client-secret"
USERNAME, PASSWORD = "bench-user", "bench-user-password"
PEER_CLIENT_ID, PEER_CLIENT_SECRET = "bench-peer-client", "bench-peer-secret"
JWT_ISSUER, JWT_AUDIENCE = "https://issuer.bench.local", "bench-api"
API_PATH = "/api/resource"


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------
# Processes: every process started here is tracked and stopped by its pid.
# ---------------------------------------------------------------------------------

STARTED: list[subprocess.Popen] = []


def spawn(args: list[str], logfile: Path, cwd: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    fh = open(logfile, "wb")
    p = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         cwd=cwd, start_new_session=True, env=env)
    fh.close()
    STARTED.append(p)
    boost(p)
    return p


def stop(p: subprocess.Popen, timeout: float = 5.0) -> None:
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=timeout)
        except ProcessLookupError:
            pass


def stop_all() -> None:
    for p in STARTED:
        stop(p)


def _on_signal(signum, _frame):
    stop_all()
    sys.stderr.write(f"\nbench: interrupted by signal {signum}; stopped every process it started\n")
    sys.exit(128 + signum)


atexit.register(stop_all)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def run_checked(args: list[str], **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise BenchError(f"command failed ({r.returncode}): {' '.join(args)}\n{r.stdout}{r.stderr}")
    return r


# ---------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------

def ensure_wrk() -> str:
    if shutil.which("wrk") is None:
        log("setup: installing wrk (apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        run_checked(["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", "wrk"], env=env)
    r = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return (r.stdout + r.stderr).splitlines()[0].strip()


def ensure_peer() -> tuple[str | None, str | None]:
    """(versions, None) when oidc-provider is ready, else (None, why not)."""
    if SKIP_PEER:
        return None, "skipped (BENCH_SKIP_PEER=1)"
    if shutil.which("node") is None or shutil.which("npm") is None:
        log("setup: installing nodejs and npm (apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        r = subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", "nodejs", "npm"],
                           capture_output=True, text=True, env=env)
        if r.returncode != 0:
            return None, f"node/npm could not be installed with apt-get: {r.stderr.strip()[-300:]}"
    pkg = PEER_DIR / "node_modules/oidc-provider/package.json"
    lock = PEER_DIR / "package-lock.json"
    if not pkg.exists() or lock.stat().st_mtime > pkg.stat().st_mtime:
        log("setup: npm ci (bench/peer: oidc-provider)")
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=PEER_DIR, capture_output=True, text=True)
        if r.returncode != 0 or not pkg.exists():
            return None, f"`npm ci` in bench/peer failed: {(r.stdout + r.stderr).strip()[-500:]}"
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    ver = json.loads(pkg.read_text())["version"]
    return f"oidc-provider {ver} on node {node}", None


def hash_secret(secret: str) -> str:
    args = ["--iterations", str(HASH_ITERATIONS)]
    r = subprocess.run(["cargo", "run", "--release", "--quiet", "--bin", "hash-secret", "--", *args],
                       input=secret + "\n", cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        built = ROOT / "target/release/hash-secret"
        if not built.exists():
            raise BenchError(f"`cargo run --bin hash-secret` failed:\n{r.stderr[-2000:]}")
        log(f"warning: `cargo run --bin hash-secret` failed (does the tree compile?); using {built}")
        r = run_checked([str(built), *args], input=secret + "\n")
    h = r.stdout.strip().splitlines()[-1]
    if not h.startswith("$pbkdf2-sha256$"):
        raise BenchError(f"hash-secret printed {h!r}")
    return h


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt_claims() -> dict:
    now = int(time.time())
    return {"iss": JWT_ISSUER, "sub": "bench-user", "aud": JWT_AUDIENCE,
            "iat": now, "exp": now + 7 * 86400, "scope": "default"}


def jwt_hs256() -> tuple[str, str]:
    """(JWKS, token): HS256 with the standard library."""
    key = secrets.token_bytes(32)
    jwks = {"keys": [{"kty": "oct", "kid": "bench-hs", "alg": "HS256", "k": b64url(key)}]}
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "bench-hs"}).encode())
    body = b64url(json.dumps(jwt_claims()).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return json.dumps(jwks, separators=(",", ":")), f"{head}.{body}.{b64url(sig)}"


def _der_ints(der: bytes) -> list[int]:
    """The INTEGERs of a DER SEQUENCE (an ECDSA signature)."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = []
    while i < len(der):
        assert der[i] == 0x02
        n = der[i + 1]
        out.append(int.from_bytes(der[i + 2:i + 2 + n], "big"))
        i += 2 + n
    return out


def jwt_es256() -> tuple[str, str]:
    """(JWKS, token): ES256 with the openssl CLI (P-256 key, DER signature -> r||s)."""
    d = RUN_DIR / "keys"
    d.mkdir(parents=True, exist_ok=True)
    key = d / "es256.pem"
    run_checked(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)])
    spki = subprocess.run(["openssl", "ec", "-in", str(key), "-pubout", "-outform", "DER"],
                          capture_output=True, check=True).stdout
    point = spki[-65:]
    if point[0] != 4:
        raise BenchError("unexpected EC public key encoding from openssl")
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "bench-es", "alg": "ES256",
                      "x": b64url(point[1:33]), "y": b64url(point[33:])}]}
    head = b64url(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "bench-es"}).encode())
    body = b64url(json.dumps(jwt_claims()).encode())
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key)],
                         input=f"{head}.{body}".encode(), capture_output=True, check=True).stdout
    r, s = _der_ints(der)
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return json.dumps(jwks, separators=(",", ":")), f"{head}.{body}.{b64url(sig)}"


def tamper(token: str) -> str:
    """Same shape, one character of the signature / secret part changed."""
    i = len(token) - 5
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]


# ---------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------

def template(name: str) -> str:
    text = (TEMPLATES / name).read_text()
    # Drop the leading comment block of snippets (kept in the files for readers).
    lines = text.splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "\n".join(lines) + "\n"


def fill(text: str, key: str, value: str) -> str:
    """Replaces {{KEY}}; lines 2.. of a multi-line value get the placeholder's indent."""
    ph = "{{" + key + "}}"
    out = []
    rest = text
    while (pos := rest.find(ph)) >= 0:
        before = rest[:pos]
        out.append(before)
        line_start = "".join(out).rfind("\n") + 1
        prefix = "".join(out)[line_start:]
        indent = prefix if prefix.strip(" ") == "" else ""
        lines = value.rstrip("\n").split("\n")
        out.append(lines[0])
        for ln in lines[1:]:
            out.append("\n" + (indent + ln if ln else ""))
        rest = rest[pos + len(ph):]
    out.append(rest)
    return "".join(out)


def fill_all(text: str, **kv: str) -> str:
    for k, v in kv.items():
        text = fill(text, k, v)
    left = re.findall(r"\{\{[A-Z0-9_]+\}\}", text)
    if left:
        raise BenchError(f"unfilled placeholders: {left}")
    return text


# ---------------------------------------------------------------------------------
# HTTP (checks and token issuance; plain http.client, one connection per request)
# ---------------------------------------------------------------------------------

@dataclass
class Resp:
    status: int
    body: str


def req(port: int, method: str, path: str, headers: dict | None = None,
         body: str | None = None, source: str | None = None) -> Resp:
    """`source`: the local address to connect from (attack-lockout: 127.0.0.2)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                   source_address=(source, 0) if source else None)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return Resp(r.status, r.read().decode("utf-8", "replace"))
    finally:
        c.close()


def basic(cid: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def post_token(port: int, body: str, cid: str = CLIENT_ID, secret: str | None = CLIENT_SECRET,
               source: str | None = None) -> Resp:
    h = dict(FORM)
    if secret is not None:
        h["Authorization"] = basic(cid, secret)
    return req(port, "POST", "/token", h, body, source)


def token_field(r: Resp, name: str) -> str:
    try:
        v = json.loads(r.body)[name]
    except (ValueError, KeyError, TypeError):
        raise BenchError(f"no `{name}` in the token response: {r.status} {r.body[:300]}")
    return v


# ---------------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------------

@dataclass
class Target:
    port: int
    admin: int | None
    ctx: dict = field(default_factory=dict)


@dataclass
class Variant:
    name: str
    group: str                       # baseline, wasm, jwt, guard, token, peer
    what: str
    expect: int
    method: str = "GET"
    path: str = API_PATH
    filters: Callable[[], str] | None = None        # HTTP_FILTERS for the bench listener
    extra: Callable[[], str] | None = None          # EXTRA_LISTENERS
    headers: Callable[[Target], dict] = lambda t: {}
    body: Callable[[Target], str | None] = lambda t: None
    refresh: bool = False
    prepare: Callable[[Target], None] = lambda t: None
    checks: Callable[[Target], list[tuple[str, Resp, int]]] = lambda t: []
    post_check: Callable[[Target, int, dict], str | None] | None = None
    peer: bool = False
    experiment: bool = False                        # only when named in BENCH_VARIANTS
    etcd: bool = False                              # store backend etcd (the bench's cluster)
    vs: str | None = None                           # the twin it is compared to, round by round
                                                    # (etcd-*: its shared-data variant; attack-cc: attack-control)
    hcm: str = ""                                   # HCM_OPTIONS of the bench listener
    attack: str | None = None                       # "cc", "control", "lockout": runs beside the measured wrk
    tolerate: bool = False                          # other statuses are counted (success rate), not a failure


class Material:
    """Keys, tokens and hashed credentials shared by all runs."""

    def __init__(self) -> None:
        self.lua_token = secrets.token_urlsafe(48)      # 64 characters, like ours
        self.hs_jwks, self.hs_token = jwt_hs256()
        self.es_jwks, self.es_token = jwt_es256()
        # The same P-256 key (SEC1 PEM, kid bench-es) signs this project's JWTs in the
        # *-jwt-* variants, so jwt_authn's local JWKS above also verifies them.
        self.es_pem = (RUN_DIR / "keys" / "es256.pem").read_text()
        log(f"setup: hashing the bench credentials (PBKDF2-SHA256, {HASH_ITERATIONS} iterations)")
        self.client_hash = hash_secret(CLIENT_SECRET)
        self.user_hash = hash_secret(PASSWORD)
        self.main_wasm = RUN_DIR / "envoy_oauth2.wasm"
        self.noop_wasm = RUN_DIR / "bench_noop_filter.wasm"
        self.base_wasm = RUN_DIR / "baseline.wasm"
        self.wasm = self.main_wasm          # what the next Envoy config names
        self.etcd_prefix = ""               # etcd-*: the key prefix of the next Envoy's run
        # Snapshots: a rebuild during the bench must not change what is measured.
        pairs = [(MAIN_WASM, self.main_wasm), (NOOP_WASM, self.noop_wasm)]
        if BASELINE_WASM:
            pairs.append((Path(BASELINE_WASM), self.base_wasm))
        for src, dst in pairs:
            if not src.exists():
                raise BenchError(f"{src} not found: `make bench` builds it")
            shutil.copyfile(src, dst)

    def store(self, guard: bool) -> dict:
        """The etcd `store` section (as in envoy/fleet.yaml; the guard also polls the
        revocation log), with this run's key prefix."""
        st = {"backend": "etcd", "cluster": "etcd", "prefix": self.etcd_prefix, "timeout_ms": 1000}
        if guard:
            st.update({"revocation_poll_ms": 50, "staleness_ms": 1000})
        return st

    def token_config(self, jwt: bool = False, etcd: bool = False) -> str:
        cfg = {
            "issuer": JWT_ISSUER,
            "realm": "bench",
            "clients": [{"client_id": CLIENT_ID, "secret_hash": self.client_hash,
                         "grant_types": ["client_credentials", "password", "refresh_token"],
                         "scopes": ["default"], "default_scope": "default"}],
            "users": [{"username": USERNAME, "password_hash": self.user_hash, "scopes": ["default"]}],
        }
        if etcd:
            cfg["store"] = self.store(guard=False)
        if jwt:
            cfg["access_token_format"] = "jwt"
            cfg["jwt"] = {"audience": JWT_AUDIENCE,
                          "keys": [{"kid": "bench-es", "pem": self.es_pem}]}
        return json.dumps(cfg, indent=2)

    def token_filter(self, jwt: bool = False, etcd: bool = False) -> str:
        return fill_all(template("token.yaml"), WASM=str(self.wasm), TOKEN_CONFIG=self.token_config(jwt, etcd))

    def guard_filter(self, cache: dict | None, jwt: bool = False, etcd: bool = False) -> str:
        cfg = {"realm": "bench", "rules": [{"prefix": "/api/", "scopes": []}],
               "default_action": "deny"}
        if cache is not None:
            cfg["cache"] = cache
        if etcd:
            cfg["store"] = self.store(guard=True)
        if jwt:
            cfg["jwt"] = {"issuer": JWT_ISSUER, "audiences": [JWT_AUDIENCE],
                          "keys": [{"jwk": json.loads(self.es_jwks)["keys"][0]}]}
        return fill_all(template("guard.yaml"), WASM=str(self.wasm),
                        GUARD_CONFIG=json.dumps(cfg, indent=2))

    def lua_filter(self) -> str:
        return fill_all(template("lua.yaml"), TOKEN=self.lua_token, EXPIRES=str(int(time.time()) + 86400))

    def issuer_listener(self, jwt: bool = False, etcd: bool = False) -> str:
        return fill_all(template("issuer_listener.yaml"), TOKEN_FILTER=self.token_filter(jwt, etcd))

    def jwt_filter(self, alg: str, cache: bool) -> str:
        jwks = self.hs_jwks if alg == "hs256" else self.es_jwks
        return fill_all(template("jwt_authn.yaml"), ISSUER=JWT_ISSUER, AUDIENCE=JWT_AUDIENCE, JWKS=jwks,
                        CACHE="jwt_cache_config: { jwt_cache_size: 1000 }" if cache else "")


def envoy_stats(t: Target, regex: str) -> dict[str, int]:
    r = req(t.admin, "GET", "/stats?format=json&filter=" + urllib.parse.quote(regex))
    out = {}
    for s in json.loads(r.body).get("stats", []):
        if "name" in s and "value" in s:
            out[s["name"]] = int(s["value"])
    return out


def guard_stats(t: Target) -> dict[str, int]:
    time.sleep(0.15)   # the filters write their counters to Envoy on a 50 ms tick
    return envoy_stats(t, "guard")


def stat_sum(stats: dict[str, int], suffix: str) -> int | None:
    vals = [v for k, v in stats.items() if k.endswith(suffix)]
    return sum(vals) if vals else None


def make_variants(m: Material) -> list[Variant]:
    api = API_PATH
    V: list[Variant] = []

    def plain_checks(t: Target):
        return [("GET /api/ (no filter: 200)", req(t.port, "GET", api), 200)]

    V.append(Variant("none", "baseline", "no auth filter: the ceiling", 200, checks=plain_checks))
    V.append(Variant("noop-wasm", "wasm", "proxy-wasm filter that does nothing: the Wasm floor", 200,
                     filters=lambda: fill_all(template("noop.yaml"), NOOP_WASM=str(m.noop_wasm), ROOT_ID="noop", OPS=""),
                     checks=plain_checks))

    def hostcalls_check(t: Target, measured: int, before: dict[str, int]) -> str | None:
        r = req(t.admin, "GET", "/stats?format=json&filter=bench.hostcalls.a")
        n = sum(int(s.get("value", 0)) for s in json.loads(r.body).get("stats", []) if "name" in s)
        if n < measured:
            raise BenchError(f"wasm-hostcalls: its counter says {n} calls for {measured} requests")
        return None

    V.append(Variant("wasm-hostcalls", "wasm",
                     "no logic, the guard-hit's host calls: 3 header reads, 1 shared-data read, "
                     "2 counters, 4 header writes", 200,
                     filters=lambda: fill_all(template("noop.yaml"), NOOP_WASM=str(m.noop_wasm),
                                              ROOT_ID="hostcalls", OPS=""),
                     headers=lambda t: {"Authorization": "Bearer " + "x" * 64},
                     checks=plain_checks, post_check=hostcalls_check))

    # Breakdown experiments (not in the default set, name them in BENCH_VARIANTS): the
    # hostcalls root doing one kind of host call only; the cost of a call is the
    # difference to noop-wasm.
    for ops, what in (("read", "3 single header reads"), ("map", "one get_http_request_headers"),
                      ("shared", "1 shared-data read"), ("metrics", "2 counter increments"),
                      ("clock", "1 clock read"), ("write", "4 header replaces"), ("add", "4 header adds")):
        V.append(Variant(f"hc-{ops}", "wasm", f"diagnostic: no logic, {what}", 200, experiment=True,
                         filters=lambda ops=ops: fill_all(template("noop.yaml"), NOOP_WASM=str(m.noop_wasm),
                                                          ROOT_ID="hostcalls", OPS=ops),
                         headers=lambda t: {"Authorization": "Bearer " + "x" * 64},
                         checks=plain_checks))

    for alg in ("hs256", "es256"):
        for cache in (True, False):
            token = m.hs_token if alg == "hs256" else m.es_token

            def jchecks(t: Target, token=token):
                bearer = {"Authorization": f"Bearer {token}"}
                return [
                    ("no token -> 401", req(t.port, "GET", api), 401),
                    ("valid JWT -> 200", req(t.port, "GET", api, bearer), 200),
                    ("bad signature -> 401", req(t.port, "GET", api, {"Authorization": f"Bearer {tamper(token)}"}), 401),
                    ("garbage token -> 401", req(t.port, "GET", api, {"Authorization": "Bearer not-a-jwt"}), 401),
                ]

            V.append(Variant(
                f"jwt-{alg}-{'cache' if cache else 'nocache'}", "jwt",
                f"jwt_authn, {alg.upper()}, local JWKS, {'with' if cache else 'without'} jwt_cache_config", 200,
                filters=lambda alg=alg, cache=cache: m.jwt_filter(alg, cache),
                headers=lambda t, token=token: {"Authorization": f"Bearer {token}"},
                checks=jchecks))

    def guard_prepare(t: Target, jwt: bool = False):
        r = post_token(t.ctx["issuer"], "grant_type=client_credentials")
        if r.status != 200:
            raise BenchError(f"token issuance for the guard failed: {r.status} {r.body[:300]}")
        t.ctx["token"] = token_field(r, "access_token")
        if jwt != (t.ctx["token"].count(".") == 2):
            raise BenchError(f"expected {'a JWT' if jwt else 'an opaque token'}, got {t.ctx['token'][:40]}…")

    jwt_prepare = lambda t: guard_prepare(t, jwt=True)

    def gchecks(t: Target):
        tok = t.ctx["token"]
        return [
            ("no token -> 401", req(t.port, "GET", api), 401),
            ("valid token -> 200", req(t.port, "GET", api, {"Authorization": f"Bearer {tok}"}), 200),
            ("bad token -> 401", req(t.port, "GET", api, {"Authorization": f"Bearer {tamper(tok)}"}), 401),
            ("garbage token -> 401", req(t.port, "GET", api, {"Authorization": "Bearer not-a-token"}), 401),
        ]

    def guard_cache_check(want: str):
        """Envoy's guard cache counters over the measured run (deltas)."""
        def check(t: Target, measured: int, before: dict[str, int]) -> str | None:
            after = guard_stats(t)
            if stat_sum(after, "guard.cache.hit") is None and stat_sum(after, "guard.cache.miss") is None:
                if want == "none":
                    return "guard cache counters: none defined (the cache was never consulted)"
                raise BenchError(f"{want}: no guard cache counters found in Envoy's stats")
            hit = (stat_sum(after, "guard.cache.hit") or 0) - (stat_sum(before, "guard.cache.hit") or 0)
            miss = (stat_sum(after, "guard.cache.miss") or 0) - (stat_sum(before, "guard.cache.miss") or 0)
            if want == "hit" and (hit < measured or miss > 0):
                raise BenchError(f"guard-hit: expected cache hits only, Envoy counted hit={hit} miss={miss} "
                                 f"for {measured} measured requests")
            if want == "miss" and (hit > 0 or miss < measured):
                raise BenchError(f"guard-miss: expected cache misses only, Envoy counted hit={hit} "
                                 f"miss={miss} for {measured} measured requests")
            if want == "none" and (hit > 0 or miss > 0):
                raise BenchError(f"guard-401: the guard consulted its cache (hit={hit} miss={miss})")
            return f"guard cache over the measured run: hit={hit} miss={miss}"
        return check

    bearer = lambda t: {"Authorization": f"Bearer {t.ctx['token']}"}
    V.append(Variant("guard-hit", "guard", "bearer guard, token in the per-worker validation cache", 200,
                     filters=lambda: m.guard_filter(None), extra=m.issuer_listener, headers=bearer,
                     prepare=guard_prepare, checks=gchecks, post_check=guard_cache_check("hit")))
    V.append(Variant("guard-miss", "guard", "bearer guard, cache disabled (max_entries 0): store lookup", 200,
                     filters=lambda: m.guard_filter({"max_entries": 0}), extra=m.issuer_listener,
                     headers=bearer, prepare=guard_prepare, checks=gchecks,
                     post_check=guard_cache_check("miss")))
    def jwt_miss_check(t: Target, measured: int, before: dict[str, int]) -> str | None:
        note = guard_cache_check("miss")(t, measured, before)
        after = guard_stats(t)
        n = (stat_sum(after, "guard.jwt_verified") or 0) - (stat_sum(before, "guard.jwt_verified") or 0)
        if n < measured:
            raise BenchError(f"guard-jwt-miss: {n} signature checks for {measured} measured requests")
        return f"{note}; signature checks: {n}"

    V.append(Variant("guard-jwt-hit", "guard", "bearer guard, JWT access token in the validation cache", 200,
                     filters=lambda: m.guard_filter(None, jwt=True), extra=lambda: m.issuer_listener(jwt=True),
                     headers=bearer, prepare=jwt_prepare, checks=gchecks, post_check=guard_cache_check("hit")))
    V.append(Variant("guard-jwt-miss", "guard",
                     "bearer guard, JWT, cache disabled: ES256 signature check + store lookup every time", 200,
                     filters=lambda: m.guard_filter({"max_entries": 0}, jwt=True),
                     extra=lambda: m.issuer_listener(jwt=True), headers=bearer, prepare=jwt_prepare,
                     checks=gchecks, post_check=jwt_miss_check))
    V.append(Variant("jwt-es256-ours", "jwt",
                     "jwt_authn (with its cache) validating this project's JWTs (no revocation check)", 200,
                     filters=lambda: m.jwt_filter("es256", True), extra=lambda: m.issuer_listener(jwt=True),
                     headers=bearer, prepare=jwt_prepare, checks=gchecks))
    V.append(Variant("guard-401", "guard", "bearer guard, no token: local 401", 401,
                     filters=lambda: m.guard_filter(None), extra=m.issuer_listener,
                     prepare=guard_prepare, checks=gchecks, post_check=guard_cache_check("none")))

    def lua_checks(t: Target):
        tok = m.lua_token
        return [
            ("no token -> 401", req(t.port, "GET", api), 401),
            ("valid token -> 200", req(t.port, "GET", api, {"Authorization": f"Bearer {tok}"}), 200),
            ("bad token -> 401", req(t.port, "GET", api, {"Authorization": f"Bearer {tamper(tok)}"}), 401),
        ]

    V.append(Variant("lua", "lua", "Envoy's Lua filter: bearer token looked up in an in-script table, "
                     "the same identity headers set (what an operator would write by hand)", 200,
                     filters=m.lua_filter, headers=lambda t: {"Authorization": f"Bearer {m.lua_token}"},
                     checks=lua_checks))

    auth = lambda t: {**FORM, "Authorization": basic(CLIENT_ID, CLIENT_SECRET)}
    password_body = f"grant_type=password&username={USERNAME}&password={PASSWORD}"

    def cc_checks(t: Target):
        t0 = time.perf_counter()
        first = post_token(t.port, "grant_type=client_credentials")
        t.ctx["first_ms"] = (time.perf_counter() - t0) * 1e3
        token_field(first, "access_token")
        later, times = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            later.append(post_token(t.port, "grant_type=client_credentials"))
            times.append((time.perf_counter() - t0) * 1e3)
        t.ctx["second_ms"] = statistics.median(times)
        return [
            ("client_credentials (first: PBKDF2) -> 200", first, 200),
            *[("client_credentials (cached credential) -> 200", r, 200) for r in later],
            ("no client authentication -> 401", post_token(t.port, "grant_type=client_credentials", secret=None), 401),
            ("bad client secret -> 401", post_token(t.port, "grant_type=client_credentials", secret="wrong"), 401),
        ]

    def pw_checks(t: Target):
        ok = post_token(t.port, password_body)
        token_field(ok, "refresh_token")
        return [
            ("password grant -> 200", ok, 200),
            ("bad client secret -> 401", post_token(t.port, password_body, secret="wrong"), 401),
            ("wrong password -> 400", post_token(t.port, f"grant_type=password&username={USERNAME}&password=nope"), 400),
        ]

    def refresh_prepare(t: Target):
        # Seeds: one refresh token per connection (+ spares: wrk calls request() once more to
        # verify the script), for the warm-up and the measured run.
        seeds = []
        for _ in range(2 * SEEDS + 1):
            r = post_token(t.port, password_body)
            if r.status != 200:
                raise BenchError(f"password grant for refresh seeds failed: {r.status} {r.body[:300]}")
            seeds.append(token_field(r, "refresh_token"))
        t.ctx["check_seed"] = seeds.pop()
        t.ctx["seeds"] = seeds

    def rf_checks(t: Target):
        rt = t.ctx["check_seed"]
        ok = post_token(t.port, f"grant_type=refresh_token&refresh_token={rt}")
        token_field(ok, "refresh_token")
        return [
            ("refresh -> 200 with a new refresh token", ok, 200),
            ("replayed (rotated) refresh token -> 400", post_token(t.port, f"grant_type=refresh_token&refresh_token={rt}"), 400),
            ("bogus refresh token -> 400", post_token(t.port, f"grant_type=refresh_token&refresh_token={tamper(rt)}"), 400),
            ("no client authentication -> 401", post_token(t.port, f"grant_type=refresh_token&refresh_token={rt}", secret=None), 401),
        ]

    def reply_checks(t: Target):
        return [("POST /token (fixed local answer) -> 200", post_token(t.port, "grant_type=client_credentials"), 200)]

    V.append(Variant("wasm-reply", "wasm",
                     "no logic: buffer the POST body, answer a fixed JSON 200 locally (the /token floor)", 200,
                     method="POST", path="/token",
                     filters=lambda: fill_all(template("noop.yaml"), NOOP_WASM=str(m.noop_wasm), ROOT_ID="reply",
                                              OPS=""),
                     headers=auth, body=lambda t: "grant_type=client_credentials", checks=reply_checks))
    V.append(Variant("token-cc", "token", "POST /token, client_credentials (Basic auth)", 200,
                     method="POST", path="/token", filters=m.token_filter, headers=auth,
                     body=lambda t: "grant_type=client_credentials", checks=cc_checks))
    def jwt_cc_checks(t: Target):
        checks = cc_checks(t)
        tok = token_field(checks[0][1], "access_token")
        if tok.count(".") != 2:
            raise BenchError(f"token-jwt: expected a JWT, got {tok[:40]}…")
        return checks

    V.append(Variant("token-jwt", "token", "POST /token, client_credentials, JWT access token (ES256 signing)", 200,
                     method="POST", path="/token", filters=lambda: m.token_filter(jwt=True), headers=auth,
                     body=lambda t: "grant_type=client_credentials", checks=jwt_cc_checks))
    V.append(Variant("token-password", "token", "POST /token, password grant (access + refresh token)", 200,
                     method="POST", path="/token", filters=m.token_filter, headers=auth,
                     body=lambda t: password_body, checks=pw_checks))
    V.append(Variant("token-refresh", "token",
                     "POST /token, refresh_token grant, each with the token the previous answer returned", 200,
                     method="POST", path="/token", filters=m.token_filter, headers=auth, refresh=True,
                     prepare=refresh_prepare, checks=rf_checks))

    # etcd-*: the same as guard-hit, guard-miss, token-cc and token-refresh with the store on
    # the bench's etcd cluster (`store.backend: etcd`, a key prefix per run). Each fails
    # loudly unless it really used etcd: its grants are counted in etcd through the gateway,
    # and over the measured run Envoy's callouts to the `etcd` cluster and etcd's own counters
    # (requests served, revision) must add up to the requests measured.
    def etcd_grants(t: Target, want: int, what: str) -> None:
        keys, grants = ETCD[0].grants(t.ctx["etcd_prefix"])
        if grants != want:
            raise BenchError(f"{what}: etcd holds {grants} grants under {t.ctx['etcd_prefix']} "
                             f"({keys} bucket keys), expected {want}: the store is not etcd?")

    def etcd_guard_prepare(t: Target):
        guard_prepare(t)
        etcd_grants(t, 1, "etcd guard: the token issued for the run")

    def etcd_cc_checks(t: Target):
        checks = cc_checks(t)
        etcd_grants(t, sum(1 for _, r, want in checks if want == 200 and r.status == 200),
                    "etcd-token-cc: the tokens issued by the checks")
        return checks

    def etcd_refresh_prepare(t: Target):
        refresh_prepare(t)
        # 2 * SEEDS + 1 password grants: the seeds (and the checks' seed) are grants in etcd.
        etcd_grants(t, 2 * SEEDS + 1, "etcd-token-refresh: the password grants of the seeds")

    def etcd_check(kind: str, guard_want: str | None = None):
        """Over the measured run: every callout to etcd got an answer, none 5xx, and per kind
        `guard-hit`: cache hits only, the revocation log polled (callouts > 0, none failed);
        `guard-miss`: a callout and an etcd Range per request; `token-*`: an etcd write
        (revision) and Txn per request; `token-cc`: also every token issued is a grant in etcd."""
        def check(t: Target, measured: int, before: dict[str, int]) -> str | None:
            notes = [guard_cache_check(guard_want)(t, measured, before)] if guard_want else []
            d = t.ctx["etcd"]
            name = t.ctx.get("variant", kind)
            if d["errors"]:
                raise BenchError(f"{name}: callouts to etcd failed over the measured run: {d['errors']} "
                                 f"(Envoy's cluster.etcd.* counters)")
            if kind == "guard-hit":
                after = guard_stats(t)
                failed = ((stat_sum(after, "guard.revocation_poll_failed") or 0)
                          - (stat_sum(before, "guard.revocation_poll_failed") or 0))
                if d["callouts"] == 0 or d["range"] == 0 or failed:
                    raise BenchError(f"{name}: the guard did not poll etcd's revocation log over the run "
                                     f"({d['callouts']} callouts, etcd served {d['range']} ranges, "
                                     f"{failed} polls failed)")
            elif kind == "guard-miss":
                if d["callouts"] < measured or d["range"] < measured:
                    raise BenchError(f"{name}: {d['callouts']} callouts to etcd and {d['range']} ranges "
                                     f"served by etcd for {measured} measured requests")
            else:
                if d["revisions"] < measured or d["txn"] < measured:
                    raise BenchError(f"{name}: etcd committed {d['revisions']} writes ({d['txn']} txns) "
                                     f"for {measured} measured requests")
                if kind == "token-cc":
                    keys, grants = ETCD[0].grants(t.ctx["etcd_prefix"])
                    if grants < measured:
                        raise BenchError(f"{name}: {grants} grants in etcd after {measured} measured issuances")
                    notes.append(f"{grants} grants in {keys} bucket keys in etcd")
            notes.append(f"etcd over the measured run: {d['callouts']} callouts ({d['answers_4xx']} answered "
                         f"4xx), {d['range']} ranges, {d['txn']} txns, {d['lease']} lease grants, "
                         f"{d['revisions']} revisions")
            return "; ".join(notes)
        return check

    V.append(Variant("etcd-guard-hit", "guard", "bearer guard, token in the validation cache, store etcd "
                     "(revocation log polled every 50 ms)", 200, etcd=True, vs="guard-hit",
                     filters=lambda: m.guard_filter(None, etcd=True), extra=lambda: m.issuer_listener(etcd=True),
                     headers=bearer, prepare=etcd_guard_prepare, checks=gchecks,
                     post_check=etcd_check("guard-hit", "hit")))
    V.append(Variant("etcd-guard-miss", "guard", "bearer guard, cache disabled, store etcd: an etcd read "
                     "(callout) per request", 200, etcd=True, vs="guard-miss",
                     filters=lambda: m.guard_filter({"max_entries": 0}, etcd=True),
                     extra=lambda: m.issuer_listener(etcd=True), headers=bearer, prepare=etcd_guard_prepare,
                     checks=gchecks, post_check=etcd_check("guard-miss", "miss")))
    V.append(Variant("etcd-token-cc", "token", "POST /token, client_credentials, store etcd", 200,
                     etcd=True, vs="token-cc", method="POST", path="/token",
                     filters=lambda: m.token_filter(etcd=True), headers=auth,
                     body=lambda t: "grant_type=client_credentials", checks=etcd_cc_checks,
                     post_check=etcd_check("token-cc")))
    V.append(Variant("etcd-token-refresh", "token", "POST /token, refresh_token grant (rotation), store etcd",
                     200, etcd=True, vs="token-refresh", method="POST", path="/token",
                     filters=lambda: m.token_filter(etcd=True), headers=auth, refresh=True,
                     prepare=etcd_refresh_prepare, checks=rf_checks, post_check=etcd_check("token-refresh")))

    # attack-*: issue 17's "Measured". attack-cc and attack-control run the same Envoy (the
    # guard on the measured listener, the token filter on `issuer`, a `floor` (no auth filter)
    # listener that answers 401 itself) and the same guard-hit load; beside it a second wrk
    # (flood.lua, FLOOD_CONNECTIONS connections) sends POST /token with made-up client
    # credentials as fast as it can: attack-cc to the token filter, attack-control to the
    # floor. attack-lockout: the real client's client_credentials (wrk, from 127.0.0.1) while
    # lockout_attacker.py sends wrong secrets for the same PBKDF2 client from 127.0.0.2.
    attack_extra = lambda: m.issuer_listener() + template("attack_floor.yaml")

    def attack_checks(target: str):
        def checks(t: Target):
            probe = post_token(t.ctx[target], "grant_type=client_credentials",
                               "atk-" + secrets.token_hex(8), secrets.token_urlsafe(32))
            return gchecks(t) + [(f"random client credentials to `{target}` -> 401", probe, 401)]
        return checks

    def attack_flood_check(kind: str):
        """Over the measured run: the guard load hit its cache only; the flood's listener
        rejected requests (the flood was running); attack-cc: they reached the token filter
        (invalid_client) and cost no slow hash; attack-control: the token filter saw none."""
        target = "issuer" if kind == "cc" else "floor"
        name = f"attack-{kind}"

        def check(t: Target, measured: int, before: dict[str, int]) -> str | None:
            notes = [guard_cache_check("hit")(t, measured, before)]
            after = attack_stats(t)
            d = lambda k: (stat_sum(after, k) or 0) - (stat_sum(before, k) or 0)
            if stat_sum(after, "oauth2.authn.slow_hashes") is None:
                raise BenchError(f"{name}: no oauth2.authn.slow_hashes in Envoy's stats (the PBKDF2 check of "
                                 "the run's token issuance should have defined it)")
            slow, rejected, invalid = (d("oauth2.authn.slow_hashes"), d(f"http.{target}.downstream_rq_4xx"),
                                       d("oauth2.token.error.invalid_client"))
            conns = d(f"http.{target}.downstream_cx_total")
            if slow:
                raise BenchError(f"{name}: {slow} slow hashes ran over the measured run: a random client id "
                                 "must fail at a table lookup")
            if rejected <= 0:
                raise BenchError(f"{name}: the `{target}` listener rejected nothing over the measured run: "
                                 "the flood was not running")
            if conns > FLOOD_CONNECTIONS:
                # A listener that closes its connections (e.g. answering before the body arrived)
                # would make the flood a connection flood, costlier than what it stands for.
                raise BenchError(f"{name}: the flood opened {conns} connections to `{target}` over the measured "
                                 f"run (it keeps {FLOOD_CONNECTIONS}): the listener closes them")
            if kind == "cc" and invalid <= 0:
                raise BenchError(f"{name}: the token filter counted no invalid_client over the measured run")
            if kind == "control" and invalid:
                raise BenchError(f"{name}: the token filter counted {invalid} invalid_client: the flood "
                                 "was meant for the floor listener only")
            a = t.ctx["attack"]
            notes.append(f"flood: {a['requests']} requests at {a['rps']:.0f}/s, all 401; over the measured "
                         f"run `{target}` rejected {rejected} on {conns} new connections, token filter "
                         f"invalid_client {invalid}, slow hashes {slow}")
            return "; ".join(notes)
        return check

    def lockout_checks(t: Target):
        ok = [post_token(t.port, "grant_type=client_credentials") for _ in range(3)]
        return [
            *[("the real client (127.0.0.1) under attack -> 200", r, 200) for r in ok],
            ("no client authentication -> 401", post_token(t.port, "grant_type=client_credentials", secret=None), 401),
            (f"a wrong secret from {LOCKOUT_SOURCE}, throttled by now -> 429",
             post_token(t.port, "grant_type=client_credentials", secret="wrong", source=LOCKOUT_SOURCE), 429),
        ]

    def lockout_check(t: Target, measured: int, before: dict[str, int]) -> str | None:
        after = attack_stats(t)
        d = lambda k: (stat_sum(after, k) or 0) - (stat_sum(before, k) or 0)
        throttled, slow = d("oauth2.throttled"), d("oauth2.authn.slow_hashes")
        if throttled <= 0:
            raise BenchError("attack-lockout: Envoy throttled nothing over the measured run: the attacker "
                             "was not being refused")
        a = t.ctx["attack"]
        # A fresh Envoy: every slow hash it ran is one of the attacker's checked secrets (401) or
        # the real client's first check (the checks' first request, made once the attacker's
        # address was throttled: per-address throttling let it through).
        total, checked = stat_sum(after, "oauth2.authn.slow_hashes") or 0, a["statuses"].get("401", 0)
        if total < checked + 1:
            raise BenchError(f"attack-lockout: Envoy ran {total} slow hashes in all, for {checked} wrong secrets "
                             "checked (401) and the real client's first check: is the client's secret PBKDF2?")
        st = ", ".join(f"{k}: {v}" for k, v in sorted(a["statuses"].items()))
        return (f"attacker from {LOCKOUT_SOURCE}: {a['requests']} requests at {a['rps']:.0f}/s ({st}) on "
                f"{a['connections']} connections; over "
                f"the measured run Envoy throttled {throttled}, ran {slow} slow hashes ({total} in all)")

    if not m.client_hash.startswith("$pbkdf2-sha256$"):
        raise BenchError("attack-lockout needs a PBKDF2 (human-chosen) client secret")
    V.append(Variant("attack-cc", "attack", "guard-hit load while 8 connections flood POST /token with "
                     "random client ids and secrets (the token filter answers 401)", 200, vs="attack-control",
                     attack="cc", filters=lambda: m.guard_filter(None), extra=attack_extra, headers=bearer,
                     prepare=guard_prepare, checks=attack_checks("issuer"), post_check=attack_flood_check("cc")))
    V.append(Variant("attack-control", "attack", "guard-hit load while the same flood hits a route Envoy "
                     "answers 401 by itself (no filter): the floor", 200, attack="control",
                     filters=lambda: m.guard_filter(None), extra=attack_extra, headers=bearer,
                     prepare=guard_prepare, checks=attack_checks("floor"),
                     post_check=attack_flood_check("control")))
    V.append(Variant("attack-lockout", "attack", f"the real client's POST /token client_credentials from "
                     f"127.0.0.1 while wrong secrets for it come from {LOCKOUT_SOURCE}", 200, attack="lockout",
                     tolerate=True, method="POST", path="/token", hcm=EDGE, filters=m.token_filter,
                     headers=auth, body=lambda t: "grant_type=client_credentials", checks=lockout_checks,
                     post_check=lockout_check))

    def peer_checks(t: Target):
        ok = post_token(t.port, "grant_type=client_credentials&scope=default", PEER_CLIENT_ID, PEER_CLIENT_SECRET)
        tok = token_field(ok, "access_token")
        if tok.count(".") == 2:
            raise BenchError("oidc-provider issued a JWT access token; the bench wants opaque tokens")
        return [
            ("client_credentials -> 200 (opaque token)", ok, 200),
            ("bad client secret -> 401", post_token(t.port, "grant_type=client_credentials", PEER_CLIENT_ID, "wrong"), 401),
            ("no client authentication -> 400 (oidc-provider: invalid_request)",
             post_token(t.port, "grant_type=client_credentials", secret=None), 400),
        ]

    V.append(Variant("oidc-provider-cc", "peer", "oidc-provider (Node) POST /token, client_credentials", 200,
                     method="POST", path="/token", peer=True,
                     headers=lambda t: {**FORM, "Authorization": basic(PEER_CLIENT_ID, PEER_CLIENT_SECRET)},
                     body=lambda t: "grant_type=client_credentials&scope=default", checks=peer_checks))
    if BASELINE_WASM:
        V += [dataclasses.replace(v, name=v.name + "@base", vs=v.vs and v.vs + "@base")
              for v in V if v.group in ("guard", "token", "attack")]
    return V


# ---------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------

def wait_until(pred, timeout: float, what: str, proc: subprocess.Popen, logfile: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode}:\n{tail(logfile)}")
        try:
            v = pred()
            if v:
                return v
        except (OSError, ValueError, http.client.HTTPException):
            pass
        time.sleep(0.05)
    raise BenchError(f"{what} not ready after {timeout}s:\n{tail(logfile)}")


def tail(p: Path, n: int = 30) -> str:
    try:
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


MAT: list = []


def start_envoy(v: Variant, tag: str) -> tuple[subprocess.Popen, Target]:
    if MAT:
        MAT[0].wasm = MAT[0].base_wasm if v.name.endswith("@base") else MAT[0].main_wasm
        # A key prefix of its own per run: its grants are the only ones under it.
        MAT[0].etcd_prefix = f"/bench/{tag}/" if v.etcd else ""
    cfg = fill_all(template("envoy.yaml"),
                   HTTP_FILTERS=v.filters() if v.filters else "",
                   HCM_OPTIONS=v.hcm,
                   EXTRA_LISTENERS=v.extra() if v.extra else "",
                   CLUSTERS=ETCD[0].envoy_cluster() if v.etcd else "")
    cfg_path = RUN_DIR / f"{tag}.yaml"
    cfg_path.write_text(cfg)
    addr_path = RUN_DIR / f"{tag}.admin"
    addr_path.unlink(missing_ok=True)
    logfile = RUN_DIR / f"{tag}.log"
    p = spawn(pinned(ENVOY_CORE, [str(ENVOY_BIN), "-c", str(cfg_path), "--concurrency", "1",
                                  "--disable-hot-restart", "-l", "warn", "--admin-address-path", str(addr_path)]),
              logfile)

    def admin_port():
        s = addr_path.read_text().strip()
        return int(s.rsplit(":", 1)[1]) if s else None

    admin = wait_until(admin_port, 60, f"Envoy ({v.name})", p, logfile)

    def listeners():
        if req(admin, "GET", "/ready").status != 200:
            return None
        data = json.loads(req(admin, "GET", "/listeners?format=json").body)
        ports = {}
        for ls in data.get("listener_statuses", []):
            ports[ls["name"]] = ls["local_address"]["socket_address"]["port_value"]
        return ports if ports.get("bench") else None

    ports = wait_until(listeners, 60, f"Envoy ({v.name})", p, logfile)
    t = Target(ports["bench"], admin)
    for name, port in ports.items():     # issuer (guard variants), floor (attack-cc/-control)
        if name != "bench":
            t.ctx[name] = port
    if v.etcd:
        t.ctx["etcd_prefix"] = MAT[0].etcd_prefix
        # Envoy can be ready before its health checks found the members: until then a
        # callout finds no healthy host.
        wait_until(lambda: envoy_stats(t, r"^cluster\.etcd\.membership_healthy$")
                   .get("cluster.etcd.membership_healthy") == ETCD_MEMBERS,
                   20, f"Envoy ({v.name}): healthy etcd members", p, logfile)
    return p, t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_peer(tag: str) -> tuple[subprocess.Popen, Target]:
    port = free_port()
    logfile = RUN_DIR / f"{tag}.log"
    p = spawn(pinned(ENVOY_CORE, ["node", "server.mjs", str(port), PEER_CLIENT_ID, PEER_CLIENT_SECRET]),
              logfile, cwd=PEER_DIR, env=dict(os.environ, NODE_ENV="production"))

    def up():
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_until(up, 30, "oidc-provider", p, logfile)
    return p, Target(port, None)


# ---------------------------------------------------------------------------------
# etcd: the store of the etcd-* variants
# ---------------------------------------------------------------------------------

def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports: all bound at once, then released."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def prom(text: str) -> dict[str, float]:
    """Prometheus text format -> {'name{labels}': value} (comments skipped)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


# etcd's own counters read around each measured run of an etcd-* variant, summed over the
# members: requests it served (by gRPC method: the JSON gateway calls etcd's gRPC server),
# their server-side handling time (--metrics extensive), and its WAL fsyncs.
ETCD_METRICS = {
    "range": 'grpc_server_handled_total{grpc_code="OK",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"}',
    "txn": 'grpc_server_handled_total{grpc_code="OK",grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"}',
    "lease": 'grpc_server_handled_total{grpc_code="OK",grpc_method="LeaseGrant",grpc_service="etcdserverpb.Lease",grpc_type="unary"}',
    "range_s": 'grpc_server_handling_seconds_sum{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"}',
    "range_n": 'grpc_server_handling_seconds_count{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"}',
    "txn_s": 'grpc_server_handling_seconds_sum{grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"}',
    "txn_n": 'grpc_server_handling_seconds_count{grpc_method="Txn",grpc_service="etcdserverpb.KV",grpc_type="unary"}',
    "fsync_s": "etcd_disk_wal_fsync_duration_seconds_sum",
    "fsync_n": "etcd_disk_wal_fsync_duration_seconds_count",
}


class EtcdCluster:
    """ETCD_MEMBERS etcd members on 127.0.0.1 (free ports), started once for the whole bench when
    an etcd-* variant is selected. Flags as tests/common/etcd.rs (etcd's default 100/1000 ms
    election timing, revision compaction) plus `--metrics extensive` (server-side handling
    time per gRPC method). Data dirs in a temp dir, removed by close() (at the end, and at
    exit: atexit also runs on the bench's signal handler and on failure); logs in bench/.run.
    Each run of an etcd-* variant gets its own key prefix, so runs never see each other's grants."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="envoy-oauth2-bench-etcd-"))
        self.procs: list[subprocess.Popen] = []
        self.client_ports: list[int] = []
        atexit.register(self.close)
        for attempt in range(5):
            if self._start(attempt):
                return
        raise BenchError("etcd: the cluster did not start after 5 attempts (ports taken?)")

    def _start(self, attempt: int) -> bool:
        ports = free_ports(2 * ETCD_MEMBERS)
        self.client_ports = ports[:ETCD_MEMBERS]
        peers = ports[ETCD_MEMBERS:]
        initial = ",".join(f"m{i}=http://127.0.0.1:{peers[i]}" for i in range(ETCD_MEMBERS))
        token = f"envoy-oauth2-bench-{os.getpid()}-{attempt}-{time.time_ns()}"
        logs = []
        for i in range(ETCD_MEMBERS):
            client, peer = f"http://127.0.0.1:{self.client_ports[i]}", f"http://127.0.0.1:{peers[i]}"
            logs.append(RUN_DIR / f"etcd-m{i}.log")
            self.procs.append(spawn(pinned(ETCD_CORE, [
                ETCD_BIN, "--name", f"m{i}", "--data-dir", str(self.dir / f"a{attempt}-m{i}"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initial, "--initial-cluster-token", token,
                "--initial-cluster-state", "new",
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                # docs/fleet.md: leases that survive leader changes, bounded storage.
                "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "5m",
                "--quota-backend-bytes", str(2 << 30),
                "--logger", "zap", "--experimental-enable-lease-checkpoint",
                "--experimental-enable-lease-checkpoint-persist",
                "--metrics", "extensive"]), logs[i]))
        try:
            for i in range(ETCD_MEMBERS):
                wait_until(lambda i=i: json.loads(req(self.client_ports[i], "GET", "/health").body)
                           .get("health") == "true", 20, f"etcd member m{i}", self.procs[i], logs[i])
            return True
        except BenchError:
            taken = any("address already in use" in tail(lg, 200) for lg in logs)
            self._stop_members()
            if taken and attempt < 4:
                log("etcd: a port was taken meanwhile, retrying with other ports")
                return False
            raise

    def _stop_members(self) -> None:
        # etcd is crash-safe (WAL): a member that does not stop at once (a stopping leader
        # hands its leadership on, which waits on members that are stopping too) gets SIGKILL.
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        self.procs = []

    def close(self) -> None:
        self._stop_members()
        shutil.rmtree(self.dir, ignore_errors=True)

    def alive(self) -> None:
        dead = [i for i, p in enumerate(self.procs) if p.poll() is not None]
        if dead:
            raise BenchError(f"etcd member(s) {dead} exited:\n" +
                             "\n".join(tail(RUN_DIR / f"etcd-m{i}.log") for i in dead))

    def gateway(self, path: str, body: dict) -> dict:
        """POST to the v3 JSON gateway of the first member that answers 200."""
        errs = []
        for port in self.client_ports:
            try:
                r = req(port, "POST", path, {"Content-Type": "application/json"}, json.dumps(body))
                if r.status == 200:
                    return json.loads(r.body)
                errs.append(f"{port}: HTTP {r.status} {r.body[:200]}")
            except (OSError, ValueError, http.client.HTTPException) as e:
                errs.append(f"{port}: {e}")
        raise BenchError(f"etcd gateway {path} failed on every member: {errs}")

    def revision(self) -> int:
        """The cluster's revision: +1 per committed write transaction (a failed compare: +0)."""
        h = self.gateway("/v3/kv/range", {"key": b64("/bench-revision-probe"), "count_only": True})["header"]
        return int(h["revision"])

    def grants(self, prefix: str) -> tuple[int, int]:
        """(bucket keys, grants) this run's filters stored under `prefix`: every bucket key
        `<prefix>oauth2/g/<n>` (store/keys.rs), each value a bucket whose header is
        `version u8 = 1 | count u16` (store/bucket.rs)."""
        g = prefix + "oauth2/g/"
        ans = self.gateway("/v3/kv/range", {"key": b64(g), "range_end": b64(prefix + "oauth2/g0")})
        keys = grants = 0
        for kv in ans.get("kvs", []):
            v = base64.b64decode(kv.get("value", ""))
            if len(v) < 3 or v[0] != 1:
                raise BenchError(f"etcd: {base64.b64decode(kv['key'])!r} is not a bucket: {v[:16]!r}")
            keys += 1
            grants += int.from_bytes(v[1:3], "big")
        return keys, grants

    def metrics(self) -> dict[str, float]:
        out = dict.fromkeys(ETCD_METRICS, 0.0)
        for port in self.client_ports:
            m = prom(req(port, "GET", "/metrics").body)
            for k, name in ETCD_METRICS.items():
                out[k] += m.get(name, 0.0)
        return out

    def cpu_ticks(self) -> int:
        return sum(proc_cpu_ticks(p.pid) for p in self.procs)

    def envoy_cluster(self) -> str:
        """The Envoy cluster `etcd` (static_resources.clusters) in front of the members:
        tests/common/etcd.rs's envoy_etcd_cluster_yaml, = envoy/fleet.yaml's."""
        eps = "\n".join(f"- endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, "
                        f"port_value: {p} }} }} }}" for p in self.client_ports)
        return fill_all(template("etcd_cluster.yaml"), ENDPOINTS=eps)


ETCD: list[EtcdCluster] = []


# ---------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------

def proc_cpu_ticks(pid: int) -> int:
    s = Path(f"/proc/{pid}/stat").read_text()
    f = s[s.rindex(")") + 2:].split()
    return int(f[11]) + int(f[12])   # utime, stime (fields 14, 15)


def cores_busy() -> dict[str, tuple[int, int]]:
    """cpuN -> (busy ticks, total ticks), and 'cpu' for the machine."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu"):
            break
        name, *vals = line.split()
        v = [int(x) for x in vals[:8]]
        idle = v[3] + v[4]
        out[name] = (sum(v) - idle, sum(v))
    return out


QUIET = {"waited_s": 0.0}
QUIET_PER_RUN = float(os.environ.get("BENCH_QUIET_WAIT", "5"))
QUIET_TOTAL = 60.0


def wait_quiet() -> None:
    """Other work on this machine skews a run: wait a little (5 s per run, 1 min in all at most)
    until the cores are idle (< 15% of a core busy over 0.5 s). Envoy is idle at this point."""
    deadline = time.monotonic() + min(QUIET_PER_RUN, max(0.0, QUIET_TOTAL - QUIET["waited_s"]))
    t0 = time.monotonic()
    while True:
        a = cores_busy()["cpu"]
        time.sleep(0.5)
        b = cores_busy()["cpu"]
        if (b[0] - a[0]) / CLK_TCK / 0.5 < 0.15 or time.monotonic() >= deadline:
            break
    QUIET["waited_s"] += time.monotonic() - t0 - 0.5


def lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def wrk_config(v: Variant, t: Target, tag: str, seeds: list[str] | None) -> Path:
    hdrs = v.headers(t)
    body = v.body(t)
    parts = [f"expect = {v.expect}", f"method = {lua_str(v.method)}",
             "headers = {" + ", ".join(f"[{lua_str(k)}] = {lua_str(val)}" for k, val in hdrs.items()) + "}"]
    if body is not None:
        parts.append(f"body = {lua_str(body)}")
    if v.refresh:
        parts += ["refresh = true", f"prefix = {lua_str('grant_type=refresh_token&refresh_token=')}",
                  "seeds = {" + ", ".join(lua_str(s) for s in seeds or []) + "}"]
    p = RUN_DIR / f"{tag}.wrk.lua"
    p.write_text("return {\n  " + ",\n  ".join(parts) + "\n}\n")
    return p


def wrk(v: Variant, t: Target, seconds: float, tag: str, seeds: list[str] | None) -> dict:
    cfg = wrk_config(v, t, tag, seeds)
    secs = max(1, round(seconds))
    args = pinned(LOAD_CORE, ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{secs}s", "--timeout", "5s",
            "--latency", "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{t.port}{v.path}", "--", str(cfg)])
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         text=True, start_new_session=True)
    STARTED.append(p)
    boost(p)
    try:
        out, err = p.communicate(timeout=secs + 60)
    except subprocess.TimeoutExpired:
        stop(p)
        raise BenchError(f"wrk did not finish for {v.name}")
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = re.search(r"^BENCH_RESULT (\{.*\})$", out, re.M)
    if p.returncode != 0 or not m:
        raise BenchError(f"wrk failed ({p.returncode}) for {v.name}:\n{out}\n{err}")
    res = json.loads(m.group(1))
    res["wrk_cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return res


def verify_statuses(v: Variant, res: dict, phase: str) -> None:
    e = res["errors"]
    problems = []
    if res["requests"] == 0:
        problems.append("no request completed")
    if res["bad"] and not v.tolerate:
        problems.append(f"{res['bad']} responses were not {v.expect} (saw: {res['bad_statuses'].strip()})")
    for k in ("connect", "read", "write", "timeout"):
        if e[k]:
            problems.append(f"{e[k]} socket {k} errors")
    # wrk's own non-2xx/3xx count must agree with the expected status class.
    want_non2xx = res["requests"] if v.expect >= 400 else (res["bad"] if v.tolerate else 0)
    if e["status"] != want_non2xx:
        problems.append(f"wrk counted {e['status']} non-2xx/3xx responses, expected {want_non2xx}")
    if problems:
        raise BenchError(f"{v.name} ({phase}): " + "; ".join(problems))


# Callouts that got no answer from etcd, or a 5xx. A 4xx is one of etcd's own answers the store
# handles: "lease not found" when a write is the first of its lease slice (the store grants the
# lease and sends the write again), so it is counted apart (`answers_4xx`), not as a failure.
ETCD_ERRORS = ("upstream_rq_5xx", "upstream_rq_timeout", "upstream_rq_pending_overflow",
               "upstream_cx_connect_fail")


def etcd_snapshot(t: Target) -> dict:
    """Envoy's callouts to the `etcd` cluster, etcd's counters and its revision."""
    env = envoy_stats(t, r"^cluster\.etcd\.(upstream_rq_total|upstream_cx_total|upstream_rq_4xx|"
                      + "|".join(ETCD_ERRORS) + ")$")
    return {"envoy": env, "etcd": ETCD[0].metrics(), "rev": ETCD[0].revision()}


def etcd_delta(a: dict, b: dict) -> dict:
    e = {k: b["etcd"][k] - a["etcd"][k] for k in ETCD_METRICS}
    env = lambda k: b["envoy"].get(f"cluster.etcd.{k}", 0) - a["envoy"].get(f"cluster.etcd.{k}", 0)
    return {"callouts": env("upstream_rq_total"), "connections": env("upstream_cx_total"),
            "errors": {k: env(k) for k in ETCD_ERRORS if env(k)}, "answers_4xx": env("upstream_rq_4xx"),
            "revisions": b["rev"] - a["rev"], "range": int(e["range"]), "txn": int(e["txn"]),
            "lease": int(e["lease"]),
            "range_ms": 1e3 * e["range_s"] / e["range_n"] if e["range_n"] else None,
            "txn_ms": 1e3 * e["txn_s"] / e["txn_n"] if e["txn_n"] else None,
            "fsync_ms": 1e3 * e["fsync_s"] / e["fsync_n"] if e["fsync_n"] else None,
            "fsyncs": int(e["fsync_n"])}


# ---------------------------------------------------------------------------------
# Attacks (attack-* variants): a load beside the measured wrk, on the same core 1
# ---------------------------------------------------------------------------------

def attack_stats(t: Target) -> dict[str, int]:
    """The filters' counters and the listeners' 4xx, after the filters' counter tick."""
    time.sleep(0.5)
    return envoy_stats(t, r"oauth2\.|^http\.(bench|issuer|floor)\.downstream_(rq_4xx|cx_total)$")


@dataclass
class AttackRun:
    kind: str
    proc: subprocess.Popen
    logfile: Path
    cpu0: int = 0


def start_attack(v: Variant, t: Target, tag: str) -> AttackRun:
    """attack-cc / attack-control: a second wrk (flood.lua) at the token filter's listener or
    the floor listener; attack-lockout: lockout_attacker.py from LOCKOUT_SOURCE at the measured
    listener. Runs until finish_attack (SIGINT); returns once the attack shows in Envoy's stats."""
    logfile = RUN_DIR / f"{tag}.attack.log"
    if v.attack in ("cc", "control"):
        target = "issuer" if v.attack == "cc" else "floor"
        args = ["wrk", "-t1", f"-c{FLOOD_CONNECTIONS}", "-d3600s", "--timeout", "5s", "-s", str(FLOOD_SCRIPT),
                f"http://127.0.0.1:{t.ctx[target]}/token", "--", "401"]
        shows = lambda s: (stat_sum(s, f"http.{target}.downstream_rq_4xx") or 0) > 0
    else:
        args = [sys.executable, str(LOCKOUT_ATTACKER), "127.0.0.1", str(t.port), LOCKOUT_SOURCE, CLIENT_ID,
                str(LOCKOUT_CONNECTIONS)]
        # Its address already throttled: the real client's first (PBKDF2) check runs after that.
        shows = lambda s: (stat_sum(s, "oauth2.throttled") or 0) > 0
    a = AttackRun(v.attack, spawn(pinned(LOAD_CORE, args), logfile), logfile)
    wait_until(lambda: shows(envoy_stats(t, r"oauth2\.throttled|^http\.(issuer|floor)\.downstream_rq_4xx$")),
               20, f"{v.name}: the attack ({' '.join(args[:2])}) showing in Envoy's stats", a.proc, logfile)
    return a


def finish_attack(a: AttackRun, v: Variant) -> dict:
    """Stops the attack (SIGINT: wrk and the attacker print their counts), and fails loudly
    unless it did what it claims: the flood got 401 only, with no socket error; the lockout
    attacker got 401 (its secrets checked) and then mostly 429 (its address throttled), never
    a token."""
    if a.proc.poll() is not None:
        raise BenchError(f"{v.name}: the attack exited early ({a.proc.returncode}):\n{tail(a.logfile)}")
    a.proc.send_signal(signal.SIGINT)
    try:
        a.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        stop(a.proc)
        raise BenchError(f"{v.name}: the attack did not stop on SIGINT:\n{tail(a.logfile)}")
    text = a.logfile.read_text(errors="replace")
    m = re.search(r"^(FLOOD|ATTACK)_RESULT (\{.*\})$", text, re.M)
    if not m:
        raise BenchError(f"{v.name}: no result from the attack ({a.proc.returncode}):\n{tail(a.logfile)}")
    r = json.loads(m.group(2))
    problems = []
    if a.kind in ("cc", "control"):
        secs = r["duration_us"] / 1e6
        e = r["errors"]
        out = {"requests": r["requests"], "rps": r["requests"] / secs if secs else 0.0,
               "statuses": {"401": r["requests"] - r["bad"]}, "errors": {k: n for k, n in e.items() if n and k != "status"}}
        if r["bad"]:
            problems.append(f"{r['bad']} flood responses were not 401 (saw: {r['bad_statuses'].strip()})")
        if e["status"] != r["requests"]:
            problems.append(f"wrk counted {e['status']} non-2xx/3xx of {r['requests']} flood responses")
    else:
        st = r["statuses"]
        out = {"requests": r["requests"], "rps": r["requests"] / r["duration_s"] if r["duration_s"] else 0.0,
               "statuses": st, "errors": r["errors"], "connections": r.get("connections")}
        if set(st) - {"401", "429"}:
            problems.append(f"statuses other than 401/429: {st}")
        if not st.get("401"):
            problems.append("no 401: none of its wrong secrets was checked")
        if st.get("429", 0) <= st.get("401", 0):
            problems.append(f"its address was not throttled: {st.get('429', 0)} x 429 for {st.get('401', 0)} x 401")
    if r["requests"] == 0:
        problems.append("no request completed")
    if out["errors"]:
        problems.append(f"socket errors {out['errors']}")
    if problems:
        raise BenchError(f"{v.name}: the attack " + "; ".join(problems))
    return out


def measure(v: Variant, rnd: int) -> dict:
    tag = f"{v.name}-r{rnd}"
    if v.etcd:
        ETCD[0].alive()
    proc, t = start_peer(tag) if v.peer else start_envoy(v, tag)
    t.ctx["variant"] = v.name
    attack = None
    try:
        v.prepare(t)
        if v.attack:
            # The attack runs from before the checks to the end of the measured run: wait for
            # idle cores now, not between warm-up and measured run.
            wait_quiet()
            attack = start_attack(v, t, tag)
        checks = v.checks(t)
        for desc, resp, want in checks:
            if resp.status != want:
                raise BenchError(f"{v.name}: check `{desc}` got {resp.status} (body {resp.body[:200]!r})")
        seeds = t.ctx.get("seeds")
        warm = wrk(v, t, WARMUP, tag + "-warmup", seeds[:SEEDS] if seeds else None)
        verify_statuses(v, warm, "warm-up")
        before = (attack_stats(t) if v.attack else guard_stats(t)) if v.post_check else {}
        if not attack:
            wait_quiet()
        e0 = etcd_snapshot(t) if v.etcd else None
        k0 = ETCD[0].cpu_ticks() if ETCD else 0
        a0 = proc_cpu_ticks(attack.proc.pid) if attack else 0
        c0, b0 = proc_cpu_ticks(proc.pid), cores_busy()
        res = wrk(v, t, SECONDS, tag, seeds[SEEDS:] if seeds else None)
        c1, b1 = proc_cpu_ticks(proc.pid), cores_busy()
        a1 = proc_cpu_ticks(attack.proc.pid) if attack else 0
        k1 = ETCD[0].cpu_ticks() if ETCD else 0
        e1 = etcd_snapshot(t) if v.etcd else None
        if attack:
            t.ctx["attack"] = finish_attack(attack, v)
            attack = None
        verify_statuses(v, res, "measured")
        if v.etcd:
            t.ctx["etcd"] = etcd_delta(e0, e1)
        note = v.post_check(t, res["requests"], before) if v.post_check else None
        if proc.poll() is not None:
            raise BenchError(f"{v.name}: server exited during the run")
    finally:
        if attack:
            stop(attack.proc)
        stop(proc)
    secs = res["duration_us"] / 1e6
    server_s = (c1 - c0) / CLK_TCK
    etcd_s = (k1 - k0) / CLK_TCK     # the etcd members (idle unless the variant is etcd-*)
    attack_s = (a1 - a0) / CLK_TCK   # the attack's load generator (attack-* only; core 1)
    busy = {k: (b1[k][0] - b0[k][0]) / max(1, b1[k][1] - b0[k][1]) for k in b1 if k in b0}
    all_busy_s = (b1["cpu"][0] - b0["cpu"][0]) / CLK_TCK
    run = {
        "variant": v.name, "round": rnd, "seconds": secs, "requests": res["requests"],
        "rps": res["requests"] / secs, "latency_us": res["latency_us"],
        "server_cpu_us_per_req": server_s * 1e6 / res["requests"],
        "server_cpu_pct": 100 * server_s / secs,
        "wrk_cpu_pct": 100 * res["wrk_cpu_s"] / secs,
        "core_busy_pct": {k: round(100 * b, 1) for k, b in busy.items() if k != "cpu"},
        "other_cpu_pct": max(0.0, 100 * (all_busy_s - server_s - res["wrk_cpu_s"] - etcd_s - attack_s) / secs),
        "bad": res["bad"], "errors": res["errors"],
        "checks": [f"{d}: {r.status}" for d, r, _ in checks],
    }
    if ETCD:
        run["etcd_cpu_pct"] = 100 * etcd_s / secs
    if v.attack:
        run["attack"] = {**t.ctx["attack"], "cpu_pct": 100 * attack_s / secs}
    if v.tolerate:
        # attack-lockout: the real client's share of answered requests that got their token.
        run["ok"] = res["requests"] - res["bad"]
        run["success_pct"] = 100 * run["ok"] / res["requests"]
        run["other_statuses"] = res["bad_statuses"].strip()
    if v.etcd:
        d, n = t.ctx["etcd"], res["requests"]
        run["etcd"] = {
            "cpu_us_per_req": etcd_s * 1e6 / n, "callouts_per_req": d["callouts"] / n,
            "connections_per_req": d["connections"] / n,
            "range_per_req": d["range"] / n, "txn_per_req": d["txn"] / n, "lease_per_req": d["lease"] / n,
            "revisions_per_req": d["revisions"] / n, "fsyncs_per_req": d["fsyncs"] / n,
            "range_ms": d["range_ms"], "txn_ms": d["txn_ms"], "fsync_ms": d["fsync_ms"],
        }
    if note:
        run["note"] = note
    for k in ("first_ms", "second_ms"):
        if k in t.ctx:
            run[k] = round(t.ctx[k], 2)
    return run


# ---------------------------------------------------------------------------------
# Summary, targets, output
# ---------------------------------------------------------------------------------

def med(xs):
    return statistics.median(xs) if xs else float("nan")


def summarize(variants: list[Variant], runs: list[dict]) -> dict:
    by = {v.name: [r for r in runs if r["variant"] == v.name] for v in variants}
    rps_of = {(r["variant"], r["round"]): r["rps"] for r in runs}
    p99_of = {(r["variant"], r["round"]): r["latency_us"]["p99"] for r in runs}
    base = {r["round"]: r["rps"] for r in by.get("none", [])}
    base_cpu = {r["round"]: r["server_cpu_us_per_req"] for r in by.get("none", [])}
    out = {}
    for v in variants:
        rs = by[v.name]
        if not rs:
            continue
        ratios = [r["rps"] / base[r["round"]] for r in rs if r["round"] in base]
        # The same ratio from CPU per request (what a fully busy core would deliver): robust to
        # the server not getting its whole core during a run.
        cpu_ratios = [base_cpu[r["round"]] / r["server_cpu_us_per_req"] for r in rs if r["round"] in base_cpu]
        out[v.name] = {
            "group": v.group, "what": v.what, "expect": v.expect, "rounds": len(rs),
            "rps": med([r["rps"] for r in rs]), "rps_runs": [round(r["rps"]) for r in rs],
            "ratio": med(ratios), "ratio_runs": [round(x, 3) for x in ratios],
            "cpu_ratio": med(cpu_ratios),
            "p50_ms": med([r["latency_us"]["p50"] for r in rs]) / 1e3,
            "p99_ms": med([r["latency_us"]["p99"] for r in rs]) / 1e3,
            "cpu_us": med([r["server_cpu_us_per_req"] for r in rs]),
            "server_cpu_pct": med([r["server_cpu_pct"] for r in rs]),
            "wrk_cpu_pct": med([r["wrk_cpu_pct"] for r in rs]),
            "other_cpu_pct": med([r["other_cpu_pct"] for r in rs]),
        }
        if v.vs:
            # The ratio to its twin (etcd-*: its shared-data variant; attack-cc: attack-control),
            # round by round like `x none`; p99 likewise.
            vs = [r["rps"] / rps_of[(v.vs, r["round"])] for r in rs if (v.vs, r["round"]) in rps_of]
            p99 = [r["latency_us"]["p99"] / p99_of[(v.vs, r["round"])] for r in rs
                   if p99_of.get((v.vs, r["round"]))]
            out[v.name].update({"vs": v.vs, "vs_ratio": med(vs), "vs_ratio_runs": [round(x, 3) for x in vs],
                                "p99_vs_ratio": med(p99), "p99_vs_ratio_runs": [round(x, 3) for x in p99]})
            if v.etcd:
                out[v.name]["store"] = "etcd"
        if v.attack:
            a = [r["attack"] for r in rs]
            st: dict[str, int] = {}
            for x in a:
                for k, n in x["statuses"].items():
                    st[k] = st.get(k, 0) + n
            out[v.name]["attack"] = {"kind": v.attack, "rps": med([x["rps"] for x in a]), "statuses": st,
                                     "cpu_pct": med([x["cpu_pct"] for x in a])}
        if v.tolerate:
            n, ok = sum(r["requests"] for r in rs), sum(r["ok"] for r in rs)
            out[v.name].update({"success_pct": 100 * ok / n, "success_runs": [round(r["success_pct"], 3) for r in rs],
                                "requests_total": n, "other_statuses": " ".join(sorted(
                                    {s for r in rs for s in r["other_statuses"].split()}))})
        if v.etcd:
            e = [r["etcd"] for r in rs]
            out[v.name]["etcd"] = {k: med([x[k] for x in e if x[k] is not None]) for k in e[0]}
    return out


def targets(s: dict) -> list[dict]:
    out = []

    def t(name, ok, detail):
        out.append({"target": name, "result": "n/a" if ok is None else ("PASS" if ok else "MISS"),
                    "detail": detail})

    def r(n):
        return s[n]["ratio"] if n in s else None

    if "guard-hit" in s and "none" in s:
        t("guard-hit >= 0.75x none", r("guard-hit") >= 0.75, f"{r('guard-hit'):.2f}x")
        if "lua" in s:
            t("guard-hit above the hand-written Lua filter", s["guard-hit"]["rps"] > s["lua"]["rps"],
              f"{s['guard-hit']['rps']:.0f} vs lua {s['lua']['rps']:.0f} req/s "
              f"({r('guard-hit'):.2f}x vs {r('lua'):.2f}x none)")
        jw = [n for n in ("jwt-hs256-cache", "jwt-es256-cache") if n in s]
        if jw:
            best = max(jw, key=lambda n: s[n]["rps"])
            t("guard-hit above jwt_authn with its cache", s["guard-hit"]["rps"] > s[best]["rps"],
              f"{s['guard-hit']['rps']:.0f} vs {best} {s[best]['rps']:.0f} req/s")
    if "guard-miss" in s and "none" in s:
        t("guard-miss >= 0.65x none", r("guard-miss") >= 0.65, f"{r('guard-miss'):.2f}x")
    if "guard-401" in s and "none" in s:
        t("guard-401 >= 0.75x none", r("guard-401") >= 0.75, f"{r('guard-401'):.2f}x")
    if "token-cc" in s and "none" in s:
        t("/token client_credentials >= 0.5x none", r("token-cc") >= 0.5, f"{r('token-cc'):.2f}x")
        if "oidc-provider-cc" in s:
            x = s["token-cc"]["rps"] / s["oidc-provider-cc"]["rps"]
            t("/token client_credentials >= 10x oidc-provider", x >= 10, f"{x:.1f}x")
        else:
            t("/token client_credentials >= 10x oidc-provider", None, "oidc-provider not measured")

    # etcd-*: against the same variant on shared data (ratios taken round by round).
    def vs(name: str, want: float, label: str) -> None:
        if name not in s:
            return
        x = s[name]
        if x.get("vs") not in s:
            t(label, None, f"{x.get('vs')} not measured")
            return
        t(label, x["vs_ratio"] >= want, f"{x['vs_ratio']:.2f}x ({x['rps']:.0f} vs {s[x['vs']]['rps']:.0f} req/s)")

    vs("etcd-guard-hit", 0.95, "etcd-guard-hit >= 0.95x guard-hit")
    if "etcd-guard-miss" in s:
        x = s["etcd-guard-miss"]
        t("etcd-guard-miss p99 < 5 ms", x["p99_ms"] < 5,
          f"p99 {x['p99_ms']:.2f} ms, p50 {x['p50_ms']:.2f} ms at {x['rps']:.0f} req/s")
    vs("etcd-token-cc", 0.2, "etcd /token client_credentials >= 0.2x token-cc")
    vs("etcd-token-refresh", 0.2, "etcd /token refresh_token >= 0.2x token-refresh")

    # Issue 17: a flood of random client credentials costs the guarded traffic about what the
    # cheapest rejection costs; a lockout attempt does not lock out the real client.
    if "attack-cc" in s:
        x = s["attack-cc"]
        if "attack-control" in s:
            c = s["attack-control"]
            t("guarded req/s under attack-cc >= 0.8x attack-control", x["vs_ratio"] >= 0.8,
              f"{x['vs_ratio']:.2f}x ({x['rps']:.0f} vs {c['rps']:.0f} req/s)")
            t("guard p99 under attack-cc <= 2x attack-control", x["p99_vs_ratio"] <= 2,
              f"{x['p99_vs_ratio']:.2f}x ({x['p99_ms']:.2f} vs {c['p99_ms']:.2f} ms)")
        else:
            t("guarded req/s under attack-cc >= 0.8x attack-control", None, "attack-control not measured")
    if "attack-lockout" in s:
        x = s["attack-lockout"]
        t("attack-lockout: the real client succeeds >= 99%", x["success_pct"] >= 99,
          f"{x['success_pct']:.2f}% of {x['requests_total']} requests"
          + (f" (others: {x['other_statuses']})" if x["other_statuses"] else ""))
    return out


def attack_lines(s: dict) -> list[str]:
    """The attack-* variants: the guarded (or real client's) traffic, and the attack beside it."""
    names = [n for n in s if "attack" in s[n]]
    if not names:
        return []
    out = [f"attack-* (medians; the attack's load generator shares core 1 with wrk):"]
    for n in names:
        x, a = s[n], s[n]["attack"]
        st = ", ".join(f"{k}: {v}" for k, v in sorted(a["statuses"].items()))
        who = {"cc": f"flood of POST /token, random client credentials, {FLOOD_CONNECTIONS} connections",
               "control": f"the same flood at a direct_response 401, {FLOOD_CONNECTIONS} connections",
               "lockout": f"wrong secrets for {CLIENT_ID} from {LOCKOUT_SOURCE}, {LOCKOUT_CONNECTIONS} connections"}
        out.append(f"  {n:<15} {x['rps']:>7.0f} req/s  p50 {x['p50_ms']:.2f} ms  p99 {x['p99_ms']:.2f} ms"
                   + (f"  success {x['success_pct']:.2f}%" if "success_pct" in x else ""))
        out.append(f"      attack: {who.get(a['kind'], a['kind'])}: {a['rps']:.0f} req/s ({st}; all rounds), "
                   f"CPU {a['cpu_pct']:.0f}% of core 1")
    return out


def breakdown(s: dict) -> list[str]:
    """Where guard-hit's CPU per request goes, by experiment (differences of medians)."""
    need = ("none", "noop-wasm", "wasm-hostcalls", "guard-hit")  # the token part needs wasm-reply too
    if not all(n in s for n in need):
        return []
    c = {n: s[n]["cpu_us"] for n in s}
    over = c["guard-hit"] - c["none"]
    parts = [("Wasm floor (noop-wasm - none)", c["noop-wasm"] - c["none"]),
             ("host calls (wasm-hostcalls - noop-wasm)", c["wasm-hostcalls"] - c["noop-wasm"]),
             ("guard code (guard-hit - wasm-hostcalls)", c["guard-hit"] - c["wasm-hostcalls"])]
    out = [f"guard-hit costs {over:.1f} us/req of Envoy CPU more than none ({c['none']:.1f} -> "
           f"{c['guard-hit']:.1f}):"]
    for name, v in parts:
        out.append(f"  {name:<54} {v:6.1f} us  ({100 * v / over if over else float('nan'):.0f}%)")
    if "guard-miss" in c:
        out.append(f"  {'guard-miss - guard-hit (store read instead of cache)':<54} {c['guard-miss'] - c['guard-hit']:6.1f} us")
    if "guard-401" in c:
        out.append(f"  {'guard-401 - none (no token, local 401)':<54} {c['guard-401'] - c['none']:6.1f} us")
    if all(n in c for n in ("wasm-reply", "token-cc")):
        over = c["token-cc"] - c["none"]
        out.append(f"token-cc costs {over:.1f} us/req more than none ({c['none']:.1f} -> {c['token-cc']:.1f}):")
        for name, v in (("Wasm floor (noop-wasm - none)", c["noop-wasm"] - c["none"]),
                        ("body buffering + local reply (wasm-reply - noop-wasm)", c["wasm-reply"] - c["noop-wasm"]),
                        ("token endpoint code (token-cc - wasm-reply)", c["token-cc"] - c["wasm-reply"])):
            out.append(f"  {name:<54} {v:6.1f} us  ({100 * v / over if over else float('nan'):.0f}%)")
    return out


def etcd_breakdown(s: dict) -> list[str]:
    """Per request of the etcd-* variants (medians over rounds): what it adds to its shared-data
    variant (p50 latency, Envoy CPU), the callouts Envoy made to etcd, what etcd served (its gRPC
    counters, with the mean server-side time of a Range/Txn), its WAL fsyncs and its CPU."""
    names = [n for n in s if "etcd" in s[n]]
    if not names:
        return []
    out = ["etcd-* per request (medians; etcd figures summed over its members, times as etcd measured them):"]
    ms = lambda v: "" if v is None or v != v else f" ({v:.2f} ms)"
    for n in names:
        x, e = s[n], s[n]["etcd"]
        base = s.get(x.get("vs"))
        out.append(f"  {n:<19} " + (f"vs {x['vs']}: p50 {x['p50_ms'] - base['p50_ms']:+.2f} ms, Envoy CPU "
                                     f"{x['cpu_us'] - base['cpu_us']:+.1f} us" if base else ""))
        conns = f", {e['connections_per_req']:.2f} new connections" if "connections_per_req" in e else ""
        out.append(f"      {e['callouts_per_req']:.2f} callouts{conns}; etcd: {e['range_per_req']:.2f} Range"
                   f"{ms(e.get('range_ms'))} {e['txn_per_req']:.2f} Txn{ms(e.get('txn_ms'))} "
                   f"{e['fsyncs_per_req']:.2f} fsync{ms(e.get('fsync_ms'))}, CPU {e['cpu_us_per_req']:.0f} us")
    return out


def table(s: dict) -> str:
    hdr = ["variant", "status", "req/s", "x none", "x twin", "rounds x none", "p50 ms", "p99 ms",
           "CPU us/req", "x none (CPU)", "srv CPU%", "wrk CPU%"]
    rows = []
    for n, x in s.items():
        rows.append([n, str(x["expect"]), f"{x['rps']:.0f}", f"{x['ratio']:.2f}",
                     f"{x['vs_ratio']:.2f}" if "vs_ratio" in x else "",
                     " ".join(f"{y:.2f}" for y in x["ratio_runs"]), f"{x['p50_ms']:.2f}",
                     f"{x['p99_ms']:.2f}", f"{x['cpu_us']:.1f}", f"{x.get('cpu_ratio', float('nan')):.2f}",
                     f"{x['server_cpu_pct']:.0f}",
                     f"{x['wrk_cpu_pct']:.0f}"])
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(hdr)]
    fmt = lambda r: "  ".join(c.ljust(w[i]) if i in (0, 5) else c.rjust(w[i]) for i, c in enumerate(r))
    return "\n".join([fmt(hdr), fmt(["-" * x for x in w])] + [fmt(r) for r in rows])


def markdown(s: dict, tg: list[dict], meta: dict) -> str:
    lines = [f"Latest `make bench` ({meta['date']}, commit {meta['commit']}, {meta['rounds']} rounds x "
             f"{meta['seconds']:.0f} s, wrk -t1 -c{meta['connections']}; Envoy --concurrency 1 on core 0, wrk on core 1)",
             "", "| variant | status | req/s | × none | × twin | p50 ms | p99 ms | Envoy CPU µs/req | × none (CPU) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, x in s.items():
        vs = f"{x['vs_ratio']:.2f} (`{x['vs']}`)" if "vs_ratio" in x else ""
        lines.append(f"| `{n}` | {x['expect']} | {x['rps']:.0f} | {x['ratio']:.2f} | {vs} | {x['p50_ms']:.2f} | "
                     f"{x['p99_ms']:.2f} | {x['cpu_us']:.1f} | {x.get('cpu_ratio', float('nan')):.2f} |")
    lines += ["", "| target | result | measured |", "|---|---|---|"]
    for t in tg:
        lines.append(f"| {t['target']} | {t['result']} | {t['detail']} |")
    bd = breakdown(s)
    if bd:
        lines += ["", "```", *bd, "```"]
    eb = etcd_breakdown(s)
    if eb:
        lines += ["", f"etcd: {meta.get('etcd')}, sharing core 1 with wrk.", "", "```", *eb, "```"]
    ab = attack_lines(s)
    if ab:
        lines += ["", "```", *ab, "```"]
    lines += ["", "![bench chart](latest.svg)", ""]
    return "\n".join(lines)


COLORS = {"attack": "#e377c2", "lua": "#8c564b", "baseline": "#7f7f7f", "wasm": "#b0b0b0", "jwt": "#4c78a8", "guard": "#2ca02c",
          "token": "#f58518", "peer": "#9467bd", "etcd": "#17becf"}


def esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg(s: dict, tg: list[dict], meta: dict) -> str:
    """A two-panel horizontal bar chart, written by hand (no plotting library)."""
    names = list(s)
    row_h, top, left = 24, 74, 130
    pw1, lab1, gap, pw2, lab2 = 380, 120, 40, 200, 50
    width = left + pw1 + lab1 + gap + pw2 + lab2
    bottom = top + row_h * len(names)
    bd = breakdown(s) + etcd_breakdown(s) + attack_lines(s)
    height = bottom + 46 + 16 * (len(tg) + 1) + (14 * len(bd) + 12 if bd else 0)
    max_ratio = max(1.05, max(max(x["ratio_runs"] or [0]) for x in s.values()) * 1.03)
    max_cpu = max(x["cpu_us"] for x in s.values()) * 1.05 or 1.0
    X1 = lambda r: left + pw1 * r / max_ratio
    x2 = left + pw1 + lab1 + gap
    X2 = lambda c: x2 + pw2 * c / max_cpu
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'viewBox="0 0 {width} {height}" font-family="Helvetica,Arial,sans-serif" font-size="12">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         '<text x="10" y="20" font-size="15" font-weight="bold">envoy-oauth2 `make bench`: '
         'throughput relative to no filter, and Envoy CPU per request</text>',
         f'<text x="10" y="38" fill="#555">{esc(meta["date"])} · commit {esc(meta["commit"])} · '
         f'{meta["rounds"]} interleaved rounds × {meta["seconds"]:g} s · Envoy {esc(str(meta["envoy_version"]))} '
         f'--concurrency 1 (core 0) · wrk -t1 -c{meta["connections"]} (core 1)</text>',
         f'<text x="{left}" y="{top - 14}" font-weight="bold">req/s ÷ none</text>',
         f'<text x="{left + 90}" y="{top - 14}" fill="#555">(bar: median of per-round ratios; dots: rounds)</text>',
         f'<text x="{left + pw1 + 8}" y="{top - 14}" font-weight="bold">× none · req/s</text>',
         f'<text x="{x2}" y="{top - 14}" font-weight="bold">Envoy CPU µs / request (median)</text>']
    for i in range(len(names)):
        if i % 2 == 0:
            o.append(f'<rect x="4" y="{top + i * row_h}" width="{width - 8}" height="{row_h}" fill="#f6f6f6"/>')
    for r in (0.25, 0.5, 0.75, 1.0):
        if r <= max_ratio:
            o.append(f'<line x1="{X1(r):.1f}" y1="{top}" x2="{X1(r):.1f}" y2="{bottom}" stroke="#ccc"/>')
            o.append(f'<text x="{X1(r):.1f}" y="{bottom + 14}" text-anchor="middle" fill="#777">{r:g}×</text>')
    for r in (0.5, 0.65, 0.75):
        o.append(f'<line x1="{X1(r):.1f}" y1="{top}" x2="{X1(r):.1f}" y2="{bottom}" stroke="#d62728" '
                 f'stroke-dasharray="4,3"/>')
    for i, n in enumerate(names):
        x = s[n]
        y = top + i * row_h
        col = COLORS.get("etcd" if x.get("store") == "etcd" else x["group"], "#444")
        o.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{esc(n)}</text>')
        o.append(f'<rect x="{left}" y="{y + 5}" width="{max(1.0, X1(x["ratio"]) - left):.1f}" '
                 f'height="{row_h - 10}" fill="{col}"/>')
        for rr in x["ratio_runs"]:
            o.append(f'<circle cx="{X1(rr):.1f}" cy="{y + row_h / 2:.1f}" r="2.5" fill="#000" '
                     f'fill-opacity="0.55"/>')
        o.append(f'<text x="{left + pw1 + 8}" y="{y + 16}">{x["ratio"]:.2f}× · {x["rps"]:,.0f}</text>')
        o.append(f'<rect x="{x2}" y="{y + 5}" width="{max(1.0, X2(x["cpu_us"]) - x2):.1f}" '
                 f'height="{row_h - 10}" fill="{col}"/>')
        o.append(f'<text x="{X2(x["cpu_us"]) + 5:.1f}" y="{y + 16}">{x["cpu_us"]:.0f}</text>')
    y = bottom + 32
    o.append(f'<text x="10" y="{y}" fill="#d62728">Dashed red lines: targets 0.5× (/token client_credentials), '
             f'0.65× (guard-miss), 0.75× (guard-hit, guard-401). Targets are printed, never asserted:</text>')
    for t in tg:
        y += 16
        colr = {"PASS": "#2ca02c", "MISS": "#d62728"}.get(t["result"], "#777")
        o.append(f'<text x="24" y="{y}"><tspan fill="{colr}" font-weight="bold">{t["result"]}</tspan>'
                 f' {esc(t["target"])}: {esc(t["detail"])}</text>')
    if bd:
        y += 10
        for line in bd:
            y += 14
            o.append(f'<text x="10" y="{y}" font-family="Menlo,Consolas,monospace" font-size="11" '
                     f'xml:space="preserve" fill="#333">{esc(line)}</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


def git_commit() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return r.stdout.strip() + ("+dirty" if dirty else "")


def main() -> int:
    t_start = time.monotonic()
    if os.cpu_count() and os.cpu_count() < 2:
        raise BenchError("needs 2 cores (Envoy on core 0, wrk on core 1)")
    if not ENVOY_BIN.exists():
        raise BenchError(f"{ENVOY_BIN} not found: run `make setup`")
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    RUN_DIR.mkdir(parents=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    wrk_ver = ensure_wrk()
    peer_ver, peer_why = ensure_peer()
    mat = Material()
    MAT.append(mat)
    variants = make_variants(mat)
    if peer_why:
        variants = [v for v in variants if not v.peer]
        log(f"oidc-provider: NOT MEASURED: {peer_why}")
    only = [x.strip() for x in os.environ.get("BENCH_VARIANTS", "").split(",") if x.strip()]
    if only:
        unknown = set(only) - {v.name for v in variants} - {"none"}
        if unknown:
            raise BenchError(f"BENCH_VARIANTS: unknown {sorted(unknown)}; known: {[v.name for v in variants]}")
        # `none` always runs (every ratio is to it); an etcd-* variant brings its shared-data
        # counterpart (its ratio is to that).
        wanted = set(only) | {v.vs for v in variants if v.name in only and v.vs}
        added = sorted(wanted - set(only))
        if added:
            log(f"BENCH_VARIANTS: adding {', '.join(added)} (the twins the named variants are compared with)")
        variants = [v for v in variants if v.name.removesuffix("@base") in wanted or v.name == "none"]
    else:
        variants = [v for v in variants if not v.experiment]
    envoy_full = subprocess.run([str(ENVOY_BIN), "--version"], capture_output=True, text=True).stdout.strip()
    m = re.search(r"/(\d+\.\d+\.\d+)/", envoy_full)
    envoy_ver = m.group(1) if m else envoy_full
    est = ROUNDS * len(variants) * (WARMUP + SECONDS + 3)
    log(f"bench: {len(variants)} variants x {ROUNDS} rounds, {WARMUP:g}+{SECONDS:g} s each "
        f"(about {est / 60:.0f} min); Envoy {envoy_ver} --concurrency 1 on core {ENVOY_CORE}, "
        f"{wrk_ver.split(' [')[0]} -t1 -c{CONNECTIONS} on core {LOAD_CORE}")
    if any(v.etcd for v in variants):
        if shutil.which(ETCD_BIN) is None:
            raise BenchError(f"no etcd ({ETCD_BIN}) for the etcd-* variants: run `make setup` "
                             "(it installs etcd-server), or leave them out with BENCH_VARIANTS")
        ETCD.append(EtcdCluster())
        etcd_ver = subprocess.run([ETCD_BIN, "--version"], capture_output=True, text=True).stdout.split("\n")[0].replace(" Version:", "")
        log(f"etcd: {etcd_ver}, {ETCD_MEMBERS} members on 127.0.0.1:{','.join(map(str, ETCD[0].client_ports))} "
            f"(core {ETCD_CORE}, data in {ETCD[0].dir})")
    else:
        etcd_ver = None
    runs = []
    for rnd in range(1, ROUNDS + 1):
        for v in variants:
            r = measure(v, rnd)
            runs.append(r)
            warn = f"  [other processes used {r['other_cpu_pct']:.0f}% of a core]" if r["other_cpu_pct"] > 10 else ""
            ec = f"  etcd {r['etcd']['cpu_us_per_req']:.0f} us/req" if "etcd" in r else ""
            if "attack" in r:
                ec += f"  attack {r['attack']['rps']:.0f} req/s"
            if "success_pct" in r:
                ec += f"  success {r['success_pct']:.2f}%"
            log(f"  round {rnd}  {v.name:<18} {r['rps']:>8.0f} req/s  p50 {r['latency_us']['p50'] / 1e3:5.2f} ms"
                f"  p99 {r['latency_us']['p99'] / 1e3:6.2f} ms  {r['server_cpu_us_per_req']:6.1f} us/req{ec}{warn}")
    s = summarize(variants, runs)
    tg = targets(s)
    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": git_commit(),
        "rounds": ROUNDS, "seconds": SECONDS, "warmup": WARMUP, "connections": CONNECTIONS,
        "envoy": envoy_full, "envoy_version": envoy_ver, "wrk": wrk_ver, "peer": peer_ver, "peer_not_measured": peer_why,
        "cpu": next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                     if l.startswith("model name")), platform.processor()),
        "cores": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
        "pbkdf2_iterations": HASH_ITERATIONS, "nice": NICE if os.geteuid() == 0 else None,
        "etcd": etcd_ver and f"{etcd_ver}, {ETCD_MEMBERS} members on core {ETCD_CORE}",
        "method": "one Envoy per run (--concurrency 1, taskset core 0); wrk -t1 on core 1; warm-up then "
                  "measured run; ratio to `none` per round, then median; CPU = utime+stime of the server "
                  "process over the measured run / requests",
        "elapsed_s": None, "quiet_wait_s": None,
    }
    first = [r for r in runs if "first_ms" in r]
    log("")
    log(table(s))
    log("")
    for t in tg:
        log(f"  {t['result']:<4}  {t['target']:<48} {t['detail']}")
    log("")
    bd = breakdown(s)
    for line in bd:
        log(line)
    if bd:
        log("")
    eb = etcd_breakdown(s)
    for line in eb:
        log(line)
    if eb:
        log("")
    ab = attack_lines(s)
    for line in ab:
        log(line)
    if ab:
        log("")
    if first:
        log(f"Client secrets are PBKDF2-SHA256 ({HASH_ITERATIONS} iterations, `hash-secret --iterations "
            f"{HASH_ITERATIONS}`). The per-worker credential cache makes that a one-time cost: the first "
            f"/token of a fresh Envoy took {med([r['first_ms'] for r in first]):.1f} ms, the next ones "
            f"{med([r['second_ms'] for r in first]):.1f} ms (medians, one connection per request); "
            f"measured requests never pay it.")
    log("Guard variants: the measured listener has only the guard filter; tokens come from a token "
        "filter on a second listener of the same Envoy (same vm_id, shared store).")
    if peer_why:
        log(f"oidc-provider was not measured: {peer_why}")
    noisy = [r for r in runs if r["other_cpu_pct"] > 10]
    if noisy:
        log(f"NOTE: in {len(noisy)} of {len(runs)} runs other processes on this machine used more than 10% "
            f"of a core; interleaved rounds spread that over every variant, but ratios are noisier.")
    meta["elapsed_s"] = round(time.monotonic() - t_start, 1)
    meta["quiet_wait_s"] = round(QUIET["waited_s"], 1)
    doc = {"meta": meta, "summary": s, "targets": tg, "breakdown": bd, "etcd": eb, "attack": ab, "runs": runs}
    (OUT_DIR / "latest.json").write_text(json.dumps(doc, indent=1) + "\n")
    (OUT_DIR / "latest.svg").write_text(svg(s, tg, meta))
    (OUT_DIR / "latest.md").write_text(markdown(s, tg, meta))
    if ETCD:
        ETCD[0].close()
    stop_all()
    alive = [p.pid for p in STARTED if p.poll() is None]
    if alive:
        raise BenchError(f"processes still running: {alive}")
    log(f"wrote {OUT_DIR / 'latest.json'}, latest.svg, latest.md; {len(STARTED)} processes started, "
        f"all stopped; {meta['elapsed_s'] / 60:.1f} min")
    return 0


def render(path: Path) -> int:
    """`run.py --render results/latest.json`: rewrite latest.svg/.md from a JSON of runs."""
    doc = json.loads(path.read_text())
    meta = doc["meta"]
    meta.setdefault("envoy_version", meta.get("envoy", "?"))
    (path.parent / "latest.svg").write_text(svg(doc["summary"], doc["targets"], meta))
    (path.parent / "latest.md").write_text(markdown(doc["summary"], doc["targets"], meta))
    log(table(doc["summary"]))
    return 0


if __name__ == "__main__":
    try:
        if len(sys.argv) == 3 and sys.argv[1] == "--render":
            sys.exit(render(Path(sys.argv[2])))
        sys.exit(main())
    except BenchError as e:
        stop_all()
        sys.stderr.write(f"\nBENCH FAILED: {e}\n")
        sys.exit(1)
