#!/usr/bin/env bash
# demo.sh - see edge-to-cloud sync work in one command.
#
# Usage: scripts/demo.sh [--keep-running]
#        scripts/demo.sh --stop          stop what a --keep-running demo left running
#
# Installs missing packages, builds build-release/ (Release), sets up a development broker in a fresh
# run/demo/ (TLS on 127.0.0.1, dev users and passwords; a WebSockets listener on 127.0.0.1 that
# serves the live dashboard, whose address it prints), starts mosquitto, synccloud and two
# syncedge: edge-a on run/demo/a.db (the "application" database) and edge-b on run/demo/b.db
# (a replica that starts empty). Shows the events the cloud publishes, writes a few rows into
# a.db with the sqlite3 CLI, waits until a.db, the cloud and b.db agree, and prints them.
# Everything it started is stopped at the end, unless --keep-running is given.
# Exits 0 when the three copies are in sync.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN=$ROOT/run/demo
SCHEMA=$ROOT/docs/examples/schema.conf
CONVERGE_TIMEOUT=20
START_TIMEOUT=20

KEEP=0
STOP_ONLY=0
for arg in "$@"; do
    case "$arg" in
    --keep-running) KEEP=1 ;;
    --stop) STOP_ONLY=1 ;;
    -h | --help)
        sed -n '3,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "demo: unknown option '$arg' (try --help)" >&2
        exit 2
        ;;
    esac
done

say() { printf '\n== %s\n' "$*"; }
die() {
    echo "demo: error: $*" >&2
    exit 1
}

# Stops the process in pid file $1 if it is still the program named $2 (never a recycled pid).
stop_pidfile() {
    local file=$1 name=$2 pid i
    [[ -s "$file" ]] || return 0
    pid=$(head -n 1 "$file")
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name"* ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "demo: $name (pid $pid) ignored SIGTERM, killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "demo: stopped $name (pid $pid)"
    fi
    rm -f "$file"
}

stop_all() {
    stop_pidfile "$RUN/events.pid" mosquitto_sub
    stop_pidfile "$RUN/edge-a.pid" syncedge
    stop_pidfile "$RUN/edge-b.pid" syncedge
    stop_pidfile "$RUN/synccloud.pid" synccloud
    if [[ -f "$RUN/mosquitto.conf" ]]; then
        bash "$ROOT/scripts/devbroker.sh" stop "$RUN" | grep -v 'not running' || true
    fi
}

if ((STOP_ONLY)); then
    stop_all
    exit 0
fi

cd "$ROOT"

say "Installing missing packages"
bash scripts/install-deps.sh

say "Building (Release, build-release/)"
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-release -j"$(nproc 2>/dev/null || echo 2)" >/dev/null ||
    die "build failed: run 'cmake --build build-release' to see why"
# Find the binaries wherever the build tree puts them.
find_bin() {
    find "$ROOT/build-release" -type f -name "$1" -perm -u+x -not -path '*/CMakeFiles/*' | head -n 1
}
EDGE=$(find_bin syncedge)
CLOUD=$(find_bin synccloud)
[[ -n "$EDGE" && -n "$CLOUD" ]] || die "syncedge or synccloud was not built (looked in build-release/)"
echo "syncedge:  $EDGE"
echo "synccloud: $CLOUD"

# The live dashboard (docs/dashboard.md): mqtt.js from npm, as package-lock.json pins it. The
# demo goes on without the page when npm cannot install it.
say "Installing the live dashboard's npm packages (cloud/dashboard)"
DASHBOARD=1
(cd cloud/dashboard && npm ci --no-audit --no-fund --loglevel=error </dev/null) || {
    echo "demo: warning: 'npm ci' failed in cloud/dashboard: the demo runs without the dashboard" >&2
    DASHBOARD=0
}

say "Setting up a development broker in run/demo/"
# A demo left running by --keep-running is stopped first: run/demo is made fresh every time.
stop_all
rm -rf "$RUN"
mkdir -p "$RUN"
PORT=${DEMO_PORT:-18883}
while (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
    PORT=$((PORT + 1))
    ((PORT < 18983)) || die "no free port between 18883 and 18982 on 127.0.0.1"
done
WSPORT=
if ((DASHBOARD)); then
    # The dashboard's port: the WebSockets listener serves the page and the MQTT connection.
    WSPORT=${DEMO_WS_PORT:-19001}
    while [[ "$WSPORT" == "$PORT" ]] || (exec 3<>"/dev/tcp/127.0.0.1/$WSPORT") 2>/dev/null; do
        WSPORT=$((WSPORT + 1))
        ((WSPORT < 19101)) || die "no free port between 19001 and 19100 on 127.0.0.1"
    done
fi
bash scripts/devbroker.sh setup "$RUN" "$PORT" ${WSPORT:+"$WSPORT"}
if ((DASHBOARD)); then
    node cloud/dashboard/build.js "$RUN/www" >/dev/null || die "the dashboard's build failed"
fi

# From here on, whatever fails, the trap stops what was started (unless --keep-running
# succeeded, see the end).
CLEAN_ON_EXIT=1
# shellcheck disable=SC2317 # called by the EXIT trap
on_exit() {
    local rc=$?
    if ((CLEAN_ON_EXIT)); then
        echo
        stop_all
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

bash scripts/devbroker.sh start "$RUN"
BROKER="ssl://127.0.0.1:$PORT"
pass() { head -n 1 "$RUN/$1.pass"; }
DASHBOARD_URL=
if ((DASHBOARD)); then
    # The page reads its login from the address's fragment, which the browser never sends.
    DASHBOARD_URL="http://127.0.0.1:$WSPORT/#tenant=demo&user=viewer&pass=$(pass viewer)"
    echo
    echo "Dashboard: $DASHBOARD_URL"
fi

say "Edge A's application creates its database (run/demo/a.db)"
APP_SQL="CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, price REAL, note TEXT, data BLOB);
CREATE TABLE notes(k TEXT PRIMARY KEY, body TEXT NOT NULL, n INTEGER);"
while IFS= read -r line; do echo "  sqlite3 a.db> $line"; done <<<"$APP_SQL"
sqlite3 -bail "$RUN/a.db" "PRAGMA journal_mode=WAL;" "$APP_SQL" >/dev/null

say "Starting synccloud, syncedge edge-a and syncedge edge-b (replica)"
common=(--schema "$SCHEMA" --tenant demo --broker "$BROKER" --cafile "$RUN/ca.crt"
    --log-level info --log-dest stderr)
CLOUD_ARGS=(--database "$RUN/cloud.db" --username synccloud
    --password-file "$RUN/synccloud.pass" "${common[@]}")
A_ARGS=(--database "$RUN/a.db" --device edge-a --password-file "$RUN/edge-a.pass" "${common[@]}")
B_ARGS=(--database "$RUN/b.db" --device edge-b --password-file "$RUN/edge-b.pass"
    --replica true "${common[@]}")
"$CLOUD" "${CLOUD_ARGS[@]}" >>"$RUN/synccloud.log" 2>&1 </dev/null &
echo $! >"$RUN/synccloud.pid"
"$EDGE" "${A_ARGS[@]}" >>"$RUN/edge-a.log" 2>&1 </dev/null &
echo $! >"$RUN/edge-a.pid"
"$EDGE" "${B_ARGS[@]}" >>"$RUN/edge-b.log" 2>&1 </dev/null &
echo $! >"$RUN/edge-b.pid"
echo "synccloud pid $(cat "$RUN/synccloud.pid"), edge-a pid $(cat "$RUN/edge-a.pid"), edge-b pid $(cat "$RUN/edge-b.pid")"

# Prints the tails of every log, for a failure.
show_logs() {
    local f
    for f in mosquitto synccloud edge-a edge-b; do
        echo "---- last lines of run/demo/$f.log ----" >&2
        tail -n 15 "$RUN/$f.log" >&2 2>/dev/null || true
    done
}

alive() {
    local n
    for n in synccloud edge-a edge-b; do
        kill -0 "$(cat "$RUN/$n.pid")" 2>/dev/null || {
            echo "demo: $n exited" >&2
            return 1
        }
    done
}

# Ready: all three logged in to the broker, edge-a installed its outbox, edge-b made its tables.
ready() {
    grep -qF "u'synccloud'" "$RUN/mosquitto.log" &&
        grep -qF "u'edge-a'" "$RUN/mosquitto.log" &&
        grep -qF "u'edge-b'" "$RUN/mosquitto.log" &&
        [[ $(sqlite3 -cmd '.timeout 5000' "$RUN/a.db" \
            "SELECT count(*) FROM sqlite_master WHERE name='_sync_outbox'" 2>/dev/null) == 1 ]] &&
        [[ -f "$RUN/b.db" ]] &&
        [[ $(sqlite3 -cmd '.timeout 5000' "$RUN/b.db" \
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN ('items','notes')" \
            2>/dev/null) == 2 ]]
}
deadline=$((SECONDS + START_TIMEOUT))
until ready; do
    alive || { show_logs; die "a daemon stopped during startup"; }
    ((SECONDS < deadline)) || { show_logs; die "the daemons were not ready after ${START_TIMEOUT}s"; }
    sleep 0.2
done
echo "all three are connected"

say "Watching sync/demo/events/# as user viewer"
mosquitto_sub -h 127.0.0.1 -p "$PORT" --cafile "$RUN/ca.crt" -u viewer -P "$(pass viewer)" \
    -i demo-viewer -t 'sync/demo/events/#' -F '  [event] %t %p' </dev/null &
echo $! >"$RUN/events.pid"
sleep 0.3

say "The application writes into a.db (syncedge captures it, no app change)"
STATEMENTS=(
    "INSERT INTO items(id, name, qty, price) VALUES (1, 'bolt M6', 100, 0.25);"
    "INSERT INTO items(id, name, qty, price, note) VALUES (2, 'nut M6', 250, 0.10, 'zinc');"
    "INSERT INTO items(id, name, qty, price) VALUES (3, 'washer', 500, 0.05);"
    "INSERT INTO notes(k, body, n) VALUES ('welcome', 'Grüße from edge-a, it''s working', 1);"
    "UPDATE items SET qty = qty - 20, note = 'sold 20' WHERE id = 1;"
    "DELETE FROM items WHERE id = 3;"
)
for sql in "${STATEMENTS[@]}"; do
    echo "  sqlite3 a.db> $sql"
    sqlite3 -bail -cmd '.timeout 5000' "$RUN/a.db" "$sql"
done

say "Waiting until a.db, the cloud and b.db agree (up to ${CONVERGE_TIMEOUT}s)"
sum_a="" sum_c="" sum_b=""
checksums() {
    sum_a=$("$EDGE" "${A_ARGS[@]}" --checksum 2>>"$RUN/checksum.log") || sum_a=""
    sum_c=$("$CLOUD" "${CLOUD_ARGS[@]}" --checksum 2>>"$RUN/checksum.log") || sum_c=""
    sum_b=$("$EDGE" "${B_ARGS[@]}" --checksum 2>>"$RUN/checksum.log") || sum_b=""
}
in_sync=0
t0=$SECONDS
deadline=$((SECONDS + CONVERGE_TIMEOUT))
while ((SECONDS < deadline)); do
    alive || break
    outbox=$(sqlite3 -cmd '.timeout 5000' "$RUN/a.db" "SELECT count(*) FROM _sync_outbox" 2>/dev/null || echo "?")
    if [[ "$outbox" == 0 ]]; then
        checksums
        if [[ -n "$sum_a" && "$sum_a" == "$sum_c" && "$sum_a" == "$sum_b" ]]; then
            in_sync=1
            break
        fi
    fi
    sleep 0.5
done
sleep 0.3 # let the last events print before the tables

# Prints one table of a database with headers, or why it cannot.
show_table() {
    sqlite3 -cmd '.timeout 5000' -header -column "$1" "$2" 2>&1 || true
}
side_by_side() {
    local left=$1 right=$2
    # Pads by characters, not bytes: UTF-8 continuation bytes take no column.
    LC_ALL=C awk -v w=58 'NR == FNR { l[FNR] = $0; n = FNR; next }
        { r[FNR] = $0; if (FNR > n) n = FNR }
        END {
            for (i = 1; i <= n; i++) {
                t = l[i]; c = gsub(/[\200-\277]/, "", t)
                printf "%-*s | %s\n", w + c, l[i], r[i]
            }
        }' \
        <(printf '%s\n' "$left") <(printf '%s\n' "$right")
}
say "Rows: cloud (run/demo/cloud.db) | edge-b replica (run/demo/b.db)"
# The cloud keeps deleted rows as tombstones (_deleted = 1) and a version per row; an older
# store without those columns is shown as it is.
cloud_table() {
    sqlite3 -cmd '.timeout 5000' -header -column "$RUN/cloud.db" \
        "SELECT $1, _version AS version FROM $2 WHERE _deleted = 0 ORDER BY $3" 2>/dev/null ||
        show_table "$RUN/cloud.db" "SELECT $1 FROM $2 ORDER BY $3"
}
side_by_side "$(printf 'CLOUD items\n'; cloud_table "id, name, qty, price, note" items id)" \
    "$(printf 'EDGE-B items\n'; show_table "$RUN/b.db" "SELECT id, name, qty, price, note FROM items ORDER BY id")"
echo
side_by_side "$(printf 'CLOUD notes\n'; cloud_table "k, body, n" notes k)" \
    "$(printf 'EDGE-B notes\n'; show_table "$RUN/b.db" "SELECT k, body, n FROM notes ORDER BY k")"

say "Checksums (TABLE ROWS SHA256)"
[[ -n "$sum_a" ]] || checksums
printf 'edge-a (a.db):\n%s\ncloud (cloud.db):\n%s\nedge-b (b.db):\n%s\n' \
    "${sum_a:-(failed)}" "${sum_c:-(failed)}" "${sum_b:-(failed)}"

if ((!in_sync)); then
    show_logs
    echo
    echo "demo: NOT in sync after ${CONVERGE_TIMEOUT}s (edge-a outbox: ${outbox:-?} rows)" >&2
    echo "demo: logs and databases are in $RUN" >&2
    exit 1
fi
echo
echo "demo: in sync: a.db, the cloud and b.db hold the same rows (after about $((SECONDS - t0))s)"

if ((KEEP)); then
    stop_pidfile "$RUN/events.pid" mosquitto_sub
    CLEAN_ON_EXIT=0
    cat <<EOT

Still running (--keep-running):
  broker     ssl://127.0.0.1:$PORT   pid $(cat "$RUN/mosquitto.pid")   log run/demo/mosquitto.log
  dashboard  ${DASHBOARD_URL:-(not built: see the warning above)}
  synccloud  pid $(cat "$RUN/synccloud.pid")   db run/demo/cloud.db   log run/demo/synccloud.log
  edge-a     pid $(cat "$RUN/edge-a.pid")   db run/demo/a.db       log run/demo/edge-a.log
  edge-b     pid $(cat "$RUN/edge-b.pid")   db run/demo/b.db       log run/demo/edge-b.log
Write more:     sqlite3 run/demo/a.db "INSERT INTO notes(k, body) VALUES ('hi', 'there')"
Watch events:   mosquitto_sub -h 127.0.0.1 -p $PORT --cafile run/demo/ca.crt -u viewer -P \$(cat run/demo/viewer.pass) -v -t 'sync/demo/#'
Stop them all:  bash scripts/demo.sh --stop
EOT
fi
exit 0
