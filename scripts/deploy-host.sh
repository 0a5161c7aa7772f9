#!/usr/bin/env bash
# The host side of scripts/deploy.sh. deploy.sh sends this file over ssh for every step
# (`bash -s -- COMMAND ARGS`, as root: directly when logged in as root, else through
# `sudo -n` when that works, else as the login user, who must then own DIR), and installs
# a copy as DIR/bin/raftkv-host, which the shell supervisor runs.
#
#   preflight DIR PEER_PORT CLIENT_PORT METRICS_PORT LISTEN DISK_MB STAGE_MB CLUSTER_ID SUPERVISOR
#                           check this host before anything is changed; one line per check
#   check-stage DIR STAGE   the staged files are whole, kvnode runs here; then what would change
#   apply DIR STAGE CLUSTER_ID SUPERVISOR
#                           stop the node if it runs, install the staged files, start it
#   start DIR | stop DIR | restart DIR | status DIR | logs DIR LINES
#   installed-sha DIR       the SHA-256 of the installed kvnode, or "none"
#   discard STAGE           remove a staging directory (only one named raftkv-stage.*)
#   supervise DIR           the shell supervisor (run by `start`, not by hand)
#
# DIR holds bin/kvnode, bin/raftkv-host, kvnode.toml, cluster.id (the deployment's cluster
# id: a host holding another deployment's node is refused), supervisor ("systemd" or
# "shell": how this node is kept running), data/ (WAL, snapshots), kvnode.log and run/
# (pid files). Every pid file holds "PID START_TIME" (field 22 of /proc/PID/stat) and is
# trusted only while /proc/PID still has that start time and the expected command line;
# a stale one is removed, never signalled.
#
# Short options on purpose: this runs on hosts whose userland deploy.sh does not choose.
#
# Output lines meant for deploy.sh are KEY=VALUE words ("state=running pid=42 ...") or
# "ok: ..." / "FAIL: ..." (preflight). Every wait is bounded.
set -euo pipefail

UNIT_NAME=raftkv
UNIT_FILE=/etc/systemd/system/$UNIT_NAME.service
# Bounds of the waits below.
STOP_WAIT_SECS=${RAFTKV_STOP_WAIT_SECS:-30}
START_WAIT_SECS=10
# The shell supervisor's restart delays: doubling from the first to the last; reset once a
# node has run for BACKOFF_RESET_SECS.
BACKOFF_FIRST_SECS=1
BACKOFF_MAX_SECS=30
BACKOFF_RESET_SECS=60

die() {
    echo "raftkv-host: $*" >&2
    exit 1
}

log_line() {
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) raftkv-supervise: $*"
}

# The user the node runs as: the ssh login user (root when logging in as root).
run_user() {
    echo "${SUDO_USER:-$(id -un)}"
}

require_dir() {
    [[ "$1" =~ ^/[A-Za-z0-9._/-]+$ ]] || die "bad install directory '$1'"
}

# ----- pid files checked against the process's identity -----

# Field 22 of /proc/PID/stat (start time in clock ticks since boot); fails if PID is gone.
start_time() {
    local stat rest fields
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    rest="${stat##*) }"
    read -r -a fields <<<"$rest"
    echo "${fields[19]}"
}

# Writes "PID START_TIME" to FILE (via a rename, so a reader never sees half a line).
write_pid_file() {
    local file=$1 pid=$2 started
    started="$(start_time "$pid")" || return 1
    echo "$pid $started" >"$file.new"
    mv -f -- "$file.new" "$file"
}

# Prints the pid in FILE if that process still runs with the recorded start time and its
# command line contains every NEEDLE; otherwise removes FILE (stale) and prints nothing.
checked_pid() {
    local file=$1 pid started current cmdline needle
    shift
    [[ -f "$file" ]] || return 0
    read -r pid started <"$file" || true
    if [[ "${pid:-}" =~ ^[0-9]+$ && "${started:-}" =~ ^[0-9]+$ ]] &&
        current="$(start_time "$pid")" && [[ "$current" == "$started" ]]; then
        cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
        for needle in "$@"; do
            [[ "$cmdline" == *"$needle"* ]] || { rm -f -- "$file"; return 0; }
        done
        echo "$pid"
        return 0
    fi
    rm -f -- "$file"
}

node_pid() {
    checked_pid "$1/run/kvnode.pid" "$1/bin/kvnode" "--config $1/kvnode.toml"
}

supervisor_pid() {
    checked_pid "$1/run/supervisor.pid" "$1/bin/raftkv-host supervise $1"
}

# Whether PID is (still) the same process: alive and not a zombie.
alive() {
    local state
    state="$(cut -d ' ' -f 3 "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ "$state" != Z ]]
}

# ----- supervision -----

systemd_running() {
    [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1
}

# How the node on this host is (to be) kept running: "systemd" or "shell".
choose_supervisor() {
    local wanted=$1
    case "$wanted" in
        systemd)
            systemd_running || die "--supervisor systemd, but systemd does not run this host"
            [[ "$(id -u)" -eq 0 ]] || die "--supervisor systemd needs root (or sudo -n)"
            echo systemd
            ;;
        shell) echo shell ;;
        auto)
            if systemd_running && [[ "$(id -u)" -eq 0 ]]; then echo systemd; else echo shell; fi
            ;;
        *) die "unknown supervisor '$wanted'" ;;
    esac
}

installed_supervisor() {
    local dir=$1
    if [[ -f "$dir/supervisor" ]]; then cat "$dir/supervisor"; else echo shell; fi
}

# The shell supervisor, run in its own session by `start`: starts kvnode, and when it
# exits starts it again after a delay that doubles from BACKOFF_FIRST_SECS up to
# BACKOFF_MAX_SECS (reset once the node has run BACKOFF_RESET_SECS). SIGTERM stops the
# node (SIGTERM to kvnode, then waiting for it) and then the supervisor; `stop` escalates
# to SIGKILL past its own bound. Its messages go to kvnode.log, between the node's lines.
cmd_supervise() {
    local dir=$1 child="" sleeper="" stopping=0 backoff=$BACKOFF_FIRST_SECS started ran status
    require_dir "$dir"
    mkdir -p -- "$dir/run"
    write_pid_file "$dir/run/supervisor.pid" "$$"
    echo 0 >"$dir/run/restarts"
    # shellcheck disable=SC2317 # invoked by the trap
    on_term() {
        stopping=1
        if [[ -n "$sleeper" ]]; then kill -TERM "$sleeper" 2>/dev/null || true; fi
        if [[ -n "$child" ]]; then kill -TERM "$child" 2>/dev/null || true; fi
    }
    trap on_term TERM INT
    trap '' HUP
    while ((stopping == 0)); do
        started=$SECONDS
        log_line "starting $dir/bin/kvnode (supervisor pid $$)"
        "$dir/bin/kvnode" --config "$dir/kvnode.toml" </dev/null &
        child=$!
        # A SIGTERM that came before $child was set has not reached the node yet.
        if ((stopping == 1)); then kill -TERM "$child" 2>/dev/null || true; fi
        write_pid_file "$dir/run/kvnode.pid" "$child" || true
        # `wait` returns early (status > 128) when a trapped signal arrives; wait again
        # until the child is really gone (a zombie still answers kill -0).
        status=0
        while true; do
            wait "$child" && status=0 || status=$?
            kill -0 "$child" 2>/dev/null || break
        done
        child=""
        rm -f -- "$dir/run/kvnode.pid"
        ran=$((SECONDS - started))
        if ((stopping == 1)); then
            log_line "kvnode stopped (status $status); supervisor exiting"
            break
        fi
        ((ran < BACKOFF_RESET_SECS)) || backoff=$BACKOFF_FIRST_SECS
        echo $(($(cat "$dir/run/restarts" 2>/dev/null || echo 0) + 1)) >"$dir/run/restarts"
        log_line "kvnode exited with status $status after ${ran} s; restarting in ${backoff} s"
        sleep "$backoff" &
        sleeper=$!
        wait "$sleeper" || true
        sleeper=""
        backoff=$((backoff * 2 > BACKOFF_MAX_SECS ? BACKOFF_MAX_SECS : backoff * 2))
    done
    rm -f -- "$dir/run/supervisor.pid"
}

start_shell() {
    local dir=$1 user pid deadline
    pid="$(supervisor_pid "$dir")"
    if [[ -n "$pid" ]]; then
        echo "already running (supervisor pid $pid)"
        return 0
    fi
    # A node left without its supervisor (the supervisor was killed alone) is stopped
    # first, so the new supervisor's node can bind the ports.
    stop_shell "$dir" >/dev/null
    user="$(run_user)"
    local launch=(setsid -f bash "$dir/bin/raftkv-host" supervise "$dir")
    if [[ "$(id -u)" -eq 0 && "$user" != root ]]; then
        launch=(runuser -u "$user" -- "${launch[@]}")
    fi
    "${launch[@]}" </dev/null >>"$dir/kvnode.log" 2>&1
    # Until the supervisor runs and has started kvnode once: it runs, or it already exited
    # (a restart is counted). Whether it serves is for deploy.sh to find out.
    deadline=$((SECONDS + START_WAIT_SECS))
    while [[ -z "$(supervisor_pid "$dir")" ]] ||
        [[ -z "$(node_pid "$dir")" && "$(cat "$dir/run/restarts" 2>/dev/null || echo 0)" == 0 ]]; do
        ((SECONDS < deadline)) || die "the supervisor did not start kvnode within ${START_WAIT_SECS} s (see $dir/kvnode.log)"
        sleep 0.1
    done
    pid="$(node_pid "$dir")"
    if [[ -n "$pid" ]]; then
        echo "started (supervisor pid $(supervisor_pid "$dir"), kvnode pid $pid)"
    else
        echo "started, but kvnode exited at once; its supervisor keeps restarting it (see $dir/kvnode.log)"
    fi
}

# Stops the supervisor and its node; a pid that fails its identity check is never
# signalled. SIGTERM first, SIGKILL after STOP_WAIT_SECS.
stop_shell() {
    local dir=$1 supervisor node deadline
    supervisor="$(supervisor_pid "$dir")"
    node="$(node_pid "$dir")"
    if [[ -z "$supervisor" && -z "$node" ]]; then
        echo "not running"
        return 0
    fi
    if [[ -n "$supervisor" ]]; then
        kill -TERM "$supervisor" 2>/dev/null || true
    else
        kill -TERM "$node" 2>/dev/null || true
    fi
    deadline=$((SECONDS + STOP_WAIT_SECS))
    while { [[ -n "$supervisor" ]] && alive "$supervisor"; } || { [[ -n "$node" ]] && alive "$node"; }; do
        if ((SECONDS >= deadline)); then
            echo "still running after ${STOP_WAIT_SECS} s; sending SIGKILL"
            # Identity checked again: the pids may have been reused meanwhile.
            node="$(node_pid "$dir")"
            supervisor="$(supervisor_pid "$dir")"
            if [[ -n "$supervisor" ]]; then kill -KILL "$supervisor" 2>/dev/null || true; fi
            if [[ -n "$node" ]]; then kill -KILL "$node" 2>/dev/null || true; fi
            break
        fi
        sleep 0.1
    done
    rm -f -- "$dir/run/supervisor.pid" "$dir/run/kvnode.pid"
    echo "stopped"
}

cmd_start() {
    local dir=$1
    require_dir "$dir"
    [[ -x "$dir/bin/kvnode" ]] || die "no node installed in $dir"
    if [[ "$(installed_supervisor "$dir")" == systemd ]]; then
        systemctl start "$UNIT_NAME"
        echo "started ($UNIT_NAME.service)"
    else
        start_shell "$dir"
    fi
}

cmd_stop() {
    local dir=$1 by_systemd="" by_shell
    require_dir "$dir"
    if systemd_unit_active; then
        systemctl stop "$UNIT_NAME"
        by_systemd="stopped ($UNIT_NAME.service)"
    fi
    # Also when systemd ran it: a node the shell supervisor ran before a switch.
    by_shell="$(stop_shell "$dir")"
    echo "${by_systemd:-$by_shell}"
}

systemd_unit_active() {
    systemd_running && systemctl is-active --quiet "$UNIT_NAME" 2>/dev/null
}

# Whether this deployment's node (or its supervisor) runs here, by either supervisor.
node_running() {
    local dir=$1
    [[ -d "$dir" ]] || return 1
    [[ -n "$(node_pid "$dir")" || -n "$(supervisor_pid "$dir")" ]] || systemd_unit_active
}

# ----- status -----

# One line: state=running|stopped|failed pid= supervisor= restarts= binary=current|replaced
cmd_status() {
    local dir=$1 supervisor pid="" restarts=0 binary=current exe uptime=""
    require_dir "$dir"
    if [[ ! -x "$dir/bin/kvnode" ]]; then
        echo "state=absent"
        return 0
    fi
    supervisor="$(installed_supervisor "$dir")"
    if [[ "$supervisor" == systemd ]]; then
        pid="$(systemctl show --property=MainPID --value "$UNIT_NAME" 2>/dev/null || echo 0)"
        [[ "$pid" != 0 ]] || pid=""
        restarts="$(systemctl show --property=NRestarts --value "$UNIT_NAME" 2>/dev/null || echo '?')"
        if [[ -z "$pid" ]] && [[ "$(systemctl is-active "$UNIT_NAME" 2>/dev/null || true)" == failed ]]; then
            echo "state=failed supervisor=systemd restarts=$restarts"
            return 0
        fi
    else
        pid="$(node_pid "$dir")"
        restarts="$(cat "$dir/run/restarts" 2>/dev/null || echo 0)"
        if [[ -z "$pid" && -n "$(supervisor_pid "$dir")" ]]; then
            echo "state=restarting supervisor=shell restarts=$restarts"
            return 0
        fi
    fi
    if [[ -z "$pid" ]]; then
        echo "state=stopped supervisor=$supervisor"
        return 0
    fi
    exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
    [[ "$exe" != *"(deleted)"* ]] || binary=replaced
    uptime=$(($(cut -d ' ' -f 1 /proc/uptime | cut -d . -f 1) - $(start_time "$pid") / $(getconf CLK_TCK)))
    echo "state=running pid=$pid supervisor=$supervisor restarts=$restarts binary=$binary uptime_secs=$uptime"
}

cmd_logs() {
    local dir=$1 lines=$2
    require_dir "$dir"
    [[ "$lines" =~ ^[0-9]+$ ]] || die "bad line count '$lines'"
    [[ -f "$dir/kvnode.log" ]] || die "no log at $dir/kvnode.log"
    tail -n "$lines" -- "$dir/kvnode.log"
}

# ----- preflight -----

port_listening() {
    local port=$1 hex file local_address state
    printf -v hex '%04X' "$port"
    for file in /proc/net/tcp /proc/net/tcp6; do
        [[ -r "$file" ]] || continue
        while read -r _ local_address _ state _; do
            if [[ "$state" == 0A && "${local_address##*:}" == "$hex" ]]; then return 0; fi
        done < <(tail -n +2 -- "$file")
    done
    return 1
}

# The nearest existing directory at or above $1.
existing_ancestor() {
    local path=$1
    while [[ ! -d "$path" ]]; do path="$(dirname -- "$path")"; done
    echo "$path"
}

free_mb() {
    df -Pk -- "$(existing_ancestor "$1")" | tail -n 1 | awk '{ print int($4 / 1024) }'
}

cmd_preflight() {
    local dir=$1 peer=$2 client=$3 metrics=$4 listen=$5 disk_mb=$6 stage_mb=$7 cluster_id=$8 wanted=$9
    local failures=0 user tool port free tmp existing
    require_dir "$dir"
    fail() {
        echo "FAIL: $*"
        failures=$((failures + 1))
    }
    user="$(run_user)"
    if [[ "$(id -u)" -eq 0 ]]; then
        echo "ok: privilege: root${SUDO_USER:+ (sudo -n from $SUDO_USER)}"
    elif [[ -w "$(existing_ancestor "$dir")" ]]; then
        echo "ok: privilege: none needed ($dir is writable by $user; no systemd unit)"
    else
        fail "privilege: $user is not root and 'sudo -n' is not allowed (missing, or it wants a password); log in as root, allow $user passwordless sudo, or use a --remote-dir $user can write"
    fi
    for tool in setsid sha256sum df awk tar mktemp cut tr; do
        command -v "$tool" >/dev/null 2>&1 || fail "tools: '$tool' not found"
    done
    [[ -r /proc/self/stat ]] || fail "tools: /proc is not mounted"
    if [[ "$(id -u)" -eq 0 && "$user" != root ]] && ! command -v runuser >/dev/null 2>&1; then
        fail "tools: 'runuser' not found (needed to run kvnode as $user)"
    fi
    if [[ -f "$dir/cluster.id" ]]; then
        existing="$(cat "$dir/cluster.id")"
        [[ "$existing" == "$cluster_id" ]] ||
            fail "deployment: $dir belongs to cluster $existing, not $cluster_id (another deployment); remove it or choose another --remote-dir"
    elif [[ -d "$dir/data" && -n "$(ls -A -- "$dir/data" 2>/dev/null)" ]]; then
        fail "deployment: $dir/data holds data but no cluster.id (not made by this deploy.sh); move it away first"
    fi
    if node_running "$dir"; then
        echo "ok: ports: held by this deployment's running node"
    else
        for port in "$peer" "$client" "$metrics"; do
            if port_listening "$port"; then fail "ports: $port is in use by another program"; fi
        done
        echo "ok: ports: $peer, $client, $metrics checked"
    fi
    if [[ "$listen" != 0.0.0.0 && "$listen" != "::" ]]; then
        if ! command -v ip >/dev/null 2>&1; then
            echo "ok: listen: cannot check $listen (no 'ip' command)"
        elif ip -o addr show | grep -qF " $listen/"; then
            echo "ok: listen: $listen is an address of this host"
        else
            fail "listen: $listen is not an address of this host"
        fi
    fi
    free="$(free_mb "$dir")"
    if ((free < disk_mb)); then
        fail "disk: $free MB free for $dir, need $disk_mb MB"
    else
        echo "ok: disk: $free MB free for $dir"
    fi
    tmp="${TMPDIR:-/tmp}"
    free="$(free_mb "$tmp")"
    if ((free < stage_mb)); then
        fail "disk: $free MB free in $tmp for staging, need $stage_mb MB"
    else
        echo "ok: disk: $free MB free in $tmp"
    fi
    echo "ok: supervisor: $(choose_supervisor "$wanted")"
    ((failures == 0))
}

# ----- staging and installing -----

require_stage() {
    [[ "$1" =~ /raftkv-stage\.[A-Za-z0-9]+$ && -d "$1" ]] || die "bad staging directory '$1'"
}

same_file() {
    [[ -f "$1" && -f "$2" ]] && cmp -s -- "$1" "$2"
}

# The systemd unit as installed: the staged one with this host's user filled in.
unit_text() {
    sed "s/@RAFTKV_USER@/$(run_user)/" "$1/raftkv.service"
}

cmd_check_stage() {
    local dir=$1 stage=$2 version running=no reasons=()
    require_dir "$dir"
    require_stage "$stage"
    (cd -- "$stage" && sha256sum --check --quiet SHA256SUMS) || die "staged files in $stage are damaged"
    version="$("$stage/kvnode" --version 2>&1)" || die "the new kvnode does not run on this host: $version"
    if node_running "$dir"; then running=yes; fi
    same_file "$stage/kvnode" "$dir/bin/kvnode" || reasons+=(binary)
    same_file "$stage/kvnode.toml" "$dir/kvnode.toml" || reasons+=(config)
    if [[ "$running" == yes && "$(cmd_status "$dir")" == *binary=replaced* ]]; then
        reasons+=(stale-process)
    fi
    if [[ "$(installed_supervisor "$dir")" == systemd ]] && ! cmp -s <(unit_text "$stage") "$UNIT_FILE"; then
        reasons+=(unit)
    fi
    local joined="${reasons[*]:-}"
    echo "version=${version// /_} running=$running changed=$([[ -n "$joined" ]] && echo yes || echo no) reasons=${joined// /,}"
}

# Copies $1 to $2 through a temporary name and a rename: a running kvnode or supervisor
# keeps the file it opened.
install_file() {
    local source=$1 target=$2 mode=$3
    cp -- "$source" "$target.new"
    chmod "$mode" -- "$target.new"
    mv -f -- "$target.new" "$target"
}

cmd_apply() {
    local dir=$1 stage=$2 cluster_id=$3 wanted=$4 supervisor user
    require_dir "$dir"
    require_stage "$stage"
    [[ "$cluster_id" =~ ^[0-9]+$ ]] || die "bad cluster id '$cluster_id'"
    (cd -- "$stage" && sha256sum --check --quiet SHA256SUMS) || die "staged files in $stage are damaged"
    if [[ -f "$dir/cluster.id" && "$(cat "$dir/cluster.id")" != "$cluster_id" ]]; then
        die "$dir belongs to cluster $(cat "$dir/cluster.id"), not $cluster_id"
    fi
    supervisor="$(choose_supervisor "$wanted")"
    cmd_stop "$dir" >/dev/null
    user="$(run_user)"
    mkdir -p -- "$dir/bin" "$dir/data" "$dir/run"
    install_file "$stage/kvnode" "$dir/bin/kvnode" 0755
    install_file "$stage/deploy-host.sh" "$dir/bin/raftkv-host" 0755
    install_file "$stage/kvnode.toml" "$dir/kvnode.toml" 0644
    [[ -f "$dir/cluster.id" ]] || echo "$cluster_id" >"$dir/cluster.id"
    echo "$supervisor" >"$dir/supervisor"
    touch -- "$dir/kvnode.log"
    if [[ "$(id -u)" -eq 0 ]]; then
        chown -R -- "$user" "$dir/data" "$dir/run" "$dir/kvnode.log"
    fi
    if [[ "$supervisor" == systemd ]]; then
        unit_text "$stage" >"$UNIT_FILE.new"
        mv -f -- "$UNIT_FILE.new" "$UNIT_FILE"
        systemctl daemon-reload
        systemctl enable --quiet "$UNIT_NAME"
    elif systemd_running && [[ -f "$UNIT_FILE" ]] && [[ "$(id -u)" -eq 0 ]]; then
        # Switched to the shell supervisor: the unit must not start a second node.
        systemctl disable --quiet "$UNIT_NAME" || true
        rm -f -- "$UNIT_FILE"
        systemctl daemon-reload
    fi
    echo "installed $(sed -n 1p "$stage/SHA256SUMS" | cut -c 1-12) ($supervisor supervisor)"
    cmd_start "$dir"
}

cmd_installed_sha() {
    local dir=$1
    require_dir "$dir"
    if [[ -f "$dir/bin/kvnode" ]]; then
        sha256sum -- "$dir/bin/kvnode" | cut -d ' ' -f 1
    else
        echo none
    fi
}

cmd_discard() {
    local stage=$1
    [[ "$stage" =~ /raftkv-stage\.[A-Za-z0-9]+$ ]] || die "refusing to remove '$stage'"
    rm -rf -- "$stage"
}

main() {
    local command=${1:-}
    shift || true
    case "$command" in
        preflight) (($# == 9)) || die "preflight takes 9 arguments"; cmd_preflight "$@" ;;
        check-stage) (($# == 2)) || die "check-stage DIR STAGE"; cmd_check_stage "$@" ;;
        apply) (($# == 4)) || die "apply DIR STAGE CLUSTER_ID SUPERVISOR"; cmd_apply "$@" ;;
        start) (($# == 1)) || die "start DIR"; cmd_start "$1" ;;
        stop) (($# == 1)) || die "stop DIR"; cmd_stop "$1" ;;
        restart) (($# == 1)) || die "restart DIR"; cmd_stop "$1" >/dev/null; cmd_start "$1" ;;
        status) (($# == 1)) || die "status DIR"; cmd_status "$1" ;;
        logs) (($# == 2)) || die "logs DIR LINES"; cmd_logs "$@" ;;
        installed-sha) (($# == 1)) || die "installed-sha DIR"; cmd_installed_sha "$1" ;;
        discard) (($# == 1)) || die "discard STAGE"; cmd_discard "$1" ;;
        supervise) (($# == 1)) || die "supervise DIR"; cmd_supervise "$1" ;;
        *) die "unknown command '$command' (see the top of this file)" ;;
    esac
}

main "$@"
