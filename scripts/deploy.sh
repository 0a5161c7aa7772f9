#!/usr/bin/env bash
# Deploy, supervise and upgrade a raftkv cluster on bare-metal hosts over ssh, one kvnode per
# host. `scripts/deploy.sh --help` is the operator's manual; docs/deploy.md explains more.
# The host side of every step is scripts/deploy-host.sh, sent over ssh each time.
set -euo pipefail

REPO_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
HOST_SCRIPT="$REPO_DIR/scripts/deploy-host.sh"
STATE_HEADER="# raftkv deploy state"
STATE_VERSION=1
SERVICE_NAME=raftkv
HOSTS_MAX=64
# Cluster ids are drawn from [2, 2^62): 1 is kvnode's default, and TOML integers are i64.
CLUSTER_ID_MAX=4611686018427387903

usage() {
    cat <<'EOF'
Usage: scripts/deploy.sh [OPTIONS] COMMAND DEPLOYMENT [ARGS]

Deploys a raftkv cluster to hosts reached over ssh (one kvnode per host), keeps each node
supervised, and upgrades it node by node.

Commands:
  deploy HOSTS_FILE           check every host, install or update every node, start it, and
                              verify the cluster (every node serving and knowing the leader).
                              A redeploy applies a changed binary or config node by node
                              (as rolling-restart does); unchanged running nodes are left alone.
                              (`start` and no command at all mean `deploy`.)
  status DEPLOYMENT           each node's process and raft state, then kvctl's table; exits 1
                              naming every node that is down, unreachable or without a leader
  stop DEPLOYMENT             stop every node; an unreachable host does not stop the others,
                              it is reported at the end (exit 1)
  rolling-restart DEPLOYMENT  restart the nodes one at a time (see below)
  upgrade DEPLOYMENT BINARY   install kvnode BINARY on every node, one at a time (see below)
                              (in both, a node that does not serve is restarted first, at once)
  logs DEPLOYMENT ID [LINES]  the last LINES (50) lines of node ID's log

DEPLOYMENT is the hosts file (its state file is HOSTS_FILE.state, or --state) or the state
file itself.

Hosts file: one host per line, `HOST [SSH_TARGET] [listen=ADDRESS]`; blank lines and `#`
comments are skipped. Node ids follow the line order (1, 2, ...). HOST is the address the
nodes advertise to each other and to clients: it must reach the same machine from every host
and from here (use its network address: a name that resolves to 127.0.1.1, as stock Debian
makes the own hostname, is refused). SSH_TARGET ([user@]host, default HOST) is how ssh reaches
it. Nodes listen on 0.0.0.0 (or --listen, or the line's listen=ADDRESS, an address of that
host), so a host behind NAT advertises its outside address and listens on its own. The file is
refused before any host is touched if a line is malformed, a host or ssh target is listed
twice, two hosts resolve to one address, or a name does not resolve; an unknown ssh user fails
the preflight, also before anything changes.

State file: `deploy` writes the deployment's settings (hosts, ssh targets, listen addresses,
ports, install directory, cluster id, binaries directory, ssh config, supervisor, extra config)
to the state file once every host passed the preflight, and every other command reads them
from there, so `stop` and `status` act on that deployment whatever the environment says. The
cluster id is random (never 1) unless --cluster-id gives one. Ports, the install directory,
the cluster id and the hosts cannot change once deployed (change membership with kvctl
add-learner/promote/remove instead); the listen addresses, supervisor, binaries and extra
config can, and a redeploy applies them.

What deploy does, in order: validate the hosts file; build kvnode and kvctl (cargo build
--release -p kvnode) unless --skip-build or --bin-dir; preflight every host (ssh login,
privilege, free ports, disk space, tools, no other deployment in the install directory) and
stop if any fails; write the state file; stage the files on every host (a directory
raftkv-stage.* in the host's TMPDIR; the binary is copied only where it differs; checksummed,
and the new kvnode run once there with --version); install and start the nodes (all at once
when none serves; otherwise the down ones first, including one that runs without serving,
then the changed serving ones one at a time); remove the staging directories (also when it
fails); verify the cluster, naming each node that fails with the end of its log.

Privilege is chosen per host without options: a root login runs as root; otherwise `sudo -n`
is used when it works; otherwise the login user must own the install directory (no systemd
unit then). The node runs as the ssh login user.

Supervision: where systemd runs (and root or sudo is had) the node is the unit raftkv.service
(Restart=always). Elsewhere the shell supervisor DIR/bin/raftkv-host supervises it: it
restarts kvnode when it exits, after 1 s, then 2, 4, ... up to 30 s (reset after 60 s of
running), and `stop` ends it cleanly. Pid files hold the pid and the process start time and
are trusted only while both match a live process with the expected command line.

rolling-restart and upgrade, node by node: every node must be serving with a leader first;
followers go first, the leader last, after leadership was handed to the most caught-up
follower (kvctl transfer); each node is stopped, updated, started and waited for (serving,
knowing the leader, and applied up to the leader's commit index as it stood when the node came
back) before the next one. A node that does not come back stops the run with the rest of the
cluster still serving.

Each host gets, under the install directory (/opt/raftkv): bin/kvnode, bin/raftkv-host,
kvnode.toml, cluster.id, supervisor, data/ (WAL, snapshots), kvnode.log and run/ (pid files).

Options:
  --dry-run             print every command (cargo, ssh, tar, kvctl) instead of running it;
                        configs are still generated in the output directory to read, no state
                        file is written, and no host is contacted
  --state FILE          the state file (default: HOSTS_FILE.state)
  --skip-build          use the binaries already in the binaries directory (cargo not needed)
  --bin-dir DIR         prebuilt kvnode and kvctl (implies --skip-build)
  --ssh-config FILE     an ssh_config for every ssh call (identity, known hosts, jump hosts)
  --listen ADDRESS      default listen address of every node (0.0.0.0)
  --cluster-id N        the cluster id of a new deployment (default: random)
  --remote-dir DIR      install directory on the hosts (/opt/raftkv)
  --peer-port N, --client-port N, --metrics-port N
                        ports on every host (7000, 6379, 9100)
  --supervisor KIND     auto (systemd where it runs, else the shell supervisor), systemd, shell
  --extra-config FILE   TOML lines appended to every node's config (e.g. snapshot_entries =
                        50000); kept in the state; --extra-config /dev/null drops them
  -h, --help            this text

Environment (flags win): DEPLOY_STATE, DEPLOY_SKIP_BUILD=1, DEPLOY_BIN_DIR, DEPLOY_SSH_CONFIG,
DEPLOY_LISTEN, DEPLOY_CLUSTER_ID, DEPLOY_REMOTE_DIR, DEPLOY_PEER_PORT, DEPLOY_CLIENT_PORT,
DEPLOY_METRICS_PORT, DEPLOY_SUPERVISOR, DEPLOY_OUT_DIR (generated configs, to read:
target/deploy/cluster-ID),
DEPLOY_VERBOSE=1 (print every command), and the bounds: DEPLOY_SSH_TIMEOUT_SECS (60 per ssh
call), DEPLOY_STAGE_TIMEOUT_SECS (600 per host to copy the files), DEPLOY_LEADER_WAIT_SECS (30
for the cluster to be verified), DEPLOY_NODE_WAIT_SECS (60 for a restarted node to catch up),
DEPLOY_TRANSFER_WAIT_SECS (10), DEPLOY_DISK_MIN_MB (256 free for the install directory).

Exit status: 0 done and verified; 1 a failure (named on stderr); 2 bad usage.

Examples:
  scripts/deploy.sh deploy hosts               # build, check, install, start, verify
  scripts/deploy.sh status hosts               # exit 1 if any node is down
  scripts/deploy.sh upgrade hosts ./kvnode     # rolling upgrade to that binary
  scripts/deploy.sh --bin-dir /srv/raftkv-1.2 deploy hosts   # prebuilt binaries, redeploy
  scripts/deploy.sh stop hosts
EOF
}

# ----- settings -----

# What the operator asked for (environment, then flags); empty means "not asked".
REQ_STATE="${DEPLOY_STATE:-}"
REQ_BIN_DIR="${DEPLOY_BIN_DIR:-}"
REQ_SSH_CONFIG="${DEPLOY_SSH_CONFIG:-}"
REQ_LISTEN="${DEPLOY_LISTEN:-}"
REQ_CLUSTER_ID="${DEPLOY_CLUSTER_ID:-}"
REQ_REMOTE_DIR="${DEPLOY_REMOTE_DIR:-}"
REQ_PEER_PORT="${DEPLOY_PEER_PORT:-}"
REQ_CLIENT_PORT="${DEPLOY_CLIENT_PORT:-}"
REQ_METRICS_PORT="${DEPLOY_METRICS_PORT:-}"
REQ_SUPERVISOR="${DEPLOY_SUPERVISOR:-}"
REQ_EXTRA_CONFIG=""
SKIP_BUILD="${DEPLOY_SKIP_BUILD:-0}"
CARGO_RELEASE_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}/release"
# Set once the cluster id is known: target/deploy/cluster-ID unless DEPLOY_OUT_DIR says.
OUT_DIR="${DEPLOY_OUT_DIR:-}"
VERBOSE="${DEPLOY_VERBOSE:-0}"
SSH_TIMEOUT_SECS="${DEPLOY_SSH_TIMEOUT_SECS:-60}"
STAGE_TIMEOUT_SECS="${DEPLOY_STAGE_TIMEOUT_SECS:-600}"
LEADER_WAIT_SECS="${DEPLOY_LEADER_WAIT_SECS:-30}"
NODE_WAIT_SECS="${DEPLOY_NODE_WAIT_SECS:-60}"
TRANSFER_WAIT_SECS="${DEPLOY_TRANSFER_WAIT_SECS:-10}"
DISK_MIN_MB="${DEPLOY_DISK_MIN_MB:-256}"

# The deployment's settings in effect (from the state, or resolved for a new deployment).
CLUSTER_ID=""
PEER_PORT=""
CLIENT_PORT=""
METRICS_PORT=""
REMOTE_DIR=""
BIN_DIR=""
SSH_CONFIG=""
LISTEN=""
SUPERVISOR=""
EXTRA_LINES=()
HOSTS=()
TARGETS=()
LISTENS=()

DRY_RUN=0
# "new" or "existing", once resolve_deploy_settings has looked for the state.
DEPLOYMENT_KIND=""
STATE_FILE=""
HOSTS_FILE=""
# The kvnode binary to install: BIN_DIR/kvnode, or upgrade's BINARY.
KVNODE_SOURCE=""
KVCTL=""
WORK_DIR=""
# Staging directories made on the hosts, by node index; removed on exit, whatever happens.
STAGES=()
# Per node index, from check-stage: is it running, would the new files change it.
RUNNING=()
CHANGED=()
# What the last cluster query found, by node index.
ST_OK=()
ST_ROLE=()
ST_LEADER=()
ST_APPLIED=()
ST_COMMIT=()
ST_ERROR=()
PROBLEMS=()
# The step in progress, for the failure message.
CURRENT_STEP=""

die() {
    echo "deploy.sh: $*" >&2
    exit 1
}

note() {
    echo "deploy.sh: $*"
}

cleanup() {
    local status=$? index
    trap - EXIT
    for index in "${!STAGES[@]}"; do
        [[ -n "${STAGES[index]}" ]] || continue
        if ! host_run "$index" discard "${STAGES[index]}" >/dev/null 2>&1; then
            echo "deploy.sh: could not remove the staging directory ${STAGES[index]} on ${HOSTS[index]}; remove it by hand" >&2
        fi
    done
    if [[ -n "$WORK_DIR" ]]; then rm --recursive --force -- "$WORK_DIR"; fi
    if [[ $status -ne 0 && -n "$CURRENT_STEP" ]]; then
        echo "deploy.sh: failed during: $CURRENT_STEP" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

node_name() { echo "node $(($1 + 1)) (${HOSTS[$1]})"; }

# ----- running commands -----

# Prints a command as one shell line: plain words bare, others in single quotes.
quote_words() {
    local word line=""
    for word in "$@"; do
        if [[ "$word" =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
            line+=" $word"
        else
            line+=" '${word//\'/\'\\\'\'}'"
        fi
    done
    echo "${line# }"
}

# Prints a command line under --dry-run or DEPLOY_VERBOSE=1, to fd 3 (the script's own
# stdout, opened in main), so a command whose output is captured or discarded still shows.
show() {
    if [[ $DRY_RUN -eq 1 || $VERBOSE -eq 1 ]]; then echo "+ $*" >&3; fi
}

# Runs a command; under --dry-run only prints it.
run() {
    show "$(quote_words "$@")"
    if [[ $DRY_RUN -eq 0 ]]; then "$@"; fi
}

ssh_command() {
    local timeout=$1 target=$2
    shift 2
    local argv=(timeout "$timeout" ssh)
    if [[ -n "$SSH_CONFIG" ]]; then argv+=(-F "$SSH_CONFIG"); fi
    argv+=(-o BatchMode=yes -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=3)
    argv+=("$target" "$@")
    printf '%s\0' "${argv[@]}"
}

# Runs deploy-host.sh COMMAND ARGS on node $1's host: as root when logged in as root, else
# through `sudo -n` when that works, else as the login user. The script goes over stdin.
host_run() {
    local index=$1 args wrap ssh_argv=()
    shift
    args="$(quote_words "$@")"
    wrap="set -- $args; if [ \"\$(id -u)\" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null;"
    wrap+=" then exec sudo -n bash -s -- \"\$@\"; fi; exec bash -s -- \"\$@\""
    mapfile -d '' ssh_argv < <(ssh_command "$SSH_TIMEOUT_SECS" "${TARGETS[index]}" "$wrap")
    show "$(quote_words "${ssh_argv[@]}") < scripts/deploy-host.sh"
    [[ $DRY_RUN -eq 1 ]] || "${ssh_argv[@]}" <"$HOST_SCRIPT"
}

kvctl() {
    run "$KVCTL" "$@"
}

# ----- hosts file -----

require_port() {
    if ! [[ "$2" =~ ^[0-9]+$ ]] || (($2 < 1 || $2 > 65535)); then die "$1: bad port '$2'"; fi
}

require_listen() {
    [[ "$2" =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}$ || "$2" == "::" ]] ||
        die "$1: listen address '$2' is not an IPv4 address (or ::)"
}

# The first address NAME resolves to here, or nothing.
resolve() {
    { getent ahosts "$1" 2>/dev/null || true; } | awk 'NR == 1 { print $1 }'
}

# The host ssh really connects to for TARGET (an ssh_config alias may rename it).
ssh_hostname() {
    local target=$1 config=()
    # `ssh -G` only prints the configuration; a dry run still runs no ssh at all.
    [[ $DRY_RUN -eq 0 ]] || return 0
    if [[ -n "$SSH_CONFIG" ]]; then config=(-F "$SSH_CONFIG"); fi
    { ssh "${config[@]}" -G "$target" 2>/dev/null || true; } | awk '$1 == "hostname" { print $2; exit }'
}

read_hosts() {
    local file=$1 line number=0 host target option extra listen
    [[ -f "$file" ]] || die "hosts file $file not found"
    HOSTS=()
    TARGETS=()
    LISTENS=()
    while IFS= read -r line || [[ -n "$line" ]]; do
        number=$((number + 1))
        line="${line%%#*}"
        host="" target="" option="" extra=""
        read -r host target option extra <<<"$line" || true
        [[ -n "$host" ]] || continue
        if [[ "$target" == listen=* ]]; then
            extra="$option" option="$target" target=""
        fi
        [[ -z "$extra" ]] || die "$file:$number: expected 'HOST [SSH_TARGET] [listen=ADDRESS]', got '$line'"
        [[ "$host" =~ ^[A-Za-z0-9._-]+$ ]] || die "$file:$number: '$host' is not a host name or IPv4 address"
        target="${target:-$host}"
        [[ "$target" =~ ^([a-z_][a-z0-9_.-]*@)?[A-Za-z0-9._-]+$ ]] || die "$file:$number: '$target' is not [user@]host"
        listen=""
        if [[ -n "$option" ]]; then
            [[ "$option" == listen=* ]] || die "$file:$number: unknown option '$option' (only listen=ADDRESS)"
            listen="${option#listen=}"
            require_listen "$file:$number" "$listen"
        fi
        HOSTS+=("$host")
        TARGETS+=("$target")
        LISTENS+=("$listen")
    done <"$file"
    ((${#HOSTS[@]} > 0)) || die "$file lists no hosts"
    ((${#HOSTS[@]} <= HOSTS_MAX)) || die "$file lists more than $HOSTS_MAX hosts"
    local repeated
    repeated="$(printf '%s\n' "${HOSTS[@]}" | sort | uniq --repeated)"
    [[ -z "$repeated" ]] || die "$file lists a host twice: $repeated"
    repeated="$(printf '%s\n' "${TARGETS[@]}" | sort | uniq --repeated)"
    [[ -z "$repeated" ]] || die "$file lists an ssh target twice: $repeated"
}

# Every host and ssh target must resolve here, to distinct addresses, none on loopback
# when there are several hosts (the other hosts could not reach it).
check_hosts_resolve() {
    local index address ssh_host seen=() other
    for index in "${!HOSTS[@]}"; do
        address="$(resolve "${HOSTS[index]}")"
        [[ -n "$address" ]] || die "hosts file: '${HOSTS[index]}' does not resolve"
        if ((${#HOSTS[@]} > 1)) && [[ "$address" == 127.* || "$address" == ::1 ]]; then
            die "hosts file: '${HOSTS[index]}' resolves to $address (loopback); the other hosts could not reach it: list its network address"
        fi
        for other in "${!seen[@]}"; do
            [[ "${seen[other]}" != "$address" ]] ||
                die "hosts file: '${HOSTS[other]}' and '${HOSTS[index]}' both resolve to $address"
        done
        seen[index]="$address"
    done
    for index in "${!HOSTS[@]}"; do
        ssh_host="$(ssh_hostname "${TARGETS[index]}")"
        ssh_host="${ssh_host:-${TARGETS[index]#*@}}"
        [[ -n "$(resolve "$ssh_host")" ]] || die "hosts file: ssh target '${TARGETS[index]}' ($ssh_host) does not resolve"
    done
}

client_endpoint() { echo "${HOSTS[$1]}:$CLIENT_PORT"; }

client_endpoints() {
    local index list=""
    for index in "${!HOSTS[@]}"; do
        list+="${list:+,}$(client_endpoint "$index")"
    done
    echo "$list"
}

# ----- the state file -----

# Reads the state file into the settings; refuses anything it does not expect.
load_state() {
    local file=$1 key value line number=0 count=-1 index
    [[ -f "$file" ]] || die "no state file $file (run: scripts/deploy.sh deploy HOSTS_FILE)"
    [[ "$(head --lines=1 -- "$file")" == "$STATE_HEADER"* ]] || die "$file is not a deploy.sh state file"
    HOSTS=()
    TARGETS=()
    LISTENS=()
    EXTRA_LINES=()
    while IFS= read -r line; do
        number=$((number + 1))
        [[ -n "$line" && "$line" != \#* ]] || continue
        key="${line%%=*}"
        value="${line#*=}"
        [[ "$line" == *=* ]] || die "$file:$number: not KEY=VALUE"
        case "$key" in
            STATE_VERSION) [[ "$value" == "$STATE_VERSION" ]] || die "$file: state version $value; this deploy.sh reads $STATE_VERSION" ;;
            CLUSTER_ID) CLUSTER_ID="$value" ;;
            PEER_PORT) PEER_PORT="$value" ;;
            CLIENT_PORT) CLIENT_PORT="$value" ;;
            METRICS_PORT) METRICS_PORT="$value" ;;
            REMOTE_DIR) REMOTE_DIR="$value" ;;
            BIN_DIR) BIN_DIR="$value" ;;
            SSH_CONFIG) SSH_CONFIG="$value" ;;
            LISTEN) LISTEN="$value" ;;
            SUPERVISOR) SUPERVISOR="$value" ;;
            HOSTS_FILE) HOSTS_FILE="${HOSTS_FILE:-$value}" ;;
            NODE_COUNT) count="$value" ;;
            EXTRA) EXTRA_LINES+=("$value") ;;
            NODE_*_HOST | NODE_*_TARGET | NODE_*_LISTEN)
                index="${key#NODE_}"
                index="${index%_*}"
                if ! [[ "$index" =~ ^[0-9]+$ ]] || ((index < 1 || index > HOSTS_MAX)); then
                    die "$file:$number: bad key $key"
                fi
                case "$key" in
                    *_HOST) HOSTS[index - 1]="$value" ;;
                    *_TARGET) TARGETS[index - 1]="$value" ;;
                    *_LISTEN) LISTENS[index - 1]="$value" ;;
                esac
                ;;
            DEPLOYED_AT | KVNODE_SHA256) ;;
            *) die "$file:$number: unknown key $key" ;;
        esac
    done <"$file"
    if ! [[ "$count" =~ ^[0-9]+$ ]] || ((count != ${#HOSTS[@]} || ${#TARGETS[@]} != ${#HOSTS[@]})); then
        die "$file: NODE_COUNT does not match its nodes"
    fi
    check_settings "$file"
}

check_settings() {
    local where=$1 index
    if ! [[ "$CLUSTER_ID" =~ ^[0-9]{1,19}$ ]] || ((CLUSTER_ID < 2 || CLUSTER_ID > CLUSTER_ID_MAX)); then
        die "$where: cluster id '$CLUSTER_ID' must be a number from 2 to $CLUSTER_ID_MAX (1 is kvnode's default)"
    fi
    require_port "$where" "$PEER_PORT"
    require_port "$where" "$CLIENT_PORT"
    require_port "$where" "$METRICS_PORT"
    ((PEER_PORT != CLIENT_PORT && PEER_PORT != METRICS_PORT && CLIENT_PORT != METRICS_PORT)) ||
        die "$where: the peer, client and metrics ports must differ"
    [[ "$REMOTE_DIR" =~ ^/[A-Za-z0-9._/-]+$ && "$REMOTE_DIR" != / ]] ||
        die "$where: install directory '$REMOTE_DIR' must be an absolute path without spaces"
    require_listen "$where" "$LISTEN"
    case "$SUPERVISOR" in auto | systemd | shell) ;; *) die "$where: supervisor '$SUPERVISOR' is not auto, systemd or shell" ;; esac
    for index in "${!HOSTS[@]}"; do
        [[ -z "${LISTENS[index]:-}" ]] || require_listen "$where" "${LISTENS[index]}"
    done
}

write_state() {
    local index line
    [[ $DRY_RUN -eq 0 ]] || return 0
    {
        echo "$STATE_HEADER: written by scripts/deploy.sh deploy, read by every command."
        echo "# Edit only with care: hosts, ports, the install directory and the cluster id are"
        echo "# fixed for the cluster's life."
        echo "STATE_VERSION=$STATE_VERSION"
        echo "CLUSTER_ID=$CLUSTER_ID"
        echo "PEER_PORT=$PEER_PORT"
        echo "CLIENT_PORT=$CLIENT_PORT"
        echo "METRICS_PORT=$METRICS_PORT"
        echo "REMOTE_DIR=$REMOTE_DIR"
        echo "BIN_DIR=$BIN_DIR"
        echo "SSH_CONFIG=$SSH_CONFIG"
        echo "LISTEN=$LISTEN"
        echo "SUPERVISOR=$SUPERVISOR"
        echo "HOSTS_FILE=$HOSTS_FILE"
        echo "NODE_COUNT=${#HOSTS[@]}"
        for index in "${!HOSTS[@]}"; do
            echo "NODE_$((index + 1))_HOST=${HOSTS[index]}"
            echo "NODE_$((index + 1))_TARGET=${TARGETS[index]}"
            echo "NODE_$((index + 1))_LISTEN=${LISTENS[index]}"
        done
        for line in "${EXTRA_LINES[@]}"; do echo "EXTRA=$line"; done
        echo "DEPLOYED_AT=$(date --utc --iso-8601=seconds)"
        if [[ -f "$KVNODE_SOURCE" ]]; then
            echo "KVNODE_SHA256=$(sha256sum -- "$KVNODE_SOURCE" | cut --delimiter=' ' --fields=1)"
        fi
    } >"$STATE_FILE.new"
    mv --force -- "$STATE_FILE.new" "$STATE_FILE"
}

# One lock per state file: two deploy.sh runs on one deployment would race.
lock_state() {
    [[ $DRY_RUN -eq 0 ]] || return 0
    command -v flock >/dev/null 2>&1 || return 0
    exec 9>>"$STATE_FILE.lock"
    flock --nonblock 9 || die "another deploy.sh is working on $STATE_FILE"
}

random_cluster_id() {
    local high low id=0
    while ((id < 2)); do
        read -r high low < <(od --address-radix=n --read-bytes=8 --format=u4 /dev/urandom)
        id=$((((high & 0x3fffffff) << 32) | low))
    done
    echo "$id"
}

# Reads an --extra-config file: TOML `key = value` lines (comments and blank lines
# dropped); the keys deploy.sh writes itself are refused.
read_extra_config() {
    local file=$1 line key
    [[ -r "$file" ]] || die "--extra-config $file cannot be read"
    EXTRA_LINES=()
    while IFS= read -r line || [[ -n "$line" ]]; do
        [[ "$line" =~ ^[[:space:]]*(#.*)?$ ]] && continue
        [[ "$line" =~ ^[[:space:]]*([a-z_]+)[[:space:]]*= ]] || die "$file: '$line' is not 'key = value'"
        key="${BASH_REMATCH[1]}"
        case "$key" in
            node_id | cluster_id | member | join | peer_addr | client_addr | metrics_addr | data_dir)
                die "$file: $key is set by deploy.sh" ;;
            *) ;;
        esac
        EXTRA_LINES+=("$line")
    done <"$file"
}

# For `deploy`: the settings from the state (if this deployment exists) and the request.
# Fixed settings may not differ from the state; the others follow the request.
resolve_deploy_settings() {
    local existing=0 name requested current
    if [[ -f "$STATE_FILE" ]]; then
        existing=1
        local hosts=("${HOSTS[@]}") targets=("${TARGETS[@]}") listens=("${LISTENS[@]}")
        load_state "$STATE_FILE"
        [[ "${hosts[*]}" == "${HOSTS[*]}" ]] ||
            die "the hosts in $HOSTS_FILE (${hosts[*]}) differ from the deployment's (${HOSTS[*]}, in $STATE_FILE); deploy.sh does not change membership: use kvctl add-learner/promote/remove, or a new state file for a new cluster"
        TARGETS=("${targets[@]}")
        LISTENS=("${listens[@]}")
        for name in CLUSTER_ID PEER_PORT CLIENT_PORT METRICS_PORT REMOTE_DIR; do
            requested="REQ_$name"
            current="${!name}"
            [[ -z "${!requested}" || "${!requested}" == "$current" ]] ||
                die "$name is $current in $STATE_FILE; it cannot change for a deployed cluster"
        done
    fi
    CLUSTER_ID="${REQ_CLUSTER_ID:-${CLUSTER_ID:-}}"
    if [[ -z "$CLUSTER_ID" ]]; then CLUSTER_ID="$(random_cluster_id)"; fi
    PEER_PORT="${REQ_PEER_PORT:-${PEER_PORT:-7000}}"
    CLIENT_PORT="${REQ_CLIENT_PORT:-${CLIENT_PORT:-6379}}"
    METRICS_PORT="${REQ_METRICS_PORT:-${METRICS_PORT:-9100}}"
    REMOTE_DIR="${REQ_REMOTE_DIR:-${REMOTE_DIR:-/opt/raftkv}}"
    BIN_DIR="${REQ_BIN_DIR:-${BIN_DIR:-$CARGO_RELEASE_DIR}}"
    # Prebuilt binaries recorded by an earlier deploy are used again as they are.
    [[ "$BIN_DIR" == "$CARGO_RELEASE_DIR" ]] || SKIP_BUILD=1
    SSH_CONFIG="${REQ_SSH_CONFIG:-$SSH_CONFIG}"
    LISTEN="${REQ_LISTEN:-${LISTEN:-0.0.0.0}}"
    SUPERVISOR="${REQ_SUPERVISOR:-${SUPERVISOR:-auto}}"
    if [[ -n "$REQ_EXTRA_CONFIG" ]]; then read_extra_config "$REQ_EXTRA_CONFIG"; fi
    check_settings "settings"
    OUT_DIR="${OUT_DIR:-$REPO_DIR/target/deploy/cluster-$CLUSTER_ID}"
    if ((existing == 0)); then DEPLOYMENT_KIND=new; else DEPLOYMENT_KIND=existing; fi
}

# For every other command: the state's settings; without a state only a dry run may go
# on (from the hosts file and the request, as deploy would).
resolve_state_settings() {
    if [[ -f "$STATE_FILE" ]]; then
        load_state "$STATE_FILE"
        BIN_DIR="${REQ_BIN_DIR:-$BIN_DIR}"
        SSH_CONFIG="${REQ_SSH_CONFIG:-$SSH_CONFIG}"
        OUT_DIR="${OUT_DIR:-$REPO_DIR/target/deploy/cluster-$CLUSTER_ID}"
        return 0
    fi
    [[ $DRY_RUN -eq 1 && -n "$HOSTS_FILE" ]] ||
        die "no deployment recorded in $STATE_FILE (run: scripts/deploy.sh deploy HOSTS_FILE, or pass --state)"
    note "dry run without a state file: settings from $HOSTS_FILE and the environment"
    read_hosts "$HOSTS_FILE"
    resolve_deploy_settings
}

# DEPLOYMENT is a state file or a hosts file (whose state is HOSTS_FILE.state or --state).
resolve_deployment() {
    local given=$1
    [[ -f "$given" ]] || die "$given not found"
    if [[ "$(head --lines=1 -- "$given")" == "$STATE_HEADER"* ]]; then
        STATE_FILE="$given"
    else
        HOSTS_FILE="$(realpath -- "$given")"
        STATE_FILE="${REQ_STATE:-$given.state}"
    fi
}

# ----- build and configs -----

build() {
    if [[ "$SKIP_BUILD" == 1 ]]; then
        note "using the binaries in $BIN_DIR (no build)"
    else
        [[ $DRY_RUN -eq 1 ]] || command -v cargo >/dev/null 2>&1 ||
            die "cargo not found: build elsewhere and pass --bin-dir DIR (or --skip-build)"
        CURRENT_STEP="building kvnode"
        run cargo build --release -p kvnode --manifest-path "$REPO_DIR/Cargo.toml"
    fi
    if [[ $DRY_RUN -eq 0 ]]; then
        [[ -x "$BIN_DIR/kvnode" ]] || die "no kvnode binary in $BIN_DIR"
        [[ -x "$BIN_DIR/kvctl" ]] || die "no kvctl binary in $BIN_DIR"
    fi
}

address_of() {
    if [[ "$1" == *:* ]]; then echo "[$1]:$2"; else echo "$1:$2"; fi
}

# The TOML config of node index $1.
node_config() {
    local index=$1 other listen line
    listen="${LISTENS[index]:-$LISTEN}"
    echo "# Generated by scripts/deploy.sh for ${HOSTS[index]}; a redeploy rewrites it."
    echo "node_id = $((index + 1))"
    echo "cluster_id = $CLUSTER_ID"
    echo "member = ["
    for other in "${!HOSTS[@]}"; do
        echo "  \"$((other + 1))=${HOSTS[other]}:$PEER_PORT,${HOSTS[other]}:$CLIENT_PORT\","
    done
    echo "]"
    echo "# Listen here; the member list above is what the others dial."
    echo "peer_addr = \"$(address_of "$listen" "$PEER_PORT")\""
    echo "client_addr = \"$(address_of "$listen" "$CLIENT_PORT")\""
    echo "metrics_addr = \"$(address_of "$listen" "$METRICS_PORT")\""
    echo "data_dir = \"$REMOTE_DIR/data\""
    echo "storage = \"wal\""
    if ((${#EXTRA_LINES[@]} > 0)); then
        echo "# From --extra-config:"
        for line in "${EXTRA_LINES[@]}"; do echo "$line"; done
    fi
}

# The systemd unit; the host fills in User with the ssh login user.
service_unit() {
    cat <<EOF
[Unit]
Description=raftkv node (kvnode), installed by scripts/deploy.sh
After=network-online.target
Wants=network-online.target

[Service]
User=@RAFTKV_USER@
ExecStart=$REMOTE_DIR/bin/kvnode --config $REMOTE_DIR/kvnode.toml
Restart=always
RestartSec=2
TimeoutStopSec=30
LimitNOFILE=65536
StandardOutput=append:$REMOTE_DIR/kvnode.log
StandardError=append:$REMOTE_DIR/kvnode.log

[Install]
WantedBy=multi-user.target
EOF
}

# Writes each node's files to OUT_DIR/node-N: kvnode.toml, raftkv.service, links to the
# binary and the host script, and SHA256SUMS (what the host checks after the copy).
generate() {
    local index dir sums=""
    mkdir --parents -- "$OUT_DIR"
    if [[ -f "$KVNODE_SOURCE" ]]; then
        sums="$(sha256sum -- "$KVNODE_SOURCE" | cut --delimiter=' ' --fields=1)"
    fi
    for index in "${!HOSTS[@]}"; do
        dir="$OUT_DIR/node-$((index + 1))"
        mkdir --parents -- "$dir"
        node_config "$index" >"$dir/kvnode.toml"
        service_unit >"$dir/$SERVICE_NAME.service"
        ln --symbolic --force -- "$(realpath --canonicalize-missing -- "$KVNODE_SOURCE")" "$dir/kvnode"
        ln --symbolic --force -- "$HOST_SCRIPT" "$dir/deploy-host.sh"
        if [[ -n "$sums" ]]; then
            {
                echo "$sums  kvnode"
                (cd -- "$dir" && sha256sum -- deploy-host.sh kvnode.toml "$SERVICE_NAME.service")
            } >"$dir/SHA256SUMS"
        fi
    done
    echo "Generated configs in $OUT_DIR"
}

# ----- preflight and staging -----

binary_mb() {
    if [[ -f "$KVNODE_SOURCE" ]]; then
        echo $(($(stat --dereference --format=%s -- "$KVNODE_SOURCE") / 1048576 + 1))
    else
        echo 1
    fi
}

# Checks every host before any is changed; prints each check; fails naming every host
# that did not pass.
preflight() {
    local index output failed=() stage_mb listen status
    stage_mb=$(($(binary_mb) + 1))
    CURRENT_STEP="preflight"
    for index in "${!HOSTS[@]}"; do
        listen="${LISTENS[index]:-$LISTEN}"
        status=0
        output="$(host_run "$index" preflight "$REMOTE_DIR" "$PEER_PORT" "$CLIENT_PORT" "$METRICS_PORT" \
            "$listen" "$((DISK_MIN_MB + stage_mb))" "$stage_mb" "$CLUSTER_ID" "$SUPERVISOR" 2>"$WORK_DIR/stderr")" ||
            status=$?
        # shellcheck disable=SC2001 # a prefix on every line
        if [[ -n "$output" ]]; then sed "s/^/  $(node_name "$index"): /" <<<"$output"; fi
        ((status != 0)) || continue
        if ((status == 255)); then
            echo "  $(node_name "$index"): FAIL: ssh as ${TARGETS[index]} failed (unknown user, key not accepted, or host unreachable): $(tail --lines=2 "$WORK_DIR/stderr" | tr '\n' ' ')"
        elif [[ "$output" != *FAIL:* ]]; then
            echo "  $(node_name "$index"): FAIL: the check itself failed (status $status): $(tail --lines=2 "$WORK_DIR/stderr" | tr '\n' ' ')"
        fi
        failed+=("$(node_name "$index")")
    done
    ((${#failed[@]} == 0)) || {
        CURRENT_STEP=""
        die "preflight failed on ${failed[*]}; no host was changed"
    }
}

# Copies node $1's files to a new staging directory on its host (tar over ssh; the binary
# only when the host's installed one differs, else the host copies its own), then has the
# host check them; records the directory for removal and what would change.
stage() {
    local index=$1 dir ssh_argv=() output files=(kvnode) reuse="" installed
    dir="$OUT_DIR/node-$((index + 1))"
    if [[ $DRY_RUN -eq 0 ]]; then
        installed="$(host_run "$index" installed-sha "$REMOTE_DIR")" ||
            die "$(node_name "$index"): could not read its installed binary's checksum"
        if [[ "$installed" == "$(cut --delimiter=' ' --fields=1 "$dir/SHA256SUMS" | head --lines=1)" ]]; then
            files=()
            reuse=" && cp -- $REMOTE_DIR/bin/kvnode \"\$d/kvnode\""
        fi
    fi
    files+=(deploy-host.sh kvnode.toml "$SERVICE_NAME.service" SHA256SUMS)
    # The directory's name comes first, so it is known (and removed) even if the copy fails.
    mapfile -d '' ssh_argv < <(ssh_command "$STAGE_TIMEOUT_SECS" "${TARGETS[index]}" \
        "d=\$(mktemp -d \"\${TMPDIR:-/tmp}/raftkv-stage.XXXXXXXX\") || exit 1; echo \"\$d\"; tar -x -f - -C \"\$d\"$reuse")
    show "tar --create --dereference --file=- --directory=$dir ${files[*]} | $(quote_words "${ssh_argv[@]}")"
    if [[ $DRY_RUN -eq 1 ]]; then
        STAGES[index]=""
        RUNNING[index]=no
        CHANGED[index]=yes
        host_run "$index" check-stage "$REMOTE_DIR" /tmp/raftkv-stage.DRYRUN
        return 0
    fi
    output="$(tar --create --dereference --file=- --directory="$dir" "${files[@]}" | "${ssh_argv[@]}")" || {
        STAGES[index]="$(head --lines=1 <<<"$output")"
        die "copying the files to $(node_name "$index") failed"
    }
    STAGES[index]="$(head --lines=1 <<<"$output")"
    [[ "${STAGES[index]}" =~ /raftkv-stage\.[A-Za-z0-9]+$ ]] || die "$(node_name "$index"): unexpected staging directory '${STAGES[index]}'"
    output="$(host_run "$index" check-stage "$REMOTE_DIR" "${STAGES[index]}")" ||
        die "$(node_name "$index"): the staged files failed their check"
    RUNNING[index]="$(sed --quiet 's/.*running=\([a-z]*\).*/\1/p' <<<"$output")"
    CHANGED[index]="$(sed --quiet 's/.*changed=\([a-z]*\).*/\1/p' <<<"$output")"
    echo "  $(node_name "$index"): staged${reuse:+ (its binary is already this one)}; $output"
}

discard_stages() {
    local index
    for index in "${!STAGES[@]}"; do
        [[ -n "${STAGES[index]}" ]] || continue
        host_run "$index" discard "${STAGES[index]}"
        STAGES[index]=""
    done
}

# ----- the cluster as kvctl sees it -----

# Asks node $1 for RAFT.STATUS (its own view; nothing is forwarded) into the ST_* arrays.
query_node() {
    local index=$1 output key value
    ST_OK[index]=0
    ST_ROLE[index]=""
    ST_LEADER[index]=0
    ST_APPLIED[index]=0
    ST_COMMIT[index]=0
    if ! output="$("$KVCTL" --endpoints "$(client_endpoint "$index")" --timeout-ms 1000 --rounds 1 \
        call RAFT.STATUS 2>&1)"; then
        ST_ERROR[index]="not serving: $(tail --lines=1 <<<"$output")"
        return 0
    fi
    ST_OK[index]=1
    ST_ERROR[index]=""
    while IFS=: read -r key value; do
        value="${value%$'\r'}"
        case "$key" in
            role) ST_ROLE[index]="$value" ;;
            leader_id) ST_LEADER[index]="$value" ;;
            applied_index) ST_APPLIED[index]="$value" ;;
            commit_index) ST_COMMIT[index]="$value" ;;
            *) ;;
        esac
    done <<<"$output"
}

query_cluster() {
    local index
    for index in "${!HOSTS[@]}"; do query_node "$index"; done
}

# The id of the node that says it leads and that the serving nodes follow, or 0.
agreed_leader() {
    local index leader=0
    for index in "${!HOSTS[@]}"; do
        if [[ ${ST_OK[index]:-0} -eq 1 && "${ST_ROLE[index]}" == leader ]]; then leader=$((index + 1)); fi
    done
    echo "$leader"
}

# Fills PROBLEMS with every node (of the indexes given, default all) that is not serving,
# knows no leader or follows another leader than the rest.
find_problems() {
    local leader index indexes=("$@")
    ((${#indexes[@]} > 0)) || indexes=("${!HOSTS[@]}")
    PROBLEMS=()
    leader="$(agreed_leader)"
    for index in "${indexes[@]}"; do
        if [[ ${ST_OK[index]} -ne 1 ]]; then
            PROBLEMS+=("$(node_name "$index"): ${ST_ERROR[index]}")
        elif [[ "${ST_LEADER[index]}" == 0 || $leader -eq 0 ]]; then
            PROBLEMS+=("$(node_name "$index"): serving, but knows no leader")
        elif [[ "${ST_LEADER[index]}" != "$leader" ]]; then
            PROBLEMS+=("$(node_name "$index"): follows node ${ST_LEADER[index]}, not node $leader")
        fi
    done
}

# Polls until every node (of the indexes given) serves and follows one leader, at most
# $1 seconds. Returns 1 with PROBLEMS filled when time runs out.
wait_healthy() {
    local seconds=$1 deadline
    shift
    [[ $DRY_RUN -eq 0 ]] || return 0
    deadline=$((SECONDS + seconds))
    while true; do
        query_cluster
        find_problems "$@"
        ((${#PROBLEMS[@]} > 0)) || return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.25
    done
}

# Polls until node $1 serves, knows the leader and has applied up to the leader's commit
# index as it stood when the node first answered. At most NODE_WAIT_SECS.
wait_caught_up() {
    local index=$1 deadline target="" leader
    [[ $DRY_RUN -eq 0 ]] || return 0
    deadline=$((SECONDS + NODE_WAIT_SECS))
    while ((SECONDS < deadline)); do
        query_cluster
        leader="$(agreed_leader)"
        if [[ ${ST_OK[index]} -eq 1 && $leader -ne 0 && "${ST_LEADER[index]}" == "$leader" ]]; then
            target="${target:-${ST_COMMIT[leader - 1]}}"
            if ((ST_APPLIED[index] >= target)); then
                echo "  $(node_name "$index"): serving, leader node $leader, applied ${ST_APPLIED[index]} (leader's commit was $target)"
                return 0
            fi
        fi
        sleep 0.25
    done
    find_problems "$index"
    return 1
}

# Prints the last lines of the log of every node named in PROBLEMS.
show_problem_logs() {
    local problem index
    for problem in "${PROBLEMS[@]}"; do
        index="${problem#node }"
        index=$((${index%% *} - 1))
        echo "--- last lines of $(node_name "$index")'s log:" >&2
        host_run "$index" logs "$REMOTE_DIR" 8 >&2 2>&1 || echo "(could not read it)" >&2
    done
}

report_problems_and_die() {
    local what=$1 problem
    echo "deploy.sh: $what:" >&2
    for problem in "${PROBLEMS[@]}"; do echo "  $problem" >&2; done
    show_problem_logs
    exit 1
}

# ----- rolling -----

# The node to restart next among the indexes given: a follower first, the leader last.
next_in_rolling_order() {
    local leader index
    leader="$(agreed_leader)"
    for index in "$@"; do
        if ((index + 1 != leader)); then
            echo "$index"
            return 0
        fi
    done
    echo "$1"
}

# Hands leadership from node index $1 to the most caught-up other serving node.
transfer_leadership_off() {
    local from=$1 index best=-1
    for index in "${!HOSTS[@]}"; do
        if ((index == from)) || [[ ${ST_OK[index]:-0} -ne 1 ]]; then continue; fi
        if ((best < 0 || ST_APPLIED[index] > ST_APPLIED[best])); then best=$index; fi
    done
    ((best >= 0)) || die "no other node can take over leadership from $(node_name "$from")"
    echo "  $(node_name "$from") leads: handing leadership to $(node_name "$best")"
    kvctl --endpoints "$(client_endpoints)" --timeout-ms 2000 transfer "$((best + 1))" \
        --wait-secs "$TRANSFER_WAIT_SECS" >/dev/null ||
        die "leadership did not move from $(node_name "$from") to $(node_name "$best")"
}

# Restarts the nodes at the indexes given one at a time with `ACTION` (apply: install the
# staged files; restart: the same files), followers first, each waited for.
rolling() {
    local action=$1 index pending=()
    shift
    pending=("$@")
    while ((${#pending[@]} > 0)); do
        CURRENT_STEP="waiting for every node before the next restart"
        wait_healthy "$NODE_WAIT_SECS" || report_problems_and_die "not every node is healthy; not restarting another one (the cluster could lose its majority)"
        index="$(next_in_rolling_order "${pending[@]}")"
        if [[ $DRY_RUN -eq 0 ]] && (($(agreed_leader) == index + 1)) && ((${#HOSTS[@]} > 1)); then
            CURRENT_STEP="transferring leadership off $(node_name "$index")"
            transfer_leadership_off "$index"
        fi
        CURRENT_STEP="restarting $(node_name "$index") (the cluster still has a majority)"
        echo "  $(node_name "$index"): $action"
        if [[ "$action" == apply ]]; then
            host_run "$index" apply "$REMOTE_DIR" "${STAGES[index]:-/tmp/raftkv-stage.DRYRUN}" "$CLUSTER_ID" "$SUPERVISOR" | sed "s/^/    /"
        else
            host_run "$index" restart "$REMOTE_DIR" | sed "s/^/    /"
        fi
        CURRENT_STEP="waiting for $(node_name "$index") to catch up"
        wait_caught_up "$index" || report_problems_and_die "$(node_name "$index") did not come back within $NODE_WAIT_SECS s"
        local rest=() other
        for other in "${pending[@]}"; do ((other == index)) || rest+=("$other"); done
        pending=("${rest[@]}")
    done
}

# ----- commands -----

# Stages the files on every host, then brings every node to them: all at once when no node
# serves, else the down ones first (stopped, or running without serving, e.g. a bad config
# crash-looping: restarting them costs no availability) and the serving ones that change one
# at a time.
converge() {
    local index fresh=1 stopped=() changing=()
    CURRENT_STEP="staging the files"
    for index in "${!HOSTS[@]}"; do stage "$index"; done
    [[ $DRY_RUN -eq 1 ]] || query_cluster
    for index in "${!HOSTS[@]}"; do
        if [[ "${RUNNING[index]}" == yes && ($DRY_RUN -eq 1 || ${ST_OK[index]} -eq 1) ]]; then
            fresh=0
            [[ "${CHANGED[index]}" != yes ]] || changing+=("$index")
        else
            stopped+=("$index")
            if [[ "${RUNNING[index]}" == yes ]]; then
                echo "  $(node_name "$index"): runs but does not serve (${ST_ERROR[index]}); restarting it now"
            fi
        fi
    done
    for index in "${stopped[@]}"; do
        CURRENT_STEP="installing and starting $(node_name "$index")"
        echo "  $(node_name "$index"): install and start"
        host_run "$index" apply "$REMOTE_DIR" "${STAGES[index]:-/tmp/raftkv-stage.DRYRUN}" "$CLUSTER_ID" "$SUPERVISOR" | sed "s/^/    /"
    done
    if ((fresh == 0 && ${#changing[@]} > 0)); then
        note "updating ${#changing[@]} running node(s) one at a time"
        rolling apply "${changing[@]}"
    elif ((fresh == 0)); then
        note "every running node already has these files"
    fi
    CURRENT_STEP="removing the staging directories"
    discard_stages
    verify
}

verify() {
    CURRENT_STEP="verifying the cluster"
    echo "# waiting up to $LEADER_WAIT_SECS s for every node to serve and follow one leader"
    # The quick path: returns as soon as any node knows a leader. Its failure is reported
    # node by node below.
    kvctl --endpoints "$(client_endpoints)" --timeout-ms 1000 leader --wait-secs "$LEADER_WAIT_SECS" >/dev/null || true
    wait_healthy "$LEADER_WAIT_SECS" || report_problems_and_die "the cluster is not healthy"
    CURRENT_STEP=""
    [[ $DRY_RUN -eq 1 ]] || note "all ${#HOSTS[@]} nodes serve; leader node $(agreed_leader) (cluster $CLUSTER_ID)"
    echo "Clients: $(client_endpoints)  (e.g. redis-cli -h ${HOSTS[0]} -p $CLIENT_PORT)"
}

cmd_deploy() {
    read_hosts "$HOSTS_FILE"
    [[ $DRY_RUN -eq 1 ]] || lock_state
    resolve_deploy_settings
    [[ -z "$SSH_CONFIG" || -r "$SSH_CONFIG" ]] || die "ssh config $SSH_CONFIG cannot be read"
    check_hosts_resolve
    note "$DEPLOYMENT_KIND deployment: cluster id $CLUSTER_ID, ${#HOSTS[@]} hosts (state: $STATE_FILE)"
    KVNODE_SOURCE="$BIN_DIR/kvnode"
    KVCTL="$BIN_DIR/kvctl"
    build
    generate
    preflight
    write_state
    converge
}

cmd_upgrade() {
    local binary=$1
    resolve_state_settings
    [[ $DRY_RUN -eq 1 ]] || lock_state
    [[ -f "$binary" && -x "$binary" ]] || die "upgrade: $binary is not an executable file"
    KVNODE_SOURCE="$(realpath -- "$binary")"
    KVCTL="$BIN_DIR/kvctl"
    [[ $DRY_RUN -eq 1 || -x "$KVCTL" ]] || die "no kvctl in $BIN_DIR (pass --bin-dir)"
    generate
    preflight
    # A node that is down gets the new binary at once; the serving ones one at a time.
    converge
    # Records the binary now installed.
    write_state
}

# Restarts the nodes that do not serve at once (that costs no availability), then the
# serving ones one at a time.
cmd_rolling_restart() {
    local index serving=()
    resolve_state_settings
    [[ $DRY_RUN -eq 1 ]] || lock_state
    KVCTL="$BIN_DIR/kvctl"
    [[ $DRY_RUN -eq 1 || -x "$KVCTL" ]] || die "no kvctl in $BIN_DIR (pass --bin-dir)"
    [[ $DRY_RUN -eq 1 ]] || query_cluster
    for index in "${!HOSTS[@]}"; do
        if [[ $DRY_RUN -eq 1 || ${ST_OK[index]} -eq 1 ]]; then
            serving+=("$index")
            continue
        fi
        CURRENT_STEP="restarting $(node_name "$index"), which does not serve"
        echo "  $(node_name "$index"): does not serve (${ST_ERROR[index]}); restarting it now"
        host_run "$index" restart "$REMOTE_DIR" | sed "s/^/    /"
    done
    note "restarting ${#serving[@]} serving node(s) one at a time"
    rolling restart "${serving[@]}"
    verify
}

cmd_stop() {
    local index failed=() output
    resolve_state_settings
    for index in "${!HOSTS[@]}"; do
        CURRENT_STEP="stopping $(node_name "$index")"
        if output="$(host_run "$index" stop "$REMOTE_DIR" 2>"$WORK_DIR/stderr")"; then
            [[ -z "$output" ]] || echo "$(node_name "$index"): $output"
        else
            echo "$(node_name "$index"): FAILED: $(tail --lines=2 "$WORK_DIR/stderr" | tr '\n' ' ')"
            failed+=("$(node_name "$index")")
        fi
    done
    CURRENT_STEP=""
    ((${#failed[@]} == 0)) || die "could not stop ${failed[*]} (unreachable?); the other nodes were stopped"
}

cmd_status() {
    local index output problems=() line leader
    resolve_state_settings
    KVCTL="$BIN_DIR/kvctl"
    [[ $DRY_RUN -eq 1 || -x "$KVCTL" ]] || die "no kvctl in $BIN_DIR (pass --bin-dir)"
    echo "cluster $CLUSTER_ID, ${#HOSTS[@]} nodes, install directory $REMOTE_DIR (state: $STATE_FILE)"
    for index in "${!HOSTS[@]}"; do
        if output="$(host_run "$index" status "$REMOTE_DIR" 2>"$WORK_DIR/stderr")"; then
            line="$output"
            [[ $DRY_RUN -eq 1 || "$output" == state=running* ]] || problems+=("$(node_name "$index"): process ${output%% *}")
            if [[ "$output" == *binary=replaced* ]]; then
                echo "deploy.sh: warning: $(node_name "$index") runs a binary that was replaced since it started (run: rolling-restart)" >&2
            fi
        else
            line="unreachable over ssh: $(tail --lines=1 "$WORK_DIR/stderr")"
            problems+=("$(node_name "$index"): host unreachable over ssh ($(tail --lines=1 "$WORK_DIR/stderr"))")
        fi
        echo "$(node_name "$index") ssh ${TARGETS[index]}: $line"
    done
    if [[ $DRY_RUN -eq 0 ]]; then
        query_cluster
        find_problems
        leader="$(agreed_leader)"
        for index in "${!HOSTS[@]}"; do
            if [[ ${ST_OK[index]} -eq 1 ]]; then
                echo "$(node_name "$index") $(client_endpoint "$index"): ${ST_ROLE[index]}, leader ${ST_LEADER[index]}, commit ${ST_COMMIT[index]}, applied ${ST_APPLIED[index]}"
            fi
        done
        problems+=("${PROBLEMS[@]}")
    fi
    echo
    kvctl --endpoints "$(client_endpoints)" --timeout-ms 1000 --rounds 1 status || true
    if ((${#problems[@]} > 0)); then
        echo "deploy.sh: ${#problems[@]} problem(s):" >&2
        printf '  %s\n' "${problems[@]}" >&2
        exit 1
    fi
    [[ $DRY_RUN -eq 1 ]] || note "all ${#HOSTS[@]} nodes run and serve; leader node $leader"
}

cmd_logs() {
    local id=$1 lines=${2:-50}
    resolve_state_settings
    if ! [[ "$id" =~ ^[0-9]+$ ]] || ((id < 1 || id > ${#HOSTS[@]})); then die "node id must be in 1..${#HOSTS[@]}"; fi
    [[ "$lines" =~ ^[0-9]+$ ]] || die "LINES must be a number"
    host_run "$((id - 1))" logs "$REMOTE_DIR" "$lines"
}

main() {
    local command="" positional=()
    while (($# > 0)); do
        case "$1" in
            --dry-run) DRY_RUN=1 ;;
            --skip-build) SKIP_BUILD=1 ;;
            -h | --help) usage; exit 0 ;;
            --state | --bin-dir | --ssh-config | --listen | --cluster-id | --remote-dir | --peer-port | \
                --client-port | --metrics-port | --supervisor | --extra-config)
                (($# >= 2)) || { echo "deploy.sh: $1 needs a value" >&2; exit 2; }
                case "$1" in
                    --state) REQ_STATE=$2 ;;
                    --bin-dir) REQ_BIN_DIR=$2 ;;
                    --ssh-config) REQ_SSH_CONFIG=$2 ;;
                    --listen) REQ_LISTEN=$2 ;;
                    --cluster-id) REQ_CLUSTER_ID=$2 ;;
                    --remote-dir) REQ_REMOTE_DIR=$2 ;;
                    --peer-port) REQ_PEER_PORT=$2 ;;
                    --client-port) REQ_CLIENT_PORT=$2 ;;
                    --metrics-port) REQ_METRICS_PORT=$2 ;;
                    --supervisor) REQ_SUPERVISOR=$2 ;;
                    --extra-config) REQ_EXTRA_CONFIG=$2 ;;
                esac
                shift
                ;;
            -*) echo "deploy.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
            *) positional+=("$1") ;;
        esac
        shift
    done
    # Binaries given (flag or environment) are used as they are: nothing is built.
    [[ -z "$REQ_BIN_DIR" ]] || SKIP_BUILD=1
    if [[ -n "$REQ_SSH_CONFIG" ]]; then REQ_SSH_CONFIG="$(realpath --canonicalize-missing -- "$REQ_SSH_CONFIG")"; fi
    if [[ -n "$REQ_BIN_DIR" ]]; then REQ_BIN_DIR="$(realpath --canonicalize-missing -- "$REQ_BIN_DIR")"; fi
    if ((${#positional[@]} > 0)); then
        case "${positional[0]}" in
            deploy | start | stop | status | rolling-restart | upgrade | logs)
                command="${positional[0]}"
                positional=("${positional[@]:1}")
                ;;
            *) command=deploy ;;
        esac
    fi
    if ((${#positional[@]} == 0)); then
        usage >&2
        exit 2
    fi
    exec 3>&1
    if [[ -n "${DEPLOY_SUDO+set}" ]]; then
        echo "deploy.sh: DEPLOY_SUDO is no longer read: each host's privilege is found by itself (see --help)" >&2
    fi
    WORK_DIR="$(mktemp --directory --tmpdir raftkv-deploy.XXXXXXXX)"
    resolve_deployment "${positional[0]}"
    [[ $DRY_RUN -eq 0 ]] || echo "# dry run: nothing below is executed"
    case "$command" in
        deploy | start)
            ((${#positional[@]} == 1)) || { echo "deploy.sh: deploy takes one HOSTS_FILE" >&2; exit 2; }
            if [[ -z "$HOSTS_FILE" ]]; then HOSTS_FILE="$(load_state "$STATE_FILE"; echo "$HOSTS_FILE")"; fi
            [[ -f "$HOSTS_FILE" ]] || die "the hosts file $HOSTS_FILE of $STATE_FILE is gone"
            cmd_deploy
            ;;
        stop | status | rolling-restart)
            ((${#positional[@]} == 1)) || { echo "deploy.sh: $command takes one DEPLOYMENT" >&2; exit 2; }
            case "$command" in
                stop) cmd_stop ;;
                status) cmd_status ;;
                rolling-restart) cmd_rolling_restart ;;
            esac
            ;;
        upgrade)
            ((${#positional[@]} == 2)) || { echo "deploy.sh: upgrade DEPLOYMENT BINARY" >&2; exit 2; }
            cmd_upgrade "${positional[1]}"
            ;;
        logs)
            ((${#positional[@]} >= 2 && ${#positional[@]} <= 3)) || { echo "deploy.sh: logs DEPLOYMENT ID [LINES]" >&2; exit 2; }
            cmd_logs "${positional[1]}" "${positional[2]:-}"
            ;;
    esac
}

main "$@"
