#!/usr/bin/env bash
# provision.sh - the init step of docker-compose.yml: everything the broker and synccloud need
# before they start, made once and kept in volumes.
#
# Usage: provision.sh          (in the image: edgesync-provision; no arguments)
#
# Idempotent: what exists is kept (a second run, or `docker compose up` after a restart, changes
# nothing but the CRL, which is re-signed every time). Makes:
#   CTL_DIR   syncctl's folder: the device CA (ca.key, ca.crt), registry.db, crl.pem, acl, passwd;
#             the broker's own CA (broker-ca.key, broker-ca.crt) and the administrator's
#             certificate (admin.crt, admin.key) for `syncctl conflicts ...` and the healthcheck
#   CERT_DIR  the broker's server certificate (server.crt, server.key, readable by BROKER_USER)
#             for the names mosquitto, localhost, 127.0.0.1 and $BROKER_HOST
#   SECRETS   broker-ca.crt (every client's cafile), synccloud.crt + synccloud.key (the cloud's
#             client certificate, CN=synccloud, from the device CA, owned by CLOUD_USER),
#             pg.pass (PostgreSQL's password for its first start, readable by PG_UID) and
#             synccloud.pgpass (the same for libpq, owned by CLOUD_USER, mode 0600)
# Environment (defaults are the container's): TENANT (acme), BROKER_HOST (localhost), CTL_DIR
# (/var/lib/syncedge-ctl), CERT_DIR (/etc/mosquitto/certs), SECRETS (/secrets), BROKER_USER
# (mosquitto), CLOUD_USER (synccloud), PG_UID (999, the postgres image's user), PG_HOST
# (postgres), SYNCCTL (syncctl), CRL_DAYS (30), PROVISION_NO_CHOWN (1: leave owners alone; for
# tests outside the container).
set -euo pipefail

TENANT=${TENANT:-acme}
BROKER_HOST=${BROKER_HOST:-localhost}
CTL_DIR=${CTL_DIR:-/var/lib/syncedge-ctl}
CERT_DIR=${CERT_DIR:-/etc/mosquitto/certs}
SECRETS=${SECRETS:-/secrets}
BROKER_USER=${BROKER_USER:-mosquitto}
CLOUD_USER=${CLOUD_USER:-synccloud}
PG_UID=${PG_UID:-999}
PG_HOST=${PG_HOST:-postgres}
SYNCCTL=${SYNCCTL:-syncctl}
CRL_DAYS=${CRL_DAYS:-30}
NO_CHOWN=${PROVISION_NO_CHOWN:-0}

say() { echo "provision: $*"; }
die() {
    echo "provision: error: $*" >&2
    exit 1
}

[[ "$TENANT" =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || die "TENANT must be 1-64 of A-Z a-z 0-9 _ . -"
[[ "$BROKER_HOST" =~ ^[A-Za-z0-9.:-]+$ ]] || die "BROKER_HOST must be a host name or address"
command -v openssl >/dev/null || die "openssl not found"
command -v "$SYNCCTL" >/dev/null || die "syncctl not found ($SYNCCTL)"
umask 077
mkdir -p "$CTL_DIR" "$CERT_DIR" "$SECRETS"
chmod 0755 "$CERT_DIR" "$SECRETS"

# own FILE USER: gives FILE to USER (unless PROVISION_NO_CHOWN=1).
own() {
    [[ "$NO_CHOWN" == 1 ]] || chown "$2" "$1"
}

ctl() {
    "$SYNCCTL" --dir "$CTL_DIR" --crl-days "$CRL_DAYS" "$@"
}

# 1. syncctl's device CA, registry and CRL.
if [[ ! -e "$CTL_DIR/ca.key" ]]; then
    ctl ca init --cn "$TENANT device CA" >/dev/null
    say "created the device CA in $CTL_DIR"
fi

# 2. The broker's own CA and server certificate (another CA than the devices': a device
#    certificate must never pass as a server).
if [[ ! -e "$CTL_DIR/broker-ca.key" ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 3650 \
        -subj "/CN=$TENANT broker CA" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$CTL_DIR/broker-ca.key" -out "$CTL_DIR/broker-ca.crt" 2>/dev/null ||
        die "cannot create the broker CA"
    say "created the broker CA"
fi
if [[ ! -e "$CERT_DIR/server.crt" ]]; then
    san="DNS:mosquitto,DNS:localhost,IP:127.0.0.1"
    if [[ "$BROKER_HOST" == localhost || "$BROKER_HOST" == 127.0.0.1 ]]; then
        :
    elif [[ "$BROKER_HOST" =~ ^[0-9.]+$ || "$BROKER_HOST" == *:* ]]; then
        san="$san,IP:$BROKER_HOST"
    else
        san="$san,DNS:$BROKER_HOST"
    fi
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
        "$san" >"$CTL_DIR/server.ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=$BROKER_HOST" -keyout "$CERT_DIR/server.key" -out "$CTL_DIR/server.csr" \
        2>/dev/null || die "cannot create the server key"
    openssl x509 -req -in "$CTL_DIR/server.csr" -CA "$CTL_DIR/broker-ca.crt" \
        -CAkey "$CTL_DIR/broker-ca.key" -set_serial "0x$(openssl rand -hex 16)" -sha256 \
        -days 825 -extfile "$CTL_DIR/server.ext" -out "$CERT_DIR/server.crt" 2>/dev/null ||
        die "cannot sign the server certificate"
    rm -f "$CTL_DIR/server.csr" "$CTL_DIR/server.ext"
    chmod 0644 "$CERT_DIR/server.crt"
    chmod 0600 "$CERT_DIR/server.key"
    own "$CERT_DIR/server.key" "$BROKER_USER"
    say "issued the broker's server certificate for $san"
fi
install -m 0644 "$CTL_DIR/broker-ca.crt" "$SECRETS/broker-ca.crt"

# client NAME KEYFILE CRTFILE: a client certificate CN=NAME from the device CA, as
# docs/broker.md ("How synccloud and syncctl connect") does it by hand. syncctl does not issue
# these: the cloud user and the administrator are no devices.
client() {
    local name=$1 key=$2 crt=$3
    [[ -e "$crt" ]] && return 0
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' \
        >"$CTL_DIR/client.ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
        -keyout "$key" -out "$CTL_DIR/$name.csr" 2>/dev/null || die "cannot create $name's key"
    openssl x509 -req -in "$CTL_DIR/$name.csr" -CA "$CTL_DIR/ca.crt" -CAkey "$CTL_DIR/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -sha256 -days 365 -extfile "$CTL_DIR/client.ext" \
        -out "$crt" 2>/dev/null || die "cannot sign $name's certificate"
    rm -f "$CTL_DIR/$name.csr" "$CTL_DIR/client.ext"
    chmod 0644 "$crt"
    say "issued the client certificate CN=$name (365 days: renew it, see docs/deployment.md)"
}
client synccloud "$SECRETS/synccloud.key" "$SECRETS/synccloud.crt"
own "$SECRETS/synccloud.key" "$CLOUD_USER"
client admin "$CTL_DIR/admin.key" "$CTL_DIR/admin.crt"

# 3. The broker's ACL from the registry, and a fresh CRL (nextUpdate CRL_DAYS from now).
ctl acl generate >/dev/null
ctl crl generate >/dev/null
# synccloud reads the registry (its `registry` check): group-readable for its user.
if [[ "$NO_CHOWN" != 1 ]]; then
    chgrp "$CLOUD_USER" "$CTL_DIR/registry.db"
    chmod 0640 "$CTL_DIR/registry.db"
fi

# 4. PostgreSQL's password: pg.pass for the server's first start, a pgpass line for libpq.
if [[ ! -e "$SECRETS/pg.pass" ]]; then
    openssl rand -hex 24 >"$SECRETS/pg.pass"
    say "created the PostgreSQL password"
fi
chmod 0400 "$SECRETS/pg.pass"
own "$SECRETS/pg.pass" "$PG_UID"
printf '%s:5432:sync:synccloud:%s\n' "$PG_HOST" "$(head -n 1 "$SECRETS/pg.pass")" \
    >"$SECRETS/synccloud.pgpass"
chmod 0600 "$SECRETS/synccloud.pgpass"
own "$SECRETS/synccloud.pgpass" "$CLOUD_USER"

say "ready: tenant $TENANT, broker ssl://$BROKER_HOST:8883 (clients trust $SECRETS/broker-ca.crt)"
