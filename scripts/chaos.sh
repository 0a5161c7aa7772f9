#!/usr/bin/env bash
# Runs the Jepsen-style fault suite (benches/src/chaos.rs): kvnode processes in network
# namespaces, a seeded nemesis, Redis-protocol workloads and the checkers; prints a summary
# table. Needs root. See --help.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BUILD=1
INSTALL=1
ARGS=()

usage() {
  cat <<'USAGE'
Usage: scripts/chaos.sh [options]

Runs N seeded fault-injection runs against real kvnode processes, each in its own network
namespace, and prints a summary table (runs, anomalies, ops, indeterminate, longest gap per
fault kind). Reports go to --out (default ./chaos-report/run-SEED/). Needs root.

Options (passed to `chaos run`):
  --runs N                 number of runs (default 1; seeds SEED, SEED+1, ...)
  --duration S             seconds of faults and load per run (default 30)
  --nodes 3|5              voters (default 3)
  --nemesis LIST           kill,pause,partition,membership,skew,netem or all
                           (default kill,pause,partition)
  --workloads LIST         register,counter,set,txn (default all four)
  --seed N                 first seed (default: the clock; printed, replayable)
  --snapshot-entries N     kvnode snapshot threshold (small: InstallSnapshot under faults)
  --kvnode-arg ARG         extra kvnode argument, repeatable (e.g. a test-only fault switch)
  --kvnode PATH            kvnode binary (default: the release build beside chaos)
  --out DIR                report directory (default chaos-report)
  --clients N              clients per workload (default 4)
  --readers N              extra read-only clients per workload (default 0)
  --request-timeout-ms N   per-request deadline (default 1000)
  --think-ms N             longest pause between a client's requests (default 10)
  --election-ms N, --heartbeat-ms N   kvnode timing (default 300 and 50)
  --block-backend B        nft, route or auto (default auto)
  --settle-secs N          convergence and final-read deadline after healing (default 30)
  --stale-reads            clients send READONLY first (the seeded stale-read bug)
  --split-transfers        txn transfers sent as DECRBY, INCRBY without MULTI (a seeded
                           client bug: partial transfers the txn checker must report)
  --test-fault NAME        give kvnode a deliberate bug: reads-without-read-index (every
                           node answers reads from its own state, no ReadIndex round) or
                           ack-before-commit (a leader acknowledges a SET before it
                           commits); builds kvnode with --features test-faults into
                           $CARGO_TARGET_DIR/test-faults
  --leader-only            clients talk only to the node last seen leading
  --stop-on-anomaly        stop after the first run with an anomaly
Script options:
  --no-build               use the binaries already in $CARGO_TARGET_DIR/release
  --no-install             do not apt-get install missing tools (nftables, faketime)
  --cleanup                only remove leftovers of crashed runs, then exit
  -h, --help               this text

Exit status: 0 clean, 1 anomalies found, 2 could not run.
USAGE
}

CLEANUP_ONLY=0
TEST_FAULT=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --no-build) BUILD=0; shift ;;
    --no-install) INSTALL=0; shift ;;
    --cleanup) CLEANUP_ONLY=1; shift ;;
    --stale-reads|--split-transfers|--leader-only|--stop-on-anomaly) ARGS+=("$1"); shift ;;
    --test-fault)
      [ $# -ge 2 ] || { echo "chaos.sh: $1 needs a value" >&2; exit 2; }
      TEST_FAULT="$2"; shift 2 ;;
    --runs|--duration|--nodes|--nemesis|--workloads|--seed|--snapshot-entries|--kvnode-arg|\
    --kvnode|--out|--clients|--readers|--request-timeout-ms|--think-ms|--election-ms|--heartbeat-ms|\
    --block-backend|--settle-secs)
      [ $# -ge 2 ] || { echo "chaos.sh: $1 needs a value" >&2; exit 2; }
      ARGS+=("$1" "$2"); shift 2 ;;
    *) echo "chaos.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "chaos.sh: must run as root (it creates network namespaces and firewall rules)" >&2
  exit 2
fi

CHAOS="$TARGET_DIR/release/chaos"

if [ "$CLEANUP_ONLY" = 1 ]; then
  "$CHAOS" cleanup
  exit 0
fi

if [ "$INSTALL" = 1 ]; then
  missing=()
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v nft >/dev/null 2>&1 || missing+=(nftables)
  [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || missing+=(faketime)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

if [ "$BUILD" = 1 ]; then
  echo "== cargo build --release -p kvnode -p benches (kvnode, chaos)"
  (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p kvnode -p benches \
    --bin kvnode --bin chaos)
fi

if [ -n "$TEST_FAULT" ]; then
  faulty_target="$TARGET_DIR/test-faults"
  echo "== cargo build --release -p kvnode --features test-faults (a deliberate bug: $TEST_FAULT)"
  (cd "$ROOT" && CARGO_TARGET_DIR="$faulty_target" cargo build --release -p kvnode \
    --features test-faults --bin kvnode)
  ARGS+=(--kvnode "$faulty_target/release/kvnode" --kvnode-arg "--test-fault=$TEST_FAULT")
fi

# A crash of the tool leaves namespaces behind; remove them whatever happens.
trap '"$CHAOS" cleanup >/dev/null 2>&1 || true' EXIT

status=0
"$CHAOS" run "${ARGS[@]}" || status=$?
exit "$status"
