#!/usr/bin/env bash
# Overload a local 3-node cluster and check that it degrades the way it should: clients
# get -TRYAGAIN rather than time out, no peer message is dropped, and the leader never
# changes, even while every node writes snapshots of 100+ MB to the one disk.
#
#   scripts/overload.sh [--out DIR] [--flood-secs 60] [--connections-secs 60] [--keys-secs 120]
#   (a duration of 0 skips that run)
#
# Three runs of kvbench against one fresh cluster (scripts/cluster.sh, release binaries):
#   flood        200 connections, pipelines of 64 SETs, spread over every node
#   connections  256 connections, one SET at a time, spread over every node
#   keys         50 connections, pipelines of 64 SETs over 1,000,000 distinct keys of 128 B:
#                every node writes snapshots of the whole state (well over 100 MB) meanwhile
# Before and after each run it reads every node's /metrics and prints, per run: operations,
# errors by kind (tryagain, unknown, timeout, connection), elections won, leader changes
# kvbench saw, how often a node lost its leader for a moment (a follower that missed an
# election timeout of heartbeats and pre-campaigned in vain), peer messages dropped (queue
# full, inbound, send failures), and the largest snapshot. Exits 1 if any run held an
# election, dropped a peer message or timed out a client. Writes kvbench's JSON and each
# node's log to --out (default ./overload-report).
#
# Settings (environment): RAFTKV_BIN_DIR (prebuilt binaries; default: build release),
# OVERLOAD_BASE_PORT (16380: clients BASE+i, peers BASE+1000+i, metrics BASE+2000+i).
set -euo pipefail

REPO_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="$PWD/overload-report"
FLOOD_SECS=60
CONNECTIONS_SECS=60
KEYS_SECS=120
BASE_PORT="${OVERLOAD_BASE_PORT:-16380}"
NODES=3

usage() {
    sed --quiet '2,24s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) OUT_DIR="$2"; shift 2 ;;
        --flood-secs) FLOOD_SECS="$2"; shift 2 ;;
        --connections-secs) CONNECTIONS_SECS="$2"; shift 2 ;;
        --keys-secs) KEYS_SECS="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "overload.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
DATA_DIR="$OUT_DIR/data"
rm -rf "$DATA_DIR"

if [[ -z "${RAFTKV_BIN_DIR:-}" ]]; then
    echo "== building release binaries"
    (cd "$REPO_DIR" && cargo build --release -p kvnode -p benches --bin kvnode --bin kvctl --bin kvbench)
    RAFTKV_BIN_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}/release"
fi
KVBENCH="$RAFTKV_BIN_DIR/kvbench"
[[ -x "$KVBENCH" ]] || { echo "overload.sh: $KVBENCH is missing" >&2; exit 2; }

export RAFTKV_BIN_DIR RAFTKV_SKIP_BUILD=1 RAFTKV_DATA_DIR="$DATA_DIR"
export RAFTKV_BASE_CLIENT_PORT="$BASE_PORT"
export RAFTKV_BASE_PEER_PORT=$((BASE_PORT + 1000))
export RAFTKV_BASE_METRICS_PORT=$((BASE_PORT + 2000))
CLUSTER="$REPO_DIR/scripts/cluster.sh"

stop_cluster() {
    local status=$?
    "$CLUSTER" down >/dev/null 2>&1 || true
    for id in $(seq 1 "$NODES"); do
        cp "$DATA_DIR/node-$id/kvnode.log" "$OUT_DIR/node-$id.log" 2>/dev/null || true
    done
    rm -rf "$DATA_DIR"
    exit "$status"
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM

"$CLUSTER" up "$NODES" >/dev/null
ENDPOINTS=$(seq -s, -f "127.0.0.1:%g" $((BASE_PORT + 1)) $((BASE_PORT + NODES)))

# One metric summed over every node's /metrics (0 if absent).
metric_sum() {
    local name="$1" total=0 id value
    for id in $(seq 1 "$NODES"); do
        value=$(exec 3<>"/dev/tcp/127.0.0.1/$((RAFTKV_BASE_METRICS_PORT + id))" &&
            printf 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n' >&3 &&
            timeout 5 cat <&3 | awk -v name="$name" '$1 ~ "^"name"({|$)" { sum += $2 } END { printf "%d", sum }')
        total=$((total + ${value:-0}))
    done
    echo "$total"
}

metric_max() {
    local name="$1" best=0 id value
    for id in $(seq 1 "$NODES"); do
        value=$(exec 3<>"/dev/tcp/127.0.0.1/$((RAFTKV_BASE_METRICS_PORT + id))" &&
            printf 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n' >&3 &&
            timeout 5 cat <&3 | awk -v name="$name" '$1 == name { printf "%d", $2 }')
        [[ ${value:-0} -gt $best ]] && best=$value
    done
    echo "$best"
}

COUNTERS=(raftkv_elections_won_total raftkv_leader_changes_total raftkv_peer_drops_total raftkv_peer_inbound_drops_total raftkv_peer_send_failures_total)
FAILED=0
ROWS=()

run() {
    local name="$1" secs="$2"
    shift 2
    [[ $secs -gt 0 ]] || return 0
    local -A before
    local counter
    for counter in "${COUNTERS[@]}"; do
        before[$counter]=$(metric_sum "$counter")
    done
    echo "== $name: $secs s"
    "$KVBENCH" --endpoints "$ENDPOINTS" --spread --duration "$secs" --warmup 1 \
        --timeout-ms 2000 --quiet --json "$OUT_DIR/$name.json" "$@" >"$OUT_DIR/$name.txt"
    local elections changes drops inbound send snapshot
    elections=$(($(metric_sum raftkv_elections_won_total) - before[raftkv_elections_won_total]))
    changes=$(($(metric_sum raftkv_leader_changes_total) - before[raftkv_leader_changes_total]))
    drops=$(($(metric_sum raftkv_peer_drops_total) - before[raftkv_peer_drops_total]))
    inbound=$(($(metric_sum raftkv_peer_inbound_drops_total) - before[raftkv_peer_inbound_drops_total]))
    send=$(($(metric_sum raftkv_peer_send_failures_total) - before[raftkv_peer_send_failures_total]))
    snapshot=$(metric_max raftkv_snapshot_bytes)
    local row
    row=$(python3 - "$OUT_DIR/$name.json" "$name" "$elections" "$changes" "$drops" "$inbound" "$send" "$snapshot" <<'PY'
import json, sys
path, name, elections, changes, drops, inbound, send, snapshot = sys.argv[1:]
result = json.load(open(path))
errors = result["errors"]
kvbench_changes = result["leader_changes"]
print(f"| {name} | {result['ops']:,} | {result['throughput_ops_s']:,.0f} | "
      f"{errors['tryagain']} | {errors['unknown']} | {errors['timeout']} | {errors['connection']} | "
      f"{elections} | {kvbench_changes} | {changes} | {drops} / {inbound} / {send} | {int(snapshot) / 2**20:.0f} MiB |")
PY
)
    ROWS+=("$row")
    echo "$row"
    local timeouts
    timeouts=$(python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["errors"]; print(e["timeout"]+e["connection"])' "$OUT_DIR/$name.json")
    if [[ $elections -ne 0 || $drops -ne 0 || $inbound -ne 0 || $send -ne 0 || $timeouts -ne 0 ]]; then
        FAILED=1
    fi
}

run flood "$FLOOD_SECS" -c 200 -P 64
run connections "$CONNECTIONS_SECS" -c 256
run keys "$KEYS_SECS" -c 50 -P 64 --keyspace 1000000 --value-size 128

{
    echo "| run | ops | ops/s | tryagain | unknown | timeout | connection | elections | leader changes kvbench saw | times a node lost its leader | peer drops (queue / inbound / send) | largest snapshot |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$OUT_DIR/summary.md"
if [[ $FAILED -ne 0 ]]; then
    echo "overload.sh: a run changed leader, dropped peer messages or timed out clients" >&2
    exit 1
fi
