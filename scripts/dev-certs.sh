#!/usr/bin/env bash
# dev-certs.sh - make a throwaway development CA and a localhost server certificate.
#
# Usage: scripts/dev-certs.sh OUTDIR
#
# Writes OUTDIR/ca.crt, ca.key, server.crt, server.key: an EC P-256 CA and a server
# certificate for CN=localhost with subjectAltName DNS:localhost, IP:127.0.0.1, both valid
# for 30 days. Keys are mode 0600. If the four files already exist, match each other and stay
# valid for at least one more day, nothing is done. These are for a broker on 127.0.0.1
# during development and tests only: never use them for a real deployment.
set -euo pipefail

DAYS=30

die() {
    echo "dev-certs: error: $*" >&2
    exit 1
}

[[ $# -eq 1 && -n "$1" ]] || die "usage: $0 OUTDIR"
OUT=$1
command -v openssl >/dev/null 2>&1 || die "openssl not found (apt-get install openssl)"
mkdir -p "$OUT" || die "cannot create directory '$OUT'"
[[ -w "$OUT" ]] || die "directory '$OUT' is not writable"

# Prints nothing and succeeds when the existing files form a usable, unexpired set.
existing_ok() {
    local f
    for f in ca.crt ca.key server.crt server.key; do
        [[ -s "$OUT/$f" ]] || return 1
    done
    # Both certificates must still be valid tomorrow, so a test started now cannot see them expire.
    openssl x509 -in "$OUT/ca.crt" -noout -checkend 86400 >/dev/null 2>&1 || return 1
    openssl x509 -in "$OUT/server.crt" -noout -checkend 86400 >/dev/null 2>&1 || return 1
    # The server certificate must chain to this CA and be usable by a TLS server.
    openssl verify -CAfile "$OUT/ca.crt" -purpose sslserver "$OUT/server.crt" >/dev/null 2>&1 ||
        return 1
    # Each key must be the one its certificate was issued for.
    local a b
    a=$(openssl x509 -in "$OUT/server.crt" -noout -pubkey 2>/dev/null) || return 1
    b=$(openssl pkey -in "$OUT/server.key" -pubout 2>/dev/null) || return 1
    [[ -n "$a" && "$a" == "$b" ]] || return 1
    a=$(openssl x509 -in "$OUT/ca.crt" -noout -pubkey 2>/dev/null) || return 1
    b=$(openssl pkey -in "$OUT/ca.key" -pubout 2>/dev/null) || return 1
    [[ -n "$a" && "$a" == "$b" ]] || return 1
    # Clients verify 127.0.0.1 by IP, so the IP SAN must be there.
    openssl x509 -in "$OUT/server.crt" -noout -checkip 127.0.0.1 2>/dev/null |
        grep -q 'does match' || return 1
    return 0
}

if existing_ok; then
    # A good set with loose key permissions only needs its modes fixed, not new keys.
    chmod 0600 "$OUT/ca.key" "$OUT/server.key" || die "cannot chmod the keys in '$OUT'"
    echo "dev-certs: valid certificates already in $OUT, nothing to do"
    exit 0
fi

# Build everything in a scratch folder inside OUT and move it into place at the end, so a
# failure halfway never leaves a mismatched set behind.
WORK=$(mktemp -d "$OUT/.dev-certs.XXXXXX") || die "cannot create a temporary folder in '$OUT'"
trap 'rm -rf "$WORK"' EXIT
umask 077

# Our own minimal openssl config: the system one may add extensions we do not want.
cat >"$WORK/ca.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = edgesync development CA (throwaway)
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF
cat >"$WORK/server.ext" <<'CNF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF

run() {
    local log="$WORK/openssl.log"
    "$@" >"$log" 2>&1 || { cat "$log" >&2; die "command failed: $*"; }
}

run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/ca.key"
run openssl req -new -x509 -config "$WORK/ca.cnf" -key "$WORK/ca.key" -sha256 \
    -days "$DAYS" -out "$WORK/ca.crt"
run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/server.key"
run openssl req -new -key "$WORK/server.key" -subj "/CN=localhost" -out "$WORK/server.csr"
run openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" \
    -CAcreateserial -CAserial "$WORK/ca.srl" -sha256 -days "$DAYS" \
    -extfile "$WORK/server.ext" -out "$WORK/server.crt"
run openssl verify -CAfile "$WORK/ca.crt" -purpose sslserver "$WORK/server.crt"

chmod 0600 "$WORK/ca.key" "$WORK/server.key"
chmod 0644 "$WORK/ca.crt" "$WORK/server.crt"
for f in ca.key ca.crt server.key server.crt; do
    mv -f "$WORK/$f" "$OUT/$f" || die "cannot write '$OUT/$f'"
done
existing_ok || die "the certificates written to '$OUT' do not verify (bug in this script?)"
echo "dev-certs: wrote ca.crt ca.key server.crt server.key to $OUT (valid $DAYS days)"
