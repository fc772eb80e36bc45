#!/usr/bin/env python3
"""A small process supervisor for envoy/run-fleet.sh (Python 3 stdlib only).

    supervise.py SPEC.json [BANNER.txt]

SPEC is a JSON list of processes, started in order, one group after the other:

    [{"name": "etcd0", "group": 0, "argv": ["etcd", ...], "log": "/path/etcd.log",
      "append": true, "ready_url": "http://127.0.0.1:23790/health",
      "ready_contains": "\"health\":\"true\"", "ready_timeout": 20, "stop_grace": 1.5}, ...]

- Every process of a group is started, then each must pass its readiness check (an HTTP
  GET whose body contains `ready_contains`) within `ready_timeout` seconds before the next
  group starts. A process that exits or is not ready in time during this start stops
  everything (exit 1): a configuration error is not retried.
- Then it supervises: a process that exits is started again after a backoff of 1 s,
  doubled on each exit in a row up to SUPERVISE_BACKOFF_MAX seconds (default 30); a run
  of at least 60 s resets the backoff. Nothing else is restarted.
- SIGINT or SIGTERM stops everything: the groups in reverse order (Envoys before etcd),
  each process with SIGTERM and, after its `stop_grace` seconds, SIGKILL; then it exits.
- It signals only its own children that have not been reaped: a child's pid stays
  reserved (a zombie at worst) until this process waits for it, and only this process
  does, in the same thread that signals (Popen.send_signal polls first and does nothing
  for a reaped child). So a reused pid is never hit.
- Each child gets PR_SET_PDEATHSIG=SIGKILL: if the supervisor itself is killed
  (SIGKILL, a crash), the kernel kills its children too. Children run in their own
  process group, so a terminal's Ctrl-C reaches only the supervisor, which stops them
  in order.
- `<FLEET_DIR>/supervisor.pids` (next to SPEC) lists `name pid` of the running children,
  rewritten on every start.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

PR_SET_PDEATHSIG = 1
BACKOFF_MIN = 1.0
BACKOFF_MAX = float(os.environ.get("SUPERVISE_BACKOFF_MAX", "30"))
STABLE_RUN = 60.0

stopping = False
SUPERVISOR_PID = os.getpid()


def say(msg):
    print(f"run-fleet: {msg}", flush=True)


def on_signal(signum, _frame):
    global stopping
    stopping = True


def child_setup():
    """In the child, before exec: own process group; die with the supervisor."""
    os.setpgid(0, 0)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass
    # The supervisor may have died between fork and prctl: then we are orphaned.
    if os.getppid() != SUPERVISOR_PID:
        os._exit(1)


class Proc:
    def __init__(self, spec):
        self.spec = spec
        self.name = spec["name"]
        self.group = spec.get("group", 0)
        self.popen = None
        self.started_at = 0.0
        self.backoff = BACKOFF_MIN
        self.restart_at = None  # monotonic time of the next start, while it is down

    def start(self):
        mode = "ab" if self.spec.get("append", True) else "wb"
        with open(self.spec["log"], mode) as log:
            self.popen = subprocess.Popen(
                self.spec["argv"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=child_setup,
                close_fds=True,
            )
        self.started_at = time.monotonic()
        self.restart_at = None

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig):
        # send_signal polls first: a reaped child (whose pid may be reused) is left alone.
        if self.popen is not None:
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass

    def ready(self):
        url = self.spec.get("ready_url")
        if not url:
            return True
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                body = r.read().decode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - any failure is "not ready yet"
            return False
        return self.spec.get("ready_contains", "") in body


def log_tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def write_pids(procs, path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for p in procs:
            if p.alive():
                f.write(f"{p.name} {p.popen.pid}\n")
    os.replace(tmp, path)


def stop_all(procs):
    groups = sorted({p.group for p in procs}, reverse=True)
    for g in groups:
        members = [p for p in procs if p.group == g and p.alive()]
        for p in members:
            p.signal(signal.SIGTERM)
        grace = max([p.spec.get("stop_grace", 5.0) for p in members] or [0])
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p.alive() for p in members):
            time.sleep(0.05)
        for p in members:
            if p.alive():
                p.signal(signal.SIGKILL)
        for p in members:
            if p.popen is not None:
                try:
                    p.popen.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    say(f"{p.name} (pid {p.popen.pid}) did not exit after SIGKILL")


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    spec_path = sys.argv[1]
    banner = sys.argv[2] if len(sys.argv) > 2 else None
    with open(spec_path) as f:
        procs = [Proc(s) for s in json.load(f)]
    pids_path = os.path.join(os.path.dirname(os.path.abspath(spec_path)), "supervisor.pids")
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    rc = 0
    try:
        # --- start, group by group -------------------------------------------------
        for g in sorted({p.group for p in procs}):
            members = [p for p in procs if p.group == g]
            for p in members:
                p.start()
            write_pids(procs, pids_path)
            for p in members:
                deadline = time.monotonic() + p.spec.get("ready_timeout", 30)
                while not stopping and not p.ready():
                    if not p.alive():
                        say(f"{p.name} exited during start (log: {p.spec['log']}):\n"
                            + log_tail(p.spec["log"]))
                        return 1
                    if time.monotonic() > deadline:
                        say(f"{p.name} not ready after {p.spec.get('ready_timeout', 30)} s "
                            f"(log: {p.spec['log']}):\n" + log_tail(p.spec["log"]))
                        return 1
                    time.sleep(0.1)
                if stopping:
                    return 0
            say("ready: " + ", ".join(f"{p.name} pid {p.popen.pid}" for p in members))
        if banner:
            with open(banner) as f:
                print(f.read(), flush=True)

        # --- supervise ---------------------------------------------------------------
        while not stopping:
            changed = False
            now = time.monotonic()
            for p in procs:
                if p.restart_at is None and not p.alive():
                    ran = now - p.started_at
                    if ran >= STABLE_RUN:
                        p.backoff = BACKOFF_MIN
                    say(f"{p.name} (pid {p.popen.pid}) exited with {p.popen.returncode} "
                        f"after {ran:.1f} s; restarting in {p.backoff:.0f} s "
                        f"(log: {p.spec['log']})")
                    p.restart_at = now + p.backoff
                    p.backoff = min(p.backoff * 2, BACKOFF_MAX)
                    changed = True
                elif p.restart_at is not None and now >= p.restart_at and not stopping:
                    p.start()
                    say(f"{p.name} restarted (pid {p.popen.pid})")
                    changed = True
            if changed:
                write_pids(procs, pids_path)
            time.sleep(0.2)
        rc = 0
    finally:
        say("stopping")
        stop_all(procs)
        try:
            os.remove(pids_path)
        except OSError:
            pass
        say("stopped; nothing left running")
    return rc


if __name__ == "__main__":
    sys.exit(main())
