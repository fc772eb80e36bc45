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
# This script checks the ports, writes the configs, then execs envoy/supervise.py, which
# starts the processes and watches them:
# - a single Envoy or etcd member that exits is started again after a backoff of 1 s,
#   doubling to at most SUPERVISE_BACKOFF_MAX (30 s) while it keeps exiting;
# - only the supervisor's own, not yet reaped children are ever signalled (a reused pid
#   cannot be hit); each child also dies with the supervisor (PR_SET_PDEATHSIG);
# - Ctrl-C or SIGTERM stops the Envoys, then etcd, and leaves nothing running.
# The running children's pids are in $FLEET_DIR/supervisor.pids.
#
# Environment (defaults in brackets):
#   ENVOY [.venv/bin/envoy]   ETCD [etcd]   FLEET_DIR [.run/fleet]
#   WASM [target/wasm32-wasip1/release/envoy_oauth2.wasm]   FLEET_YAML [envoy/fleet.yaml]
#   ETCD_CLIENT_PORT [23790]  ETCD_PEER_PORT [23800]   first of three consecutive ports each
#   ETCD_CLIENT_PORTS, ETCD_PEER_PORTS   three ports each, any (override the two above)
#   HTTP_PORTS [8280 8281]  HTTPS_PORTS [8243 8244]  ADMIN_PORTS [9901 9902]
#   DEMO_PORTS [8290 8291]  BASE_IDS [7101 7102]      Envoy A's, then B's
#   ENVOY_LOG_LEVEL [info]  SUPERVISE_BACKOFF_MAX [30]
# envoy/fleet.yaml's demo-spa redirect URIs name 8280 and 8281: with other HTTP_PORTS the
# demo SPA's browser login does not work (tests/run_fleet_script.rs runs on free ports).
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

say() { printf 'run-fleet: %s\n' "$*"; }
die() { printf 'run-fleet: %s\n' "$*" >&2; exit 1; }

NAMES=(A B)
read -r -a HTTP_PORTS <<<"${HTTP_PORTS:-8280 8281}"
read -r -a HTTPS_PORTS <<<"${HTTPS_PORTS:-8243 8244}"
read -r -a ADMIN_PORTS <<<"${ADMIN_PORTS:-9901 9902}"
read -r -a DEMO_PORTS <<<"${DEMO_PORTS:-8290 8291}"
read -r -a BASE_IDS <<<"${BASE_IDS:-7101 7102}"
for v in HTTP_PORTS HTTPS_PORTS ADMIN_PORTS DEMO_PORTS BASE_IDS; do
  declare -n arr=$v
  ((${#arr[@]} == 2)) || die "$v must name two values (A's and B's), not '${arr[*]}'"
  unset -n arr
done

ETCD_CLIENT=() ETCD_PEER=()
for i in 0 1 2; do
  ETCD_CLIENT+=($((ETCD_CLIENT_PORT + i)))
  ETCD_PEER+=($((ETCD_PEER_PORT + i)))
done
if [ -n "${ETCD_CLIENT_PORTS:-}" ]; then read -r -a ETCD_CLIENT <<<"$ETCD_CLIENT_PORTS"; fi
if [ -n "${ETCD_PEER_PORTS:-}" ]; then read -r -a ETCD_PEER <<<"$ETCD_PEER_PORTS"; fi
((${#ETCD_CLIENT[@]} == 3 && ${#ETCD_PEER[@]} == 3)) || die "ETCD_CLIENT_PORTS and ETCD_PEER_PORTS must name three ports each"

[ -x "$ENVOY" ] || die "no Envoy at $ENVOY: run \`make setup\`"
command -v "$ETCD" >/dev/null || die "no etcd ($ETCD): run \`make setup\` (apt-get install etcd-server etcd-client)"
command -v python3 >/dev/null || die "no python3 (the supervisor, envoy/supervise.py, needs it)"
[ -s "$WASM" ] || die "no $WASM: run \`make build\`"
[ -s "$FLEET_YAML" ] || die "no $FLEET_YAML"
[ -s .run/tls/cert.pem ] || die "no .run/tls/cert.pem: run \`make setup\`"
command -v curl >/dev/null || die "no curl: run \`make setup\`"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for p in "${ETCD_CLIENT[@]}" "${ETCD_PEER[@]}" "${HTTP_PORTS[@]}" "${HTTPS_PORTS[@]}" \
         "${ADMIN_PORTS[@]}" "${DEMO_PORTS[@]}"; do
  if listening "$p"; then
    who=$(ss -ltnpH "sport = :$p" 2>/dev/null | grep -o 'users:.*' | head -1 || true)
    die "port 127.0.0.1:$p is already in use ${who:+($who)}: stop that first"
  fi
done

mkdir -p "$FLEET_DIR"
FLEET_DIR=$(cd "$FLEET_DIR" && pwd)

# --- etcd (the supervisor's group 0) ------------------------------------------------
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

# The supervisor's spec is JSON; js quotes one string (no control characters here).
js() { local x=${1//\\/\\\\}; x=${x//\"/\\\"}; printf '"%s"' "$x"; }
jargv() { local out="" a; for a in "$@"; do out+="${out:+, }$(js "$a")"; done; printf '[%s]' "$out"; }
ENTRIES=()
# name group log ready_url ready_contains ready_timeout stop_grace -- argv...
entry() {
  local name=$1 group=$2 log=$3 url=$4 want=$5 timeout=$6 grace=$7; shift 8
  ENTRIES+=("{\"name\": $(js "$name"), \"group\": $group, \"argv\": $(jargv "$@"), \"log\": $(js "$log"), \"append\": true, \"ready_url\": $(js "$url"), \"ready_contains\": $(js "$want"), \"ready_timeout\": $timeout, \"stop_grace\": $grace}")
}

for i in 0 1 2; do
  c=http://127.0.0.1:${ETCD_CLIENT[i]} p=http://127.0.0.1:${ETCD_PEER[i]}
  mkdir -p "$FLEET_DIR/etcd$i"
  # A stopping etcd leader tries to hand its leadership to a member that is stopping too
  # and hangs for seconds: etcd is crash-safe (WAL), so after 1.5 s it gets SIGKILL.
  # A restarted member rejoins from its data dir (--initial-cluster-state is then unused).
  entry "etcd$i" 0 "$FLEET_DIR/etcd$i/etcd.log" "$c/health" '"health":"true"' 20 1.5 -- \
    "$ETCD" --name "etcd$i" --data-dir "$FLEET_DIR/etcd$i/data" \
    --listen-client-urls "$c" --advertise-client-urls "$c" \
    --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
    --initial-cluster "$INITIAL" --initial-cluster-token "$(cat "$TOKEN_FILE")" \
    --initial-cluster-state new \
    --heartbeat-interval 50 --election-timeout 500 \
    --auto-compaction-mode periodic --auto-compaction-retention 1h \
    --quota-backend-bytes $((2 * 1024 * 1024 * 1024)) \
    --logger zap --experimental-enable-lease-checkpoint --experimental-enable-lease-checkpoint-persist
done

# --- Envoys (group 1: started once etcd is healthy, stopped first) -------------------
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
  : >"$log"
  entry "envoy-$name" 1 "$log" "http://127.0.0.1:${ADMIN_PORTS[n]}/ready" LIVE 60 5 -- \
    "$ENVOY" -c "$cfg" --concurrency 2 --base-id "${BASE_IDS[n]}" --disable-hot-restart \
    --log-level "$LOG_LEVEL"
done

SPEC=$FLEET_DIR/supervisor.json
{
  echo "["
  for k in "${!ENTRIES[@]}"; do
    printf '  %s%s\n' "${ENTRIES[k]}" "$( ((k + 1 < ${#ENTRIES[@]})) && echo , || true)"
  done
  echo "]"
} >"$SPEC"

BANNER=$FLEET_DIR/banner.txt
cat >"$BANNER" <<EOF

  etcd     127.0.0.1:${ETCD_CLIENT[0]},${ETCD_CLIENT[1]},${ETCD_CLIENT[2]}   data+logs $FLEET_DIR/etcd{0,1,2}
  Envoy A  http :${HTTP_PORTS[0]}  https :${HTTPS_PORTS[0]}  admin :${ADMIN_PORTS[0]}  demo :${DEMO_PORTS[0]}   log $FLEET_DIR/envoy-A.log
  Envoy B  http :${HTTP_PORTS[1]}  https :${HTTPS_PORTS[1]}  admin :${ADMIN_PORTS[1]}  demo :${DEMO_PORTS[1]}   log $FLEET_DIR/envoy-B.log
  pids     $FLEET_DIR/supervisor.pids

Try it: a token issued by A, accepted by B.

  AT=\$(curl -s -u 'IZsIi6HDbB5e8VKdZAnUi_fZ3f8a:Gm0bJ6oWV8fC5OQLLlC6jslACW8a' \\
        -d 'grant_type=password&username=admin&password=admin&scope=PRODUCTION' \\
        http://127.0.0.1:${HTTP_PORTS[0]}/token | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
  curl -s http://127.0.0.1:${HTTP_PORTS[1]}/api/hello -H "Authorization: Bearer \$AT"
  curl -s -u 'IZsIi6HDbB5e8VKdZAnUi_fZ3f8a:Gm0bJ6oWV8fC5OQLLlC6jslACW8a' -d "token=\$AT" http://127.0.0.1:${HTTP_PORTS[1]}/revoke
  curl -s -o /dev/null -w '%{http_code}\n' http://127.0.0.1:${HTTP_PORTS[0]}/api/hello -H "Authorization: Bearer \$AT"   # 401

  The keys:  ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:${ETCD_CLIENT[0]} get --prefix /envoy-oauth2/ --keys-only
  Kill one etcd member or one Envoy (kill -9 <pid>, pids in supervisor.pids): it is started
  again after a backoff (1 s, doubling to at most 30 s while it keeps exiting).

Ctrl-C stops all of it.
EOF

exec python3 "$ROOT/envoy/supervise.py" "$SPEC" "$BANNER"
