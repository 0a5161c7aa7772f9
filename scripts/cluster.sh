#!/usr/bin/env bash
# Run a local raftkv cluster on 127.0.0.1, one kvnode process per member, WAL storage.
#
#   scripts/cluster.sh up [N] [--tls] [--secret]
#                                  build release binaries, start N nodes (default 3), wait for a leader;
#                                  with --tls a new cluster's peers use mutual TLS and its client ports
#                                  speak TLS only (a throwaway CA and certificates from kvcerts, in
#                                  RAFTKV_DATA_DIR/certs; redis-cli --tls --cacert .../certs/ca.pem);
#                                  --secret: a cluster secret too (RAFTKV_DATA_DIR/cluster.secret)
#   scripts/cluster.sh down        stop every node (SIGTERM, then SIGKILL after a bounded wait)
#   scripts/cluster.sh status      which nodes run, and kvctl's table of the members
#   scripts/cluster.sh kill ID     kill -9 node ID (to test fail-over)
#   scripts/cluster.sh restart ID  stop node ID if it runs, start it again with the same settings
#   scripts/cluster.sh logs ID     the last lines of node ID's log (--follow to keep reading)
#   scripts/cluster.sh clean       down, then remove the data directory
#
# Node i listens on RAFTKV_HOST (127.0.0.1) ports RAFTKV_BASE_PEER_PORT+i (peers),
# RAFTKV_BASE_CLIENT_PORT+i (Redis clients) and RAFTKV_BASE_METRICS_PORT+i (Prometheus), and
# keeps its WAL, config (kvnode.toml), log (kvnode.log) and pid (kvnode.pid) in
# RAFTKV_DATA_DIR/node-i. `up` writes the cluster's settings to RAFTKV_DATA_DIR/cluster.env;
# later commands read them back, so the environment only matters for a fresh `up`.
# Every wait is bounded; every node is found by its pid file, never by process name.
set -euo pipefail

REPO_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
RAFTKV_HOST="${RAFTKV_HOST:-127.0.0.1}"
RAFTKV_BASE_PEER_PORT="${RAFTKV_BASE_PEER_PORT:-7000}"
RAFTKV_BASE_CLIENT_PORT="${RAFTKV_BASE_CLIENT_PORT:-6380}"
RAFTKV_BASE_METRICS_PORT="${RAFTKV_BASE_METRICS_PORT:-9100}"
RAFTKV_DATA_DIR="${RAFTKV_DATA_DIR:-$REPO_DIR/data}"
RAFTKV_BIN_DIR="${RAFTKV_BIN_DIR:-${CARGO_TARGET_DIR:-$REPO_DIR/target}/release}"
RAFTKV_SKIP_BUILD="${RAFTKV_SKIP_BUILD:-0}"
RAFTKV_LEADER_WAIT_SECS="${RAFTKV_LEADER_WAIT_SECS:-20}"
RAFTKV_STOP_WAIT_SECS="${RAFTKV_STOP_WAIT_SECS:-10}"
RAFTKV_NODES_MAX=9

KVNODE="$RAFTKV_BIN_DIR/kvnode"
KVCTL="$RAFTKV_BIN_DIR/kvctl"
KVCERTS="$RAFTKV_BIN_DIR/kvcerts"
CLUSTER_ENV="$RAFTKV_DATA_DIR/cluster.env"
CERT_DIR="$RAFTKV_DATA_DIR/certs"
SECRET_FILE="$RAFTKV_DATA_DIR/cluster.secret"
NODE_COUNT=0
# Peer security of the cluster (1 = on), chosen at its first `up` and kept in cluster.env.
PEER_TLS=0
PEER_SECRET=0
# TLS on the client ports (1 = on): with --tls for clusters made since client TLS exists.
CLIENT_TLS=0
# Nodes this invocation started; the EXIT trap stops them if `up` does not finish.
STARTED_PIDS=()
UP_DONE=1

die() {
    echo "cluster.sh: $*" >&2
    exit 1
}

usage() {
    sed --quiet '2,22s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

cleanup() {
    local status=$?
    if [[ $UP_DONE -eq 0 && ${#STARTED_PIDS[@]} -gt 0 ]]; then
        echo "cluster.sh: 'up' did not finish; stopping the nodes it started" >&2
        local pid
        for pid in "${STARTED_PIDS[@]}"; do
            kill -KILL "$pid" 2>/dev/null || true
        done
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

node_dir() { echo "$RAFTKV_DATA_DIR/node-$1"; }
pid_file() { echo "$(node_dir "$1")/kvnode.pid"; }
client_addr() { echo "$RAFTKV_HOST:$((RAFTKV_BASE_CLIENT_PORT + $1))"; }
peer_addr() { echo "$RAFTKV_HOST:$((RAFTKV_BASE_PEER_PORT + $1))"; }
metrics_addr() { echo "$RAFTKV_HOST:$((RAFTKV_BASE_METRICS_PORT + $1))"; }

endpoints() {
    local id list=""
    for ((id = 1; id <= NODE_COUNT; id++)); do
        list+="${list:+,}$(client_addr "$id")"
    done
    echo "$list"
}

require_number() {
    [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a number, got '$2'"
}

# Reads the settings the cluster was created with.
load_cluster() {
    [[ -f "$CLUSTER_ENV" ]] || die "no cluster in $RAFTKV_DATA_DIR (run: scripts/cluster.sh up)"
    local key value
    while IFS='=' read -r key value; do
        case "$key" in
            NODE_COUNT | RAFTKV_HOST | RAFTKV_BASE_PEER_PORT | RAFTKV_BASE_CLIENT_PORT | RAFTKV_BASE_METRICS_PORT | PEER_TLS | PEER_SECRET | CLIENT_TLS)
                printf -v "$key" '%s' "$value" ;;
            *) ;;
        esac
    done <"$CLUSTER_ENV"
    require_number NODE_COUNT "$NODE_COUNT"
    require_number PEER_TLS "$PEER_TLS"
    require_number PEER_SECRET "$PEER_SECRET"
    require_number CLIENT_TLS "$CLIENT_TLS"
}

# kvctl's flags for the client ports, one a line: TLS with the cluster's CA when on.
kvctl_tls_flags() {
    if [[ "$CLIENT_TLS" == 1 ]]; then
        printf '%s\n' --tls --cacert "$CERT_DIR/ca.pem"
    fi
}

require_node_id() {
    require_number "node id" "${1:-}"
    ((${1} >= 1 && ${1} <= NODE_COUNT)) || die "node id must be in 1..$NODE_COUNT, got $1"
}

# The pid of node $1 if it runs, and nothing otherwise. A pid file whose process is gone or
# is not a kvnode (the pid was reused) is stale: it is removed.
running_pid() {
    local file pid args
    file="$(pid_file "$1")"
    [[ -f "$file" ]] || return 0
    pid="$(<"$file")"
    if [[ "$pid" =~ ^[0-9]+$ ]] && args="$(ps -o args= -p "$pid" 2>/dev/null)" &&
        [[ "$args" == *kvnode*--config*"$(node_dir "$1")/kvnode.toml"* ]]; then
        echo "$pid"
        return 0
    fi
    rm --force -- "$file"
}

build() {
    if [[ "$RAFTKV_SKIP_BUILD" == 1 ]]; then
        echo "Skipping the build (RAFTKV_SKIP_BUILD=1); using $RAFTKV_BIN_DIR"
    else
        echo "Building release binaries (cargo build --release -p kvnode)..."
        (cd -- "$REPO_DIR" && cargo build --release -p kvnode)
    fi
    [[ -x "$KVNODE" && -x "$KVCTL" ]] || die "kvnode and kvctl not found in $RAFTKV_BIN_DIR"
    if [[ "$PEER_TLS" == 1 ]]; then
        [[ -x "$KVCERTS" ]] || die "kvcerts not found in $RAFTKV_BIN_DIR"
    fi
}

write_node_config() {
    local id=$1 member members=""
    for ((member = 1; member <= NODE_COUNT; member++)); do
        members+="${members:+, }\"$member=$(peer_addr "$member"),$(client_addr "$member")\""
    done
    cat >"$(node_dir "$id")/kvnode.toml" <<EOF
# Written by scripts/cluster.sh; \`restart $id\` starts the node with this file again.
node_id = $id
member = [$members]
data_dir = "$(node_dir "$id")"
metrics_addr = "$(metrics_addr "$id")"
storage = "wal"
EOF
    if [[ "$PEER_TLS" == 1 ]]; then
        cat >>"$(node_dir "$id")/kvnode.toml" <<EOF
peer_tls_cert = "$CERT_DIR/node-$id.pem"
peer_tls_key = "$CERT_DIR/node-$id.key"
peer_tls_ca = "$CERT_DIR/ca.pem"
EOF
    fi
    if [[ "$CLIENT_TLS" == 1 ]]; then
        cat >>"$(node_dir "$id")/kvnode.toml" <<EOF
client_tls_cert = "$CERT_DIR/client-port-$id.pem"
client_tls_key = "$CERT_DIR/client-port-$id.key"
client_tls_ca = "$CERT_DIR/ca.pem"
EOF
    fi
    if [[ "$PEER_SECRET" == 1 ]]; then
        echo "cluster_secret_file = \"$SECRET_FILE\"" >>"$(node_dir "$id")/kvnode.toml"
    fi
}

# The peer credentials of a new cluster: a throwaway CA and one certificate per node, and a
# random secret (64 hex digits) readable by the owner only.
create_credentials() {
    local id nodes=""
    if [[ "$PEER_TLS" == 1 ]]; then
        for ((id = 1; id <= NODE_COUNT; id++)); do
            nodes+="${nodes:+,}$id"
        done
        # Client port certificates carry the host clients use (and the local names).
        "$KVCERTS" --out "$CERT_DIR" --cluster-id 1 --nodes "$nodes" \
            --client-host "localhost,127.0.0.1,::1,$RAFTKV_HOST"
    fi
    if [[ "$PEER_SECRET" == 1 ]]; then
        (
            umask 077
            od --address-radix=n --format=x1 --read-bytes=32 /dev/urandom | tr --delete ' \n' >"$SECRET_FILE"
        )
    fi
}

# Creates the data directory layout and per-node configs for a new cluster of NODE_COUNT.
create_cluster() {
    local id
    mkdir --parents -- "$RAFTKV_DATA_DIR"
    create_credentials
    for ((id = 1; id <= NODE_COUNT; id++)); do
        mkdir --parents -- "$(node_dir "$id")"
        write_node_config "$id"
    done
    cat >"$CLUSTER_ENV" <<EOF
NODE_COUNT=$NODE_COUNT
RAFTKV_HOST=$RAFTKV_HOST
RAFTKV_BASE_PEER_PORT=$RAFTKV_BASE_PEER_PORT
RAFTKV_BASE_CLIENT_PORT=$RAFTKV_BASE_CLIENT_PORT
RAFTKV_BASE_METRICS_PORT=$RAFTKV_BASE_METRICS_PORT
PEER_TLS=$PEER_TLS
PEER_SECRET=$PEER_SECRET
CLIENT_TLS=$CLIENT_TLS
EOF
}

start_node() {
    local id=$1 dir pid
    dir="$(node_dir "$id")"
    [[ -f "$dir/kvnode.toml" ]] || die "no config for node $id in $dir"
    {
        echo "----- $(date --iso-8601=seconds) cluster.sh starting node $id"
    } >>"$dir/kvnode.log"
    # NO_COLOR: the log is a file, not a terminal (kvnode colours its log lines otherwise).
    NO_COLOR=1 nohup "$KVNODE" --config "$dir/kvnode.toml" </dev/null >>"$dir/kvnode.log" 2>&1 &
    pid=$!
    STARTED_PIDS+=("$pid")
    echo "$pid" >"$(pid_file "$id")"
    echo "node $id: pid $pid, client $(client_addr "$id"), log $dir/kvnode.log"
}

# Fails, showing the log, if node $1 (just started) has already exited.
check_alive() {
    if [[ -z "$(running_pid "$1")" ]]; then
        echo "node $1 exited; the errors in its log ($(node_dir "$1")/kvnode.log):" >&2
        grep --extended-regexp 'ERROR|error:|panicked' -- "$(node_dir "$1")/kvnode.log" |
            tail --lines=5 >&2 || true
        die "node $1 failed to start"
    fi
}

wait_for_leader() {
    echo "Waiting up to ${RAFTKV_LEADER_WAIT_SECS} s for a leader..."
    local leader
    local tls_flags
    mapfile -t tls_flags < <(kvctl_tls_flags)
    if ! leader="$("$KVCTL" --endpoints "$(endpoints)" "${tls_flags[@]}" --timeout-ms 500 leader --wait-secs "$RAFTKV_LEADER_WAIT_SECS")"; then
        return 1
    fi
    echo "Leader: node ${leader% *} (${leader#* })"
}

cmd_up() {
    local requested="" want_tls=0 want_secret=0 id pid running=0 arg
    for arg in "$@"; do
        case "$arg" in
            --tls) want_tls=1 ;;
            --secret) want_secret=1 ;;
            *)
                [[ -z "$requested" ]] || die "up takes one node count, got '$requested' and '$arg'"
                requested=$arg
                ;;
        esac
    done
    if [[ -f "$CLUSTER_ENV" ]]; then
        load_cluster
        if [[ -n "$requested" && "$requested" != "$NODE_COUNT" ]]; then
            die "$RAFTKV_DATA_DIR holds a $NODE_COUNT-node cluster; run 'scripts/cluster.sh clean' first to start $requested nodes"
        fi
        if ((want_tls > PEER_TLS || want_secret > PEER_SECRET)); then
            die "$RAFTKV_DATA_DIR holds a cluster created without --tls or --secret; run 'scripts/cluster.sh clean' first"
        fi
        for ((id = 1; id <= NODE_COUNT; id++)); do
            if [[ -n "$(running_pid "$id")" ]]; then running=$((running + 1)); fi
        done
        if ((running == NODE_COUNT)); then
            echo "The $NODE_COUNT-node cluster in $RAFTKV_DATA_DIR is already running."
            print_endpoints
            return 0
        fi
        echo "Starting the existing $NODE_COUNT-node cluster in $RAFTKV_DATA_DIR ($running running)."
    else
        NODE_COUNT=${requested:-3}
        PEER_TLS=$want_tls
        CLIENT_TLS=$want_tls
        PEER_SECRET=$want_secret
        require_number N "$NODE_COUNT"
        ((NODE_COUNT >= 1 && NODE_COUNT <= RAFTKV_NODES_MAX)) || die "N must be in 1..$RAFTKV_NODES_MAX"
    fi
    build
    [[ -f "$CLUSTER_ENV" ]] || create_cluster
    UP_DONE=0
    for ((id = 1; id <= NODE_COUNT; id++)); do
        pid="$(running_pid "$id")"
        if [[ -n "$pid" ]]; then
            echo "node $id: already running (pid $pid)"
        else
            start_node "$id"
        fi
    done
    for ((id = 1; id <= NODE_COUNT; id++)); do
        check_alive "$id"
    done
    wait_for_leader || die "no leader within ${RAFTKV_LEADER_WAIT_SECS} s; see $RAFTKV_DATA_DIR/node-*/kvnode.log"
    # A node that could not bind its ports exits shortly after starting; a leader elected
    # by the others must not hide it.
    for ((id = 1; id <= NODE_COUNT; id++)); do
        check_alive "$id"
    done
    UP_DONE=1
    print_endpoints
}

print_endpoints() {
    local id
    echo
    echo "Client endpoints (Redis protocol):"
    for ((id = 1; id <= NODE_COUNT; id++)); do
        echo "  node $id: $(client_addr "$id")   metrics: http://$(metrics_addr "$id")/metrics"
    done
    echo
    echo "Try:"
    local tls=""
    if [[ "$CLIENT_TLS" == 1 ]]; then
        tls=" --tls --cacert $CERT_DIR/ca.pem"
        echo "  (the client ports speak TLS only; clients trust $CERT_DIR/ca.pem)"
    fi
    echo "  redis-cli$tls -h $RAFTKV_HOST -p $((RAFTKV_BASE_CLIENT_PORT + 1)) SET hello world"
    echo "  redis-cli$tls -h $RAFTKV_HOST -p $((RAFTKV_BASE_CLIENT_PORT + NODE_COUNT)) GET hello"
    echo "  $KVCTL --endpoints $(endpoints)$tls status"
}

# Sends SIGTERM to node $1 (pid $2 if given), waits up to RAFTKV_STOP_WAIT_SECS, then
# SIGKILLs it.
stop_node() {
    local id=$1 pid tenths
    pid="${2-$(running_pid "$id")}"
    if [[ -z "$pid" ]]; then
        echo "node $id: not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((tenths = 0; tenths < RAFTKV_STOP_WAIT_SECS * 10; tenths++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "node $id: still running after ${RAFTKV_STOP_WAIT_SECS} s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    else
        echo "node $id: stopped (pid $pid)"
    fi
    rm --force -- "$(pid_file "$id")"
}

cmd_down() {
    if [[ ! -f "$CLUSTER_ENV" ]]; then
        echo "No cluster in $RAFTKV_DATA_DIR; nothing to stop."
        return 0
    fi
    load_cluster
    local id pid pids=()
    # SIGTERM every node first so they stop together rather than losing quorum one by one.
    for ((id = 1; id <= NODE_COUNT; id++)); do
        pid="$(running_pid "$id")"
        pids[id]="$pid"
        if [[ -n "$pid" ]]; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for ((id = 1; id <= NODE_COUNT; id++)); do
        stop_node "$id" "${pids[id]}"
    done
}

cmd_status() {
    load_cluster
    local id pid state running=0
    for ((id = 1; id <= NODE_COUNT; id++)); do
        pid="$(running_pid "$id")"
        state=stopped
        if [[ -n "$pid" ]]; then
            state="running (pid $pid)"
            running=$((running + 1))
        fi
        echo "node $id: $state  client $(client_addr "$id")"
    done
    echo
    if ((running == 0)); then
        echo "No node is running (start them with: scripts/cluster.sh up)."
        return 0
    fi
    [[ -x "$KVCTL" ]] || die "kvctl not found in $RAFTKV_BIN_DIR (run: scripts/cluster.sh up)"
    local tls_flags
    mapfile -t tls_flags < <(kvctl_tls_flags)
    "$KVCTL" --endpoints "$(endpoints)" "${tls_flags[@]}" --timeout-ms 1000 status
}

cmd_kill() {
    load_cluster
    require_node_id "${1:-}"
    local pid
    pid="$(running_pid "$1")"
    [[ -n "$pid" ]] || die "node $1 is not running"
    kill -KILL "$pid"
    rm --force -- "$(pid_file "$1")"
    echo "node $1: killed with SIGKILL (pid $pid)"
}

cmd_restart() {
    load_cluster
    require_node_id "${1:-}"
    [[ -x "$KVNODE" ]] || die "kvnode not found in $RAFTKV_BIN_DIR (run: scripts/cluster.sh up)"
    stop_node "$1"
    start_node "$1"
    sleep 0.2
    check_alive "$1"
}

cmd_logs() {
    load_cluster
    require_node_id "${1:-}"
    local log
    log="$(node_dir "$1")/kvnode.log"
    [[ -f "$log" ]] || die "no log at $log"
    if [[ "${2:-}" == "--follow" ]]; then
        tail --lines="${RAFTKV_LOG_LINES:-50}" --follow -- "$log"
    else
        tail --lines="${RAFTKV_LOG_LINES:-50}" -- "$log"
    fi
}

cmd_clean() {
    cmd_down
    if [[ -d "$RAFTKV_DATA_DIR" ]]; then
        # Refuse to remove a directory this script did not make.
        [[ -f "$CLUSTER_ENV" || -z "$(ls --almost-all -- "$RAFTKV_DATA_DIR")" ]] ||
            die "$RAFTKV_DATA_DIR has no cluster.env; not removing a directory cluster.sh did not create"
        rm --recursive --force -- "$RAFTKV_DATA_DIR"
        echo "Removed $RAFTKV_DATA_DIR"
    fi
}

main() {
    local command=${1:-}
    shift || true
    case "$command" in
        up) cmd_up "$@" ;;
        down) cmd_down ;;
        status) cmd_status ;;
        kill) cmd_kill "$@" ;;
        restart) cmd_restart "$@" ;;
        logs) cmd_logs "$@" ;;
        clean) cmd_clean ;;
        -h | --help | help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
