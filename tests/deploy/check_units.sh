#!/usr/bin/env bash
# check_units.sh - the systemd units and sample configs of scripts/deploy/ are valid and hardened.
#
# Usage: check_units.sh SOURCE_DIR SYNCEDGE SYNCCLOUD SYNCCTL   (run by ctest: deploy_units)
#
# 1. Every key of the sample configs (scripts/deploy/etc) is one the program's --help lists, and
#    every flag the units pass exists.
# 2. The units, with ExecStart pointed at the built binaries (verify wants them to exist) and
#    the sample drop-in of syncedge@main, pass `systemd-analyze verify` without a single
#    message (it exits 0 on unknown keys, so its output must be empty too).
# 3. The hardening directives docs/deployment.md promises are there, in each service.
# 4. `systemd-analyze security --offline` rates each service at most MAX_EXPOSURE (the scores
#    are printed; docs/deployment.md quotes them).
# Exits 77 (skipped) without systemd-analyze, after the checks that do not need it.
set -euo pipefail

[[ $# -eq 4 ]] || { echo "usage: $0 SOURCE_DIR SYNCEDGE SYNCCLOUD SYNCCTL" >&2; exit 2; }
SRC=$1 EDGE=$2 CLOUD=$3 CTL=$4
DEPLOY=$SRC/scripts/deploy
MAX_EXPOSURE=2.0
fail=0

bad() {
    echo "FAIL: $*" >&2
    fail=1
}

T=$(mktemp -d "${TMPDIR:-/tmp}/deploy-units.XXXXXX")
trap 'rm -rf "$T"' EXIT

# Keys of a program: "  key VALUE ..." lines of --help (syncedge, synccloud), or its
# "--long-option" lines with '-' turned into '_' (syncctl's global options).
keys_of() {
    "$1" --help | awk '/^  [a-z][a-z_]+ / { print $1 }
        /^  (-[a-z], )?--[a-z-]+/ { for (i = 1; i <= NF; i++) if ($i ~ /^--[a-z-]+$/) {
            k = substr($i, 3); gsub("-", "_", k); print k } }' | sort -u
}

# check_conf FILE PROGRAM: every non-comment line starts with a key PROGRAM knows.
check_conf() {
    local file=$1 prog=$2 key
    keys_of "$prog" >"$T/keys"
    while read -r key _; do
        [[ -z "$key" || "$key" == \#* ]] && continue
        grep -qxF -- "$key" "$T/keys" || bad "$file: '$key' is not a key of $(basename "$prog")"
    done <"$file"
}

echo "== sample configs against --help"
check_conf "$DEPLOY/etc/syncedge/main.conf" "$EDGE"
check_conf "$DEPLOY/etc/synccloud/synccloud.conf" "$CLOUD"
check_conf "$DEPLOY/etc/syncedge/syncctl.conf" "$CTL"
check_conf "$DEPLOY/docker/synccloud.conf" "$CLOUD"
# Outputs are read whole before grep: `prog | grep -q` fails under pipefail when grep exits at
# the first match and the program, still writing, gets SIGPIPE (seen with the slower ASan build).
edge_keys=$(keys_of "$EDGE")
cloud_keys=$(keys_of "$CLOUD")
edge_help=$("$EDGE" --help)
grep -qx log_dest <<<"$edge_keys" || bad "syncedge has no log_dest (the units pass --log-dest)"
grep -qx log_dest <<<"$cloud_keys" || bad "synccloud has no log_dest (the units pass --log-dest)"
grep -q 'stderr or syslog' <<<"$edge_help" || bad "syncedge --help does not offer syslog"

echo "== hardening directives"
# Each line must appear exactly like this in every long-running service.
daemon_lines=(
    "Type=exec" "Restart=on-failure" "RestartPreventExitStatus=2" "NoNewPrivileges=yes"
    "ProtectSystem=strict" "ProtectHome=yes" "PrivateTmp=yes" "PrivateDevices=yes"
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" "MemoryDenyWriteExecute=yes"
    "SystemCallFilter=@system-service" "CapabilityBoundingSet="
)
for unit in syncedge@.service synccloud.service; do
    f=$DEPLOY/systemd/$unit
    for l in "${daemon_lines[@]}"; do
        grep -qxF -- "$l" "$f" || bad "$unit lacks '$l'"
    done
    for k in RestartSec ReadWritePaths User StateDirectory ExecStart; do
        grep -q "^$k=." "$f" || bad "$unit lacks $k="
    done
    grep -q '^ExecStart=.* --log-dest syslog$' "$f" || bad "$unit does not log to syslog"
    # DynamicUser would make the files syncedge creates belong to a throwaway uid.
    ! grep -q '^DynamicUser=' "$f" || bad "$unit uses DynamicUser"
done
for l in "Type=oneshot" "ProtectSystem=strict" "ReadWritePaths=/var/lib/syncedge-ctl" \
    "NoNewPrivileges=yes" "PrivateNetwork=yes" "SystemCallFilter=@system-service"; do
    grep -qxF -- "$l" "$DEPLOY/systemd/syncctl-crl.service" || bad "syncctl-crl.service lacks '$l'"
done
grep -q '^ExecStart=.*syncctl .*crl generate$' "$DEPLOY/systemd/syncctl-crl.service" ||
    bad "syncctl-crl.service does not run 'syncctl ... crl generate'"
grep -qxF "OnCalendar=daily" "$DEPLOY/systemd/syncctl-crl.timer" || bad "the CRL timer is not daily"
grep -qxF "Persistent=true" "$DEPLOY/systemd/syncctl-crl.timer" || bad "the CRL timer is not Persistent"
# Daily must stay well inside syncctl's default crl_days.
ctl_help=$("$CTL" --help)
grep -q 'default 30' <<<"$ctl_help" || bad "syncctl's crl_days default is no longer 30: check the timer"

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "SKIP: systemd-analyze not found: units not verified (apt-get install systemd)"
    ((fail == 0)) || exit 1
    exit 77
fi

echo "== sysusers.d"
if command -v systemd-sysusers >/dev/null 2>&1; then
    mkdir -p "$T/root/etc"
    systemd-sysusers --root="$T/root" "$DEPLOY/sysusers.d/edgesync.conf" >/dev/null 2>&1 ||
        bad "systemd-sysusers refuses sysusers.d/edgesync.conf"
    for u in syncedge synccloud; do
        grep -q "^$u:" "$T/root/etc/passwd" 2>/dev/null || bad "sysusers.d/edgesync.conf makes no user $u"
        grep -q "^User=$u\$" "$DEPLOY"/systemd/*.service || bad "no unit runs as $u"
    done
fi

echo "== systemd-analyze verify"
mkdir -p "$T/units"
for f in "$DEPLOY"/systemd/*; do
    sed -e "s|^ExecStart=/usr/local/bin/syncedge |ExecStart=$EDGE |" \
        -e "s|^ExecStart=/usr/local/bin/synccloud |ExecStart=$CLOUD |" \
        -e "s|^ExecStart=/usr/local/bin/syncctl |ExecStart=$CTL |" "$f" >"$T/units/$(basename "$f")"
    ! grep -q '^ExecStart=/usr/local' "$T/units/$(basename "$f")" ||
        bad "$(basename "$f"): ExecStart not rewritten to the built binary"
done
cp -r "$DEPLOY/etc/systemd/system/syncedge@main.service.d" "$T/units/"
# The units from this folder (the instance syncedge@main with its drop-in), the rest of the
# system's units after them (the trailing colon).
out=$(cd "$T/units" && SYSTEMD_UNIT_PATH="$T/units:" systemd-analyze verify \
    syncedge@main.service synccloud.service syncctl-crl.service syncctl-crl.timer 2>&1) ||
    bad "systemd-analyze verify failed"
if [[ -n "$out" ]]; then
    bad "systemd-analyze verify complained"
    echo "$out" >&2
fi

echo "== systemd-analyze security (exposure, 0 = best, 10 = worst; at most $MAX_EXPOSURE)"
for unit in syncedge@main.service synccloud.service syncctl-crl.service; do
    src=$T/units/$unit
    [[ -e "$src" ]] || cp "$T/units/syncedge@.service" "$src"
    res=$(cd "$T/units" && systemd-analyze security --offline=true --no-pager "./$unit" 2>&1) || true
    score=$(echo "$res" | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
    if [[ -z "$score" ]]; then
        bad "$unit: no exposure score"
        echo "$res" >&2
        continue
    fi
    echo "$unit: exposure $score"
    awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }' ||
        bad "$unit: exposure $score above $MAX_EXPOSURE"
done

((fail == 0)) || exit 1
echo "deploy units: OK"
