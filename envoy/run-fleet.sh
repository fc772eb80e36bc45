#!/usr/bin/env bash
# Fleet demo: a 3-member etcd cluster and two Envoys (A and B) sharing tokens through it.
#
#   make run-fleet          (runs `make setup build` first; Ctrl-C stops everything)
#
#   etcd     client 127.0.0.1:23790-23792, peer 23800-23802, data in .run/fleet/etcd{0,1,2}
#   Envoy A  http 8280, https 8243, admin 9901, demo upstream 8290
#   Envoy B  http 8281, https 8244, admin 9902, demo upstream 8291
#
# Both Envoys run envoy/fleet.yaml with its ${...} port placeholders filled in.
# The etcd data dirs persist between runs (tokens survive a restart); `rm -rf .run/fleet`
# starts from an empty store.
#
# Environment (defaults in brackets):
#   ENVOY [.venv/bin/envoy]   ETCD [etcd]   FLEET_DIR [.run/fleet]
#   WASM [target/wasm32-wasip1/release/envoy_oauth2.wasm]   FLEET_YAML [envoy/fleet.yaml]
#   ETCD_CLIENT_PORT [23790]  ETCD_PEER_PORT [23800]   first of three consecutive ports each
#   ENVOY_LOG_LEVEL [info]
# The Envoy listener ports are fixed (envoy/fleet.yaml's demo-spa redirect URIs name 8280
# and 8281); ETCD_CLIENT_PORT other than 23790 also rewrites the etcd cluster's endpoints.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ENVOY=${ENVOY:-$ROOT/.venv/bin/envoy}
ETCD=${ETCD:-etcd}
FLEET_DIR=${FLEET_DIR:-.run/fleet}
WASM=${WASM:-target/wasm32-wasip1/release/envoy_oauth2.wasm}
FLEET_YAML=${FLEET_YAML:-envoy/fleet.yaml}
ETCD_CLIENT_PORT=${ETCD_CLIENT_PORT:-23790}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-23800}
LOG_LEVEL=${ENVOY_LOG_LEVEL:-info}

NAMES=(A B)
HTTP_PORTS=(8280 8281)
HTTPS_PORTS=(8243 8244)
ADMIN_PORTS=(9901 9902)
DEMO_PORTS=(8290 8291)
BASE_IDS=(7101 7102)

PIDS=()        # everything this script started, killed in reverse order on exit
say() { printf 'run-fleet: %s\n' "$*"; }
die() { printf 'run-fleet: %s\n' "$*" >&2; exit 1; }

# Stops pids with SIGTERM, then SIGKILL after $1 tenths of a second.
stop() {
  local grace=$1 p alive; shift
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq "$grace"); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((${#PIDS[@]})); then
    say "stopping ${#PIDS[@]} processes (${PIDS[*]})"
    # Envoys first; then etcd. A stopping etcd leader tries to hand its leadership to a
    # member that is stopping too and hangs for seconds: etcd is crash-safe (WAL), so
    # after a short grace it gets SIGKILL.
    ((${#PIDS[@]} > 3)) && stop 50 "${PIDS[@]:3}"
    stop 15 "${PIDS[@]:0:3}"
    wait 2>/dev/null || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ -x "$ENVOY" ] || die "no Envoy at $ENVOY: run \`make setup\`"
command -v "$ETCD" >/dev/null || die "no etcd ($ETCD): run \`make setup\` (apt-get install etcd-server etcd-client)"
[ -s "$WASM" ] || die "no $WASM: run \`make build\`"
[ -s "$FLEET_YAML" ] || die "no $FLEET_YAML"
[ -s .run/tls/cert.pem ] || die "no .run/tls/cert.pem: run \`make setup\`"
command -v curl >/dev/null || die "no curl: run \`make setup\`"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ETCD_CLIENT=() ETCD_PEER=()
for i in 0 1 2; do
  ETCD_CLIENT+=($((ETCD_CLIENT_PORT + i)))
  ETCD_PEER+=($((ETCD_PEER_PORT + i)))
done
for p in "${ETCD_CLIENT[@]}" "${ETCD_PEER[@]}" "${HTTP_PORTS[@]}" "${HTTPS_PORTS[@]}" \
         "${ADMIN_PORTS[@]}" "${DEMO_PORTS[@]}"; do
  if listening "$p"; then
    who=$(ss -ltnpH "sport = :$p" 2>/dev/null | grep -o 'users:.*' | head -1 || true)
    die "port 127.0.0.1:$p is already in use ${who:+($who)}: stop that first"
  fi
done

mkdir -p "$FLEET_DIR"
FLEET_DIR=$(cd "$FLEET_DIR" && pwd)

# --- etcd ---------------------------------------------------------------------------
INITIAL=""
for i in 0 1 2; do INITIAL+="${INITIAL:+,}etcd$i=http://127.0.0.1:${ETCD_PEER[i]}"; done
# A data dir made for other peer URLs would not rejoin: start that cluster afresh.
if [ -f "$FLEET_DIR/cluster.txt" ] && [ "$(cat "$FLEET_DIR/cluster.txt")" != "$INITIAL" ]; then
  say "etcd data in $FLEET_DIR was made for another cluster ($(cat "$FLEET_DIR/cluster.txt")): removing it"
  rm -rf "$FLEET_DIR"/etcd0 "$FLEET_DIR"/etcd1 "$FLEET_DIR"/etcd2
fi
echo "$INITIAL" >"$FLEET_DIR/cluster.txt"
TOKEN_FILE=$FLEET_DIR/cluster-token
[ -s "$TOKEN_FILE" ] || echo "envoy-oauth2-fleet-$(date +%s)-$$" >"$TOKEN_FILE"

for i in 0 1 2; do
  c=http://127.0.0.1:${ETCD_CLIENT[i]} p=http://127.0.0.1:${ETCD_PEER[i]}
  mkdir -p "$FLEET_DIR/etcd$i"
  "$ETCD" --name "etcd$i" --data-dir "$FLEET_DIR/etcd$i/data" \
    --listen-client-urls "$c" --advertise-client-urls "$c" \
    --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
    --initial-cluster "$INITIAL" --initial-cluster-token "$(cat "$TOKEN_FILE")" \
    --initial-cluster-state new \
    --heartbeat-interval 50 --election-timeout 500 \
    --auto-compaction-mode periodic --auto-compaction-retention 1h \
    --quota-backend-bytes $((2 * 1024 * 1024 * 1024)) \
    --logger zap --experimental-enable-lease-checkpoint --experimental-enable-lease-checkpoint-persist \
    </dev/null >>"$FLEET_DIR/etcd$i/etcd.log" 2>&1 &
  PIDS+=($!)
done

tail_log() { say "--- $1 (last 15 lines) ---"; tail -n 15 "$1" >&2 || true; }
healthy() { curl -s --max-time 1 "http://127.0.0.1:$1/health" | grep -q '"health":"true"'; }

deadline=$((SECONDS + 20))
for i in 0 1 2; do
  until healthy "${ETCD_CLIENT[i]}"; do
    kill -0 "${PIDS[i]}" 2>/dev/null || { tail_log "$FLEET_DIR/etcd$i/etcd.log"; die "etcd$i exited"; }
    ((SECONDS < deadline)) || { tail_log "$FLEET_DIR/etcd$i/etcd.log"; die "etcd$i not healthy after 20 s"; }
    sleep 0.1
  done
done
say "etcd cluster healthy: client ports ${ETCD_CLIENT[*]} (pids ${PIDS[*]:0:3})"

# --- Envoys -------------------------------------------------------------------------
ENVOY_PIDS=()
for n in 0 1; do
  name=${NAMES[n]}
  cfg=$FLEET_DIR/envoy-$name.yaml log=$FLEET_DIR/envoy-$name.log
  sed -e "s/\${HTTP_PORT}/${HTTP_PORTS[n]}/g" -e "s/\${HTTPS_PORT}/${HTTPS_PORTS[n]}/g" \
      -e "s/\${ADMIN_PORT}/${ADMIN_PORTS[n]}/g" -e "s/\${DEMO_PORT}/${DEMO_PORTS[n]}/g" \
      -e "s#filename: target/wasm32-wasip1/release/envoy_oauth2.wasm#filename: $WASM#" \
      -e "s/port_value: 23790 }/port_value: ${ETCD_CLIENT[0]} }/" \
      -e "s/port_value: 23791 }/port_value: ${ETCD_CLIENT[1]} }/" \
      -e "s/port_value: 23792 }/port_value: ${ETCD_CLIENT[2]} }/" \
      "$FLEET_YAML" >"$cfg"
  if grep -q '\${' "$cfg"; then die "unfilled placeholder in $cfg: $(grep -o '\${[A-Z_]*}' "$cfg" | sort -u | tr '\n' ' ')"; fi
  "$ENVOY" -c "$cfg" --concurrency 2 --base-id "${BASE_IDS[n]}" --disable-hot-restart \
    --log-level "$LOG_LEVEL" </dev/null >"$log" 2>&1 &
  PIDS+=($!) ENVOY_PIDS+=($!)
done

deadline=$((SECONDS + 60))
for n in 0 1; do
  log=$FLEET_DIR/envoy-${NAMES[n]}.log
  until [ "$(curl -s --max-time 1 "http://127.0.0.1:${ADMIN_PORTS[n]}/ready" 2>/dev/null)" = LIVE ]; do
    if ! kill -0 "${ENVOY_PIDS[n]}" 2>/dev/null; then
      grep -E 'invalid plugin configuration|error' "$log" | tail -n 5 >&2 || true
      die "Envoy ${NAMES[n]} exited: it refused its configuration (log: $log)"
    fi
    ((SECONDS < deadline)) || { tail_log "$log"; die "Envoy ${NAMES[n]} not LIVE after 60 s"; }
    sleep 0.2
  done
done

# LIVE comes after the first health-check round, which can time out while the workers
# compile the module; the members turn healthy on the next round (0.2 s later).
deadline=$((SECONDS + 5))
for n in 0 1; do
  until curl -s --max-time 1 "http://127.0.0.1:${ADMIN_PORTS[n]}/stats?filter=^cluster\.etcd\.membership_healthy$" \
          | grep -qx 'cluster.etcd.membership_healthy: 3'; do
    ((SECONDS < deadline)) || { say "warning: Envoy ${NAMES[n]} does not see all 3 etcd members healthy (admin :${ADMIN_PORTS[n]}/clusters)"; break; }
    sleep 0.1
  done
done

cat <<EOF

  etcd     127.0.0.1:${ETCD_CLIENT[0]},${ETCD_CLIENT[1]},${ETCD_CLIENT[2]}   data+logs $FLEET_DIR/etcd{0,1,2}   pids ${PIDS[*]:0:3}
  Envoy A  http :${HTTP_PORTS[0]}  https :${HTTPS_PORTS[0]}  admin :${ADMIN_PORTS[0]}  demo :${DEMO_PORTS[0]}   log $FLEET_DIR/envoy-A.log  pid ${ENVOY_PIDS[0]}
  Envoy B  http :${HTTP_PORTS[1]}  https :${HTTPS_PORTS[1]}  admin :${ADMIN_PORTS[1]}  demo :${DEMO_PORTS[1]}   log $FLEET_DIR/envoy-B.log  pid ${ENVOY_PIDS[1]}

Try it: a token issued by A, accepted by B.

  AT=\$(curl -s -u 'IZsIi6HDbB5e8VKdZAnUi_fZ3f8a:Gm0bJ6oWV8fC5OQLLlC6jslACW8a' \\
        -d 'grant_type=password&username=admin&password=admin&scope=PRODUCTION' \\
        http://127.0.0.1:${HTTP_PORTS[0]}/token | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
  curl -s http://127.0.0.1:${HTTP_PORTS[1]}/api/hello -H "Authorization: Bearer \$AT"
  curl -s -u 'IZsIi6HDbB5e8VKdZAnUi_fZ3f8a:Gm0bJ6oWV8fC5OQLLlC6jslACW8a' -d "token=\$AT" http://127.0.0.1:${HTTP_PORTS[1]}/revoke
  curl -s -o /dev/null -w '%{http_code}\n' http://127.0.0.1:${HTTP_PORTS[0]}/api/hello -H "Authorization: Bearer \$AT"   # 401

  The keys:  ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:${ETCD_CLIENT[0]} get --prefix /envoy-oauth2/ --keys-only
  Stop one member (the other two keep the quorum): kill -STOP ${PIDS[1]}   and back: kill -CONT ${PIDS[1]}
  (or kill it: kill ${PIDS[1]}; it stays down until the next make run-fleet)

Ctrl-C stops all of it.
EOF

# Runs until Ctrl-C or until an Envoy exits (an etcd member may die: the fleet goes on).
set +e
while kill -0 "${ENVOY_PIDS[0]}" 2>/dev/null && kill -0 "${ENVOY_PIDS[1]}" 2>/dev/null; do
  sleep 1 & wait $!      # `wait` returns at once when a trapped signal arrives
done
for n in 0 1; do kill -0 "${ENVOY_PIDS[n]}" 2>/dev/null || say "Envoy ${NAMES[n]} exited (log: $FLEET_DIR/envoy-${NAMES[n]}.log)"; done
exit 1
