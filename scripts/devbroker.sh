#!/usr/bin/env bash
# devbroker.sh - set up, start and stop a development Mosquitto broker on 127.0.0.1 with TLS.
#
# Usage:
#   scripts/devbroker.sh setup DIR PORT [WSPORT]
#                                         create DIR: certificates, mosquitto.conf, acl,
#                                         passwd and one DIR/USER.pass per dev user; with
#                                         WSPORT also a WebSockets listener (no TLS) on
#                                         127.0.0.1:WSPORT that serves DIR/www over HTTP
#                                         (the dashboard, docs/dashboard.md)
#   scripts/devbroker.sh start DIR        start mosquitto in the background, wait until it
#                                         accepts TLS logins (log DIR/mosquitto.log,
#                                         pid DIR/mosquitto.pid)
#   scripts/devbroker.sh stop DIR         stop the broker whose pid is in DIR/mosquitto.pid
#   scripts/devbroker.sh status DIR       say whether that broker runs
#
# DIR must be an absolute path. The broker runs as the invoking user and listens on 127.0.0.1
# only. Dev users: synccloud, edge-a .. edge-e, viewer (see broker-config/dev.acl), plus the
# device users named in $DEVBROKER_EXTRA_USERS (space-separated).
# Running setup again keeps existing passwords and certificates, and rewrites the rest.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/.." && pwd)
USERS=(synccloud edge-a edge-b edge-c edge-d edge-e viewer admin)
# More device users (e.g. DEVBROKER_EXTRA_USERS="edge-f edge-g" for a benchmark with more
# edges); the ACL's patterns give every user the topics of the device of that name.
read -r -a EXTRA_USERS <<<"${DEVBROKER_EXTRA_USERS:-}"
for u in "${EXTRA_USERS[@]}"; do
    [[ "$u" =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || { echo "devbroker: error: bad user name '$u'" >&2; exit 1; }
    USERS+=("$u")
done
START_TIMEOUT=10

die() {
    echo "devbroker: error: $*" >&2
    exit 1
}

usage() {
    sed -n '3,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found (run scripts/install-deps.sh)"
}

check_dir() {
    [[ "$1" == /* ]] || die "DIR must be an absolute path, got '$1'"
    # The path goes into a config file line by line: a newline would split it.
    [[ "$1" != *$'\n'* ]] || die "DIR must not contain a newline"
    # Mosquitto splits config values at whitespace for some options: keep paths simple.
    [[ "$1" != *[[:space:]]* ]] || die "DIR must not contain whitespace, got '$1'"
}

# Escapes a string for the replacement side of a sed s||| command.
sed_escape() {
    printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'
}

# Prints the listener port from DIR/mosquitto.conf.
conf_port() {
    awk '$1 == "listener" { print $2; exit }' "$1/mosquitto.conf"
}

# Prints the WebSockets listener port from DIR/mosquitto.conf (nothing if there is none).
conf_ws_port() {
    awk '$1 == "listener" { p = $2 } $1 == "protocol" && $2 == "websockets" { print p; exit }' \
        "$1/mosquitto.conf"
}

# Succeeds if PID is alive and is a mosquitto process (guards against a recycled pid).
is_our_broker() {
    local pid=$1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -r /proc/$pid/comm ]] || return 0
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == mosquitto ]]
}

# Succeeds once the broker in DIR answers on PORT.
probe() {
    local dir=$1 port=$2
    if [[ -s "$dir/viewer.pass" ]] && command -v mosquitto_sub >/dev/null 2>&1; then
        mosquitto_sub -h 127.0.0.1 -p "$port" --cafile "$dir/ca.crt" \
            -u viewer -P "$(head -n 1 "$dir/viewer.pass")" -i "devbroker-probe-$$" \
            -t 'sync/demo/events/devbroker-probe' -E -W 2 >/dev/null 2>&1
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
    fi
}

cmd_setup() {
    [[ $# -eq 2 || $# -eq 3 ]] || usage
    local dir=$1 port=$2 wsport=${3:-} user pass u p
    check_dir "$dir"
    for p in "$port" ${wsport:+"$wsport"}; do
        if ! [[ "$p" =~ ^[1-9][0-9]{0,4}$ ]] || ((p > 65535)); then
            die "PORT and WSPORT must be numbers from 1 to 65535, got '$p'"
        fi
    done
    [[ "$port" != "$wsport" ]] || die "WSPORT must differ from PORT"
    need mosquitto_passwd
    need openssl
    [[ -r "$SRC/broker-config/mosquitto-dev.conf" ]] ||
        die "template $SRC/broker-config/mosquitto-dev.conf not found"
    [[ -r "$SRC/broker-config/dev.acl" ]] || die "$SRC/broker-config/dev.acl not found"

    mkdir -p "$dir" || die "cannot create '$dir'"
    bash "$SRC/scripts/dev-certs.sh" "$dir" >/dev/null

    # The broker runs as this user (see the template), so it can read the files we write.
    user=$(id -un) || die "cannot find the current user name"
    # The template's "#ws# " lines are the WebSockets listener: kept (unprefixed) with WSPORT,
    # dropped without. Its HTTP folder must exist, or that listener does not start.
    local ws_sed=(-e '/^#ws# /d')
    if [[ -n "$wsport" ]]; then
        ws_sed=(-e 's/^#ws# //' -e "s|@WSPORT@|$(sed_escape "$wsport")|g")
        mkdir -p "$dir/www" || die "cannot create '$dir/www'"
    fi
    sed "${ws_sed[@]}" \
        -e "s|@PORT@|$(sed_escape "$port")|g" \
        -e "s|@DIR@|$(sed_escape "$dir")|g" \
        -e "s|@USER@|$(sed_escape "$user")|g" \
        "$SRC/broker-config/mosquitto-dev.conf" >"$dir/mosquitto.conf.new"
    # Only settings count: comments may name a placeholder (@WSPORT@ without a WebSockets port).
    ! awk '!/^[[:space:]]*#/ && /@[A-Z]+@/ { bad = 1 } END { exit !bad }' "$dir/mosquitto.conf.new" ||
        die "placeholder left unrendered in $dir/mosquitto.conf.new"
    mv -f "$dir/mosquitto.conf.new" "$dir/mosquitto.conf"
    cp -f "$SRC/broker-config/dev.acl" "$dir/acl"
    # Extra device users get what edge-a .. edge-e get: tenant demo's downstream tree.
    for u in "${EXTRA_USERS[@]}"; do
        printf '\nuser %s\ntopic read sync/demo/rows/#\ntopic read sync/demo/delta/#\ntopic read sync/demo/head\ntopic read sync/demo/head/#\ntopic read sync/demo/events/#\ntopic read sync/demo/dev/+/state\n' "$u" >>"$dir/acl"
    done

    # One random password per dev user, kept if it exists so running daemons keep working.
    local old_umask
    old_umask=$(umask)
    umask 077
    rm -f "$dir/passwd.new"
    for u in "${USERS[@]}"; do
        if [[ -s "$dir/$u.pass" ]]; then
            pass=$(head -n 1 "$dir/$u.pass")
        else
            pass=$(openssl rand -hex 16) || die "openssl rand failed"
            printf '%s\n' "$pass" >"$dir/$u.pass"
        fi
        chmod 0600 "$dir/$u.pass"
        if [[ -e "$dir/passwd.new" ]]; then
            mosquitto_passwd -b "$dir/passwd.new" "$u" "$pass" >/dev/null ||
                die "mosquitto_passwd failed for user $u"
        else
            mosquitto_passwd -c -b "$dir/passwd.new" "$u" "$pass" >/dev/null ||
                die "mosquitto_passwd failed for user $u"
        fi
    done
    chmod 0600 "$dir/passwd.new"
    mv -f "$dir/passwd.new" "$dir/passwd"
    umask "$old_umask"

    echo "devbroker: set up $dir (port $port${wsport:+, websockets $wsport serving $dir/www}, users: ${USERS[*]})"
}

cmd_start() {
    [[ $# -eq 1 ]] || usage
    local dir=$1 pid port wsport p
    check_dir "$dir"
    need mosquitto
    [[ -r "$dir/mosquitto.conf" ]] || die "$dir/mosquitto.conf not found: run '$0 setup $dir PORT' first"
    port=$(conf_port "$dir")
    [[ -n "$port" ]] || die "no listener line in $dir/mosquitto.conf"
    wsport=$(conf_ws_port "$dir")

    if [[ -s "$dir/mosquitto.pid" ]]; then
        pid=$(head -n 1 "$dir/mosquitto.pid")
        if is_our_broker "$pid"; then
            echo "devbroker: already running (pid $pid, port $port)"
            return 0
        fi
        rm -f "$dir/mosquitto.pid"
    fi
    for p in "$port" ${wsport:+"$wsport"}; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            die "port $p on 127.0.0.1 is already in use by another process"
        fi
    done

    # Mosquitto stays in the foreground (no -d), so $! is its own pid.
    mosquitto -c "$dir/mosquitto.conf" >>"$dir/mosquitto.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/mosquitto.pid"

    # Ready means: a TLS login with the dev CA succeeds and a subscription is granted (when
    # the viewer's password is there), else that the port accepts TCP connections.
    local ready=0 deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || break
        # The WebSockets listener opens before the TLS one accepts logins; checked anyway.
        if probe "$dir" "$port" &&
            { [[ -z "$wsport" ]] || (exec 3<>"/dev/tcp/127.0.0.1/$wsport") 2>/dev/null; }; then
            ready=1
            break
        fi
        sleep 0.1
    done
    if ((!ready)); then
        if kill -0 "$pid" 2>/dev/null; then
            echo "devbroker: error: mosquitto did not become ready on 127.0.0.1:$port within ${START_TIMEOUT}s" >&2
        else
            echo "devbroker: error: mosquitto exited during startup" >&2
        fi
        echo "---- last lines of $dir/mosquitto.log ----" >&2
        tail -n 20 "$dir/mosquitto.log" >&2 || true
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
        rm -f "$dir/mosquitto.pid"
        exit 1
    fi
    echo "devbroker: started mosquitto (pid $pid) on ssl://127.0.0.1:$port${wsport:+ and ws://127.0.0.1:$wsport}, log $dir/mosquitto.log"
}

cmd_stop() {
    [[ $# -eq 1 ]] || usage
    local dir=$1 pid i
    check_dir "$dir"
    if [[ ! -s "$dir/mosquitto.pid" ]]; then
        echo "devbroker: not running (no $dir/mosquitto.pid)"
        return 0
    fi
    pid=$(head -n 1 "$dir/mosquitto.pid")
    if ! is_our_broker "$pid"; then
        echo "devbroker: not running (stale pid file removed)"
        rm -f "$dir/mosquitto.pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    # Mosquitto writes its persistence file on SIGTERM: give it time before forcing.
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "devbroker: pid $pid ignored SIGTERM for 10 s, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$dir/mosquitto.pid"
    echo "devbroker: stopped mosquitto (pid $pid)"
}

cmd_status() {
    [[ $# -eq 1 ]] || usage
    local dir=$1 pid
    check_dir "$dir"
    pid=$(head -n 1 "$dir/mosquitto.pid" 2>/dev/null || true)
    if [[ -n "$pid" ]] && is_our_broker "$pid"; then
        echo "devbroker: running (pid $pid, port $(conf_port "$dir"))"
    else
        echo "devbroker: not running"
        return 1
    fi
}

[[ $# -ge 1 ]] || usage
cmd=$1
shift
case "$cmd" in
setup) cmd_setup "$@" ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
-h | --help | help) usage ;;
*) echo "devbroker: unknown command '$cmd'" >&2; usage ;;
esac
