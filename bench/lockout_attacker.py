#!/usr/bin/env python3
"""The attacker of `make bench`'s attack-lockout variant (bench/run.py starts it on core 1,
beside wrk, and stops it with SIGINT).

    lockout_attacker.py HOST PORT SOURCE_ADDRESS CLIENT_ID CONNECTIONS

CONNECTIONS threads, each with a keep-alive HTTP/1.1 connection bound to SOURCE_ADDRESS
(e.g. 127.0.0.2: wrk cannot bind a source address), send `POST /token`
grant_type=client_credentials for CLIENT_ID with a wrong secret (a fresh random one per
request) as fast as they can. On SIGINT or SIGTERM it prints one line
`ATTACK_RESULT {json}`: requests, counts per status, socket errors, duration,
connections opened.

Python standard library only.
"""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import signal
import sys
import threading
import time


def main() -> int:
    host, port, source, client_id, conns = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    stop = threading.Event()
    lock = threading.Lock()
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    connects = [0]

    def on_signal(_sig, _frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def worker() -> None:
        c = None
        while not stop.is_set():
            try:
                if c is None:
                    c = http.client.HTTPConnection(host, port, timeout=5, source_address=(source, 0))
                    with lock:
                        connects[0] += 1
                secret = secrets.token_urlsafe(12)
                auth = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
                c.request("POST", "/token", body="grant_type=client_credentials",
                          headers={"Content-Type": "application/x-www-form-urlencoded",
                                   "Authorization": "Basic " + auth})
                r = c.getresponse()
                r.read()
                with lock:
                    statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
                if r.will_close:
                    c.close()
                    c = None
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                if c is not None:
                    c.close()
                c = None
                time.sleep(0.01)
        if c is not None:
            c.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(conns)]
    for t in threads:
        t.start()
    while not stop.wait(0.2):
        pass
    for t in threads:
        t.join(timeout=10)
    dur = time.monotonic() - t0
    with lock:
        out = {"requests": sum(statuses.values()), "statuses": dict(statuses), "errors": dict(errors),
               "duration_s": round(dur, 3), "source": source, "connections": connects[0]}
    print("ATTACK_RESULT " + json.dumps(out, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
