/* test_syncctl.c - device identities with syncctl, checked against mbedTLS, the openssl CLI and
 * a real Mosquitto 2.
 *
 * The test runs the built syncctl binary only (no linking against its code): it makes a CA,
 * adds devices with and without passwords, and checks what it wrote: exact file modes whatever
 * the umask, certificates parsed with mbedTLS (subject, issuer, extended key usage, key type,
 * serial, validity, chain), the registry's serial and fingerprint, the Mosquitto password
 * hash recomputed with PBKDF2, the ACL file. Then a Mosquitto with a password listener and a
 * client-certificate listener (crlfile) serves those files: the password and the certificate
 * let the device in, a wrong password does not, the ACL keeps a device out of another
 * tenant; after `device suspend` (which sends the broker SIGHUP) the same credentials are
 * refused and a connected password client is dropped; after `resume` they work again; a
 * removed device stays revoked. Invalid names and duplicate ids are refused with a clear
 * message and a non-zero status, and no password or private key ever appears in syncctl's
 * output.
 *
 * Needs mosquitto, mosquitto_sub, mosquitto_pub and mosquitto_passwd; the openssl CLI checks are
 * skipped (with a note) when openssl is missing. TH_KEEP=1 keeps the folder.
 */
#include "harness.h"

#include <pwd.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crl.h>
#include <mbedtls/x509_crt.h>

#include "cloud/ctl/tls_compat.h"

#ifndef SYNCCTL_BIN
#error "SYNCCTL_BIN (path of the syncctl binary) must be defined by the build"
#endif
#ifndef SYNC_SOURCE_DIR
#error "SYNC_SOURCE_DIR must be defined by the build"
#endif

#define RELOAD_WAIT_MS 10000 /* how long a SIGHUP may take to show at the broker */

/* What the whole test shares. */
static struct {
    const char *dir;  /* the temp folder */
    const char *pki;  /* syncctl's --dir */
    const char *srv;  /* the broker's TLS server certificate and its CA */
    const char *clog; /* where the mosquitto clients write */
    int port_pw;      /* TLS listener, password logins */
    int port_cert;    /* TLS listener, client certificates (require_certificate, crlfile) */
    pid_t broker;     /* mosquitto */
    int have_openssl; /* the openssl CLI is there */
    const char *mask; /* umask syncctl runs with */
    char *transcript; /* everything syncctl printed, searched for secrets at the end */
    size_t transcript_len;
} t;

/* ---- running syncctl -------------------------------------------------------------------- */

/* Runs `syncctl ARGS` (args: a shell fragment with quoted values) under t.mask with stderr
 * merged into stdout. Returns the exit status; *out (if given) gets the output, owned by the
 * caller. The output is echoed indented and added to the transcript. */
static int ctl(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ctl(char **out, const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    TH_CHECK(n > 0 && (size_t)n < sizeof args, "syncctl arguments too long");
    char *o = NULL;
    int st = th_capture(&o, "umask %s; %s %s 2>&1", t.mask, th_shq(SYNCCTL_BIN), args);
    TH_CHECK(o != NULL, "cannot run syncctl %s", args);
    printf("$ syncctl %s   -> %d\n", args, st);
    for (const char *p = o; *p;) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        printf("    %.*s\n", len, p);
        p += len + (nl != NULL);
    }
    size_t ol = strlen(o);
    char *nt = realloc(t.transcript, t.transcript_len + ol + 1);
    TH_CHECK(nt != NULL, "out of memory");
    memcpy(nt + t.transcript_len, o, ol + 1);
    t.transcript = nt;
    t.transcript_len += ol;
    if (out)
        *out = o;
    else
        free(o);
    return st;
}

/* syncctl must succeed. */
#define CTL_OK(...)                                                                                \
    do {                                                                                           \
        int st_ = ctl(NULL, __VA_ARGS__);                                                          \
        TH_CHECK(st_ == 0, "syncctl exited with %d", st_);                                         \
    } while (0)

/* syncctl must fail with a non-zero status and say `why`. */
static void ctl_refused(const char *why, const char *args)
{
    char *o;
    int st = ctl(&o, "%s", args);
    TH_CHECK(st != 0, "syncctl %s succeeded; it must be refused", args);
    TH_CHECK(strstr(o, why) != NULL, "syncctl %s: the message does not say '%s'", args, why);
    free(o);
}

/* ---- files ------------------------------------------------------------------------------ */

static const char *pki(const char *name)
{
    return th_fmt("%s/%s", t.pki, name);
}

static void check_mode(const char *path, mode_t want)
{
    struct stat st;
    TH_CHECK(stat(path, &st) == 0, "%s does not exist", path);
    TH_CHECK((st.st_mode & 07777) == want, "%s has mode %04o, not %04o", path,
             (unsigned)(st.st_mode & 07777), (unsigned)want);
}

/* The whole file (caller frees), or NULL if it cannot be read. */
static char *slurp(const char *path)
{
    char *o = NULL;
    if (th_capture(&o, "cat %s 2>/dev/null", th_shq(path)) != 0) {
        free(o);
        return NULL;
    }
    return o;
}

/* The line of the password file for user, without newline, in buf; 0 if found. */
static int passwd_line(const char *user, char *buf, size_t n)
{
    char *all = slurp(pki("passwd"));
    int found = -1;
    size_t ul = strlen(user);
    for (char *p = all; p && *p && found != 0;) {
        char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len > ul && strncmp(p, user, ul) == 0 && p[ul] == ':') {
            snprintf(buf, n, "%.*s", (int)len, p);
            found = 0;
        }
        p += len + (nl != NULL);
    }
    free(all);
    return found;
}

/* A text column of the registry's row for device, in buf. */
static void reg_text(const char *device, const char *col, char *buf, size_t n)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    buf[0] = '\0';
    TH_CHECK(sqlite3_open_v2(pki("registry.db"), &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK,
             "cannot open the registry");
    char *sql = sqlite3_mprintf("SELECT %w FROM devices WHERE device = %Q", col, device);
    int ok = sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK;
    if (ok && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(buf, n, "%s", (const char *)sqlite3_column_text(st, 0));
    if (ok)
        sqlite3_finalize(st);
    sqlite3_free(sql);
    sqlite3_close(db);
    TH_CHECK(ok, "bad registry query for column %s", col);
}

/* ---- certificates ----------------------------------------------------------------------- */

static void load_crt(mbedtls_x509_crt *c, const char *path)
{
    mbedtls_x509_crt_init(c);
    TH_CHECK(mbedtls_x509_crt_parse_file(c, path) == 0, "%s is not a certificate", path);
}

static void hex(const unsigned char *b, size_t n, char *out, int upper)
{
    const char *d = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static time_t x509_time(const mbedtls_x509_time *x)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = x->year - 1900;
    tm.tm_mon = x->mon - 1;
    tm.tm_mday = x->day;
    tm.tm_hour = x->hour;
    tm.tm_min = x->min;
    tm.tm_sec = x->sec;
    return timegm(&tm);
}

/* Checks the CA certificate: self-signed, CA, keyCertSign|cRLSign, ECDSA P-256 + SHA-256. */
static void check_ca(void)
{
    mbedtls_x509_crt ca;
    char info[4096], dn[256];
    uint32_t flags = 0;
    load_crt(&ca, pki("ca.crt"));
    TH_CHECK(mbedtls_x509_crt_verify(&ca, &ca, NULL, NULL, &flags, NULL, NULL) == 0,
             "the CA does not verify as its own trust anchor (flags 0x%x)", (unsigned)flags);
    TH_CHECK(mbedtls_x509_crt_info(info, sizeof info, "", &ca) > 0, "no CA info");
    TH_CHECK(strstr(info, "CA=true") != NULL, "the CA certificate is not CA:TRUE:\n%s", info);
    TH_CHECK(strstr(info, "ECDSA with SHA256") != NULL, "the CA does not sign with ECDSA+SHA-256");
    TH_CHECK(mbedtls_x509_crt_check_key_usage(&ca, MBEDTLS_X509_KU_KEY_CERT_SIGN |
                                                       MBEDTLS_X509_KU_CRL_SIGN) == 0,
             "the CA lacks keyCertSign or cRLSign");
    TH_CHECK(mbedtls_pk_get_type(&ca.pk) == MBEDTLS_PK_ECKEY &&
                 mbedtls_pk_get_bitlen(&ca.pk) == 256,
             "the CA key is not EC P-256");
    mbedtls_x509_dn_gets(dn, sizeof dn, &ca.subject);
    TH_CHECK(strcmp(dn, "CN=test CA") == 0, "CA subject is '%s'", dn);
    mbedtls_x509_crt_free(&ca);
}

/* Checks a device certificate and key as written by `device add TENANT DEVICE`. */
static void check_device_crt(const char *tenant, const char *device, long days)
{
    const char *dir = pki(th_fmt("devices/%s", device));
    mbedtls_x509_crt ca, c;
    mbedtls_pk_context key;
    char dn[256], want[256], cadn[256], s[128];
    uint32_t flags = 0;
    load_crt(&ca, pki("ca.crt"));
    load_crt(&c, th_fmt("%s/device.crt", dir));
    mbedtls_x509_dn_gets(dn, sizeof dn, &c.subject);
    snprintf(want, sizeof want, "CN=%s, O=%s", device, tenant);
    TH_CHECK(strcmp(dn, want) == 0, "subject is '%s', not '%s'", dn, want);
    mbedtls_x509_dn_gets(dn, sizeof dn, &c.issuer);
    mbedtls_x509_dn_gets(cadn, sizeof cadn, &ca.subject);
    TH_CHECK(strcmp(dn, cadn) == 0, "issuer '%s' is not the CA '%s'", dn, cadn);
    TH_CHECK(mbedtls_x509_crt_check_extended_key_usage(
                 &c, MBEDTLS_OID_CLIENT_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH)) == 0,
             "%s: no extendedKeyUsage clientAuth", device);
    TH_CHECK(mbedtls_x509_crt_check_extended_key_usage(
                 &c, MBEDTLS_OID_SERVER_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)) != 0,
             "%s: a device certificate must not be usable by a TLS server", device);
    TH_CHECK(mbedtls_x509_crt_check_key_usage(&c, MBEDTLS_X509_KU_KEY_CERT_SIGN) != 0,
             "%s: a device certificate must not sign certificates", device);
    TH_CHECK(mbedtls_pk_get_type(&c.pk) == MBEDTLS_PK_ECKEY && mbedtls_pk_get_bitlen(&c.pk) == 256,
             "%s: the key is not EC P-256", device);
    TH_CHECK(mbedtls_x509_crt_verify(&c, &ca, NULL, NULL, &flags, NULL, NULL) == 0,
             "%s: does not verify against the CA (flags 0x%x)", device, (unsigned)flags);
    /* Serial: 16 random bytes, as the registry says. */
    TH_CHECK(c.serial.len == 16, "%s: serial of %zu bytes", device, c.serial.len);
    char serial[40];
    hex(c.serial.p, c.serial.len, serial, 1);
    reg_text(device, "serial", s, sizeof s);
    TH_CHECK(strcmp(s, serial) == 0, "%s: registry serial %s, certificate %s", device, s, serial);
    /* The registry's fingerprint is the SHA-256 of the DER. */
    unsigned char digest[32];
    char fp[65];
    TH_CHECK(mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), c.raw.p, c.raw.len, digest) ==
                 0,
             "sha256");
    hex(digest, sizeof digest, fp, 0);
    reg_text(device, "fingerprint", s, sizeof s);
    TH_CHECK(strcmp(s, fp) == 0, "%s: registry fingerprint %s, certificate %s", device, s, fp);
    reg_text(device, "tenant", s, sizeof s);
    TH_CHECK(strcmp(s, tenant) == 0, "%s: registry tenant %s", device, s);
    reg_text(device, "status", s, sizeof s);
    TH_CHECK(strcmp(s, "active") == 0, "%s: registry status %s", device, s);
    double left = difftime(x509_time(&c.valid_to), time(NULL)) / 86400.0;
    TH_CHECK(left > days - 0.1 && left < days + 0.1, "%s: valid %.2f more days, not %ld", device,
             left, days);
    /* The key is the certificate's. */
    char *pem = slurp(th_fmt("%s/device.key", dir));
    TH_CHECK(pem != NULL, "cannot read %s/device.key", dir);
    mbedtls_pk_init(&key);
    TH_CHECK(ctl_pk_parse_key(&key, (const unsigned char *)pem, strlen(pem) + 1, NULL, NULL) == 0,
             "%s: device.key does not parse", device);
    TH_CHECK(ctl_pk_check_pair(&c.pk, &key, NULL, NULL) == 0,
             "%s: device.key is not the key of device.crt", device);
    free(pem);
    mbedtls_pk_free(&key);
    mbedtls_x509_crt_free(&c);
    mbedtls_x509_crt_free(&ca);
    check_mode(dir, 0700);
    check_mode(th_fmt("%s/device.key", dir), 0600);
    check_mode(th_fmt("%s/device.crt", dir), 0644);
    check_mode(th_fmt("%s/ca.crt", dir), 0644);
    if (t.have_openssl) {
        char *o = NULL;
        int st = th_capture(&o, "openssl verify -CAfile %s %s/device.crt 2>&1",
                            th_shq(pki("ca.crt")), th_shq(dir));
        TH_CHECK(st == 0 && o && strstr(o, ": OK"), "openssl verify %s: %s", device, o ? o : "");
        free(o);
    }
}

/* mbedTLS, with the CRL: 1 if the device's certificate is revoked, 0 if it verifies. */
static int revoked_by_crl(const char *device)
{
    mbedtls_x509_crt ca, c;
    mbedtls_x509_crl crl;
    uint32_t flags = 0;
    load_crt(&ca, pki("ca.crt"));
    load_crt(&c, pki(th_fmt("devices/%s/device.crt", device)));
    mbedtls_x509_crl_init(&crl);
    TH_CHECK(mbedtls_x509_crl_parse_file(&crl, pki("crl.pem")) == 0, "crl.pem does not parse");
    int rc = mbedtls_x509_crt_verify(&c, &ca, &crl, NULL, &flags, NULL, NULL);
    TH_CHECK(rc == 0 || flags == MBEDTLS_X509_BADCERT_REVOKED,
             "%s: verify with the CRL failed for another reason (flags 0x%x)", device,
             (unsigned)flags);
    mbedtls_x509_crl_free(&crl);
    mbedtls_x509_crt_free(&c);
    mbedtls_x509_crt_free(&ca);
    return rc != 0;
}

/* openssl checks the CRL's signature and prints it; returns the text (caller frees). */
static char *crl_text(void)
{
    char *o = NULL;
    if (!t.have_openssl)
        return NULL;
    int st = th_capture(&o, "openssl crl -in %s -CAfile %s -noout -text 2>&1",
                        th_shq(pki("crl.pem")), th_shq(pki("ca.crt")));
    TH_CHECK(st == 0 && o && strstr(o, "verify OK"), "openssl crl -verify failed: %s", o ? o : "");
    return o;
}

/* The password line of device must be Mosquitto's $7$ format and match its device.pass. */
static void check_password_entry(const char *device)
{
    char line[512], pass[128];
    TH_CHECK(passwd_line(device, line, sizeof line) == 0, "no password line for %s", device);
    TH_CHECK(th_read_first_line(pki(th_fmt("devices/%s/device.pass", device)), pass, sizeof pass) ==
                 0,
             "no device.pass for %s", device);
    TH_CHECK(strlen(pass) >= 24 &&
                 strspn(pass, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
                     strlen(pass),
             "%s: the password is not >= 24 URL-safe characters", device);
    char iters[16], salt64[64], hash64[128];
    const char *h = strchr(line, ':') + 1;
    TH_CHECK(sscanf(h, "$7$%15[0-9]$%63[^$]$%127s", iters, salt64, hash64) == 3,
             "%s: '%s' is not $7$ITER$SALT$HASH", device, h);
    TH_CHECK(strcmp(iters, "101") == 0, "%s: %s iterations, Mosquitto's default is 101", device,
             iters);
    unsigned char salt[64], hash[128], mine[64];
    size_t sl = 0, hl = 0;
    TH_CHECK(mbedtls_base64_decode(salt, sizeof salt, &sl, (const unsigned char *)salt64,
                                   strlen(salt64)) == 0 &&
                 sl == 12,
             "%s: the salt is not 12 bytes of base64", device);
    TH_CHECK(mbedtls_base64_decode(hash, sizeof hash, &hl, (const unsigned char *)hash64,
                                   strlen(hash64)) == 0 &&
                 hl == 64,
             "%s: the hash is not 64 bytes of base64", device);
    TH_CHECK(ctl_pbkdf2_sha512((const unsigned char *)pass, strlen(pass), salt, sl, 101, mine,
                               sizeof mine) == 0,
             "pbkdf2");
    TH_CHECK(memcmp(mine, hash, 64) == 0, "%s: the hash is not PBKDF2-SHA512 of device.pass",
             device);
    check_mode(pki(th_fmt("devices/%s/device.pass", device)), 0600);
}

/* ---- the broker ------------------------------------------------------------------------- */

/* mosquitto_sub as a password user: connect, subscribe, leave. Returns its exit status. */
static int try_password(const char *user, const char *pass)
{
    return th_run("mosquitto_sub -h 127.0.0.1 -p %d --cafile %s -u %s -P %s -t %s -E -W 5 "
                  ">>%s 2>&1",
                  t.port_pw, th_shq(th_fmt("%s/ca.crt", t.srv)), th_shq(user), th_shq(pass),
                  th_shq(th_fmt("sync/x/dev/%s/ack", user)), th_shq(t.clog));
}

/* The same with the device's certificate on the client-certificate listener. */
static int try_cert(const char *device)
{
    const char *d = pki(th_fmt("devices/%s", device));
    return th_run("mosquitto_sub -h 127.0.0.1 -p %d --cafile %s --cert %s --key %s -t %s -E "
                  "-W 5 >>%s 2>&1",
                  t.port_cert, th_shq(th_fmt("%s/ca.crt", t.srv)),
                  th_shq(th_fmt("%s/device.crt", d)), th_shq(th_fmt("%s/device.key", d)),
                  th_shq(th_fmt("sync/x/dev/%s/ack", device)), th_shq(t.clog));
}

/* What a wait predicate tries: a login, and whether it should work. */
struct login {
    const char *user; /* device id */
    const char *pass; /* its password, or NULL for its certificate */
    int want_ok;      /* 1: wait until it works; 0: wait until it is refused */
};

static int login_as_wanted(void *ctx)
{
    const struct login *l = ctx;
    int st = l->pass ? try_password(l->user, l->pass) : try_cert(l->user);
    return (st == 0) == l->want_ok;
}

/* The login must come to work (want_ok) or be refused within RELOAD_WAIT_MS: the broker reads
 * its files again shortly after the SIGHUP. */
static void expect_login(const char *user, const char *pass, int want_ok)
{
    struct login l = {user, pass, want_ok};
    TH_CHECK(th_wait_until(login_as_wanted, &l, RELOAD_WAIT_MS) == 0,
             "%s with its %s is %s after %d ms", user, pass ? "password" : "certificate",
             want_ok ? "still refused" : "still let in", RELOAD_WAIT_MS);
}

static const char *passfile(const char *device, char *buf, size_t n)
{
    TH_CHECK(th_read_first_line(pki(th_fmt("devices/%s/device.pass", device)), buf, n) == 0,
             "no password for %s", device);
    return buf;
}

static void start_broker(void)
{
    struct passwd *pw = getpwuid(geteuid());
    TH_CHECK(pw != NULL, "who am I?");
    const char *conf = th_fmt("%s/mosquitto.conf", t.dir);
    FILE *f = fopen(conf, "w");
    TH_CHECK(f != NULL, "cannot write %s", conf);
    fprintf(f,
            "user %s\n"
            "per_listener_settings false\n"
            "allow_anonymous false\n"
            "password_file %s\n"
            "acl_file %s\n"
            "pid_file %s/mosquitto.pid\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "connection_messages true\n"
            "# devices with a password (and the cloud)\n"
            "listener %d 127.0.0.1\n"
            "cafile %s/ca.crt\ncertfile %s/server.crt\nkeyfile %s/server.key\n"
            "# devices with their certificate: the CN is the user name\n"
            "listener %d 127.0.0.1\n"
            "cafile %s\ncertfile %s/server.crt\nkeyfile %s/server.key\n"
            "require_certificate true\nuse_identity_as_username true\n"
            "crlfile %s\n",
            pw->pw_name, pki("passwd"), pki("acl"), t.dir, t.port_pw, t.srv, t.srv, t.srv,
            t.port_cert, pki("ca.crt"), t.srv, t.srv, pki("crl.pem"));
    fclose(f);
    char *argv[] = {"mosquitto", "-c", (char *)conf, NULL};
    const char *log = th_fmt("%s/mosquitto.log", t.dir);
    th_register_log(log);
    t.broker = th_spawn(log, argv);
    TH_CHECK(t.broker > 0, "cannot start mosquitto");
    TH_CHECK(th_wait_port(t.port_pw, 10000) == 0 && th_wait_port(t.port_cert, 10000) == 0,
             "mosquitto does not listen on %d and %d", t.port_pw, t.port_cert);
}

/* ---- the test --------------------------------------------------------------------------- */

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    th_init();
    t.dir = th_tmpdir();
    TH_CHECK(t.dir != NULL, "no temp folder");
    t.pki = th_fmt("%s/pki", t.dir);
    t.srv = th_fmt("%s/srv", t.dir);
    t.clog = th_fmt("%s/clients.log", t.dir);
    th_register_log(t.clog);
    t.port_pw = th_free_port();
    t.port_cert = th_free_port();
    TH_CHECK(t.port_pw > 0 && t.port_cert > 0 && t.port_pw != t.port_cert, "no free ports");
    t.mask = "022";
    t.have_openssl = th_run("command -v openssl >/dev/null 2>&1") == 0;
    if (!t.have_openssl)
        printf("syncctl: NOTE: no openssl CLI here: the openssl verify/crl checks are skipped\n");
    TH_CHECK(th_run("{ command -v mosquitto && command -v mosquitto_sub && command -v "
                    "mosquitto_pub && command -v mosquitto_passwd; } >/dev/null") == 0,
             "the mosquitto broker and clients are needed");
    printf("syncctl: folder %s, ports %d (passwords) and %d (certificates)\n", t.dir, t.port_pw,
           t.port_cert);

    /* --help everywhere. */
    char *o;
    TH_CHECK(ctl(&o, "--help") == 0 && strstr(o, "device add"), "syncctl --help");
    free(o);
    TH_CHECK(ctl(&o, "device add --help") == 0 && strstr(o, "--password") && strstr(o, "--dir"),
             "syncctl device add --help");
    free(o);
    TH_CHECK(ctl(NULL, "frobnicate") == 2, "an unknown command must exit 2");

    /* The CA, under a tight umask: public files must still come out 0644. */
    t.mask = "077";
    CTL_OK("ca init --dir %s --cn 'test CA' --days 1000", th_shq(t.pki));
    check_mode(pki("ca.key"), 0600);
    check_mode(pki("ca.crt"), 0644);
    check_mode(pki("crl.pem"), 0644);
    check_mode(pki("registry.db"), 0600);
    check_ca();
    char *key_before = slurp(pki("ca.key"));
    ctl_refused("refusing to overwrite", th_fmt("ca init --dir %s", th_shq(t.pki)));
    char *key_after = slurp(pki("ca.key"));
    TH_CHECK(key_before && key_after && strcmp(key_before, key_after) == 0,
             "a refused ca init changed ca.key");
    free(key_before);
    free(key_after);
    ctl_refused("Invalid key_type", th_fmt("ca init --dir %s/other --key-type dsa", th_shq(t.dir)));
    char *txt = crl_text();
    TH_CHECK(!txt || strstr(txt, "No Revoked Certificates"), "the first CRL is not empty");
    free(txt);

    /* Devices, under an open umask: secrets must still come out 0600. */
    t.mask = "000";
    TH_CHECK(ctl(&o, "device add acme dev-pw --password --role manager --dir %s", th_shq(t.pki)) ==
                 0,
             "device add dev-pw");
    TH_CHECK(strstr(o, "must reload"), "without a broker pid, device add must say to reload");
    TH_CHECK(strstr(o, "role dev-pw manager"), "device add --role prints synccloud's role line");
    free(o);
    CTL_OK("device add acme dev-cert --dir %s --days 100", th_shq(t.pki));
    CTL_OK("device add other dev-b --password --dir %s", th_shq(t.pki));
    check_device_crt("acme", "dev-pw", 825);
    check_device_crt("acme", "dev-cert", 100);
    check_device_crt("other", "dev-b", 825);
    check_password_entry("dev-pw");
    check_password_entry("dev-b");
    char line[512];
    TH_CHECK(passwd_line("dev-cert", line, sizeof line) != 0,
             "a device without --password has a password line");
    check_mode(pki("passwd"), 0600);
    TH_CHECK(access(pki("devices/dev-cert/device.pass"), F_OK) != 0,
             "a device without --password has a device.pass");
    char *acl = slurp(pki("acl"));
    TH_CHECK(acl && strstr(acl, "user synccloud\ntopic readwrite sync/#\n"), "no cloud block");
    TH_CHECK(strstr(acl, "user admin\ntopic write sync/+/admin/req\ntopic read "
                         "sync/+/admin/resp/#\n"),
             "no administrators' block");
    TH_CHECK(strstr(acl, "user dev-pw\ntopic write sync/acme/dev/dev-pw/up\n") &&
                 strstr(acl, "topic read sync/acme/dev/dev-pw/ack\n") &&
                 strstr(acl, "topic read sync/acme/delta/#\n") &&
                 strstr(acl, "user dev-b\ntopic write sync/other/dev/dev-b/up\n"),
             "device blocks missing from the ACL:\n%s", acl);
    free(acl);

    /* The private key is in device.key and nowhere else. */
    char keyline[128];
    TH_CHECK(th_capture(&o, "sed -n 2p %s", th_shq(pki("devices/dev-pw/device.key"))) == 0 &&
                 strlen(o) > 40,
             "cannot read the key's first line");
    snprintf(keyline, sizeof keyline, "%.*s", (int)strcspn(o, "\n"), o);
    free(o);
    th_capture(&o, "grep -rlF -- %s %s", th_shq(keyline), th_shq(t.dir));
    TH_CHECK(o && strcmp(o, th_fmt("%s\n", pki("devices/dev-pw/device.key"))) == 0,
             "the device key is found in other files:\n%s", o ? o : "");
    free(o);

    /* Names and duplicates. */
    ctl_refused("already exists", th_fmt("device add acme dev-pw --dir %s", th_shq(t.pki)));
    ctl_refused("already exists", th_fmt("device add other dev-pw --dir %s", th_shq(t.pki)));
    const char *bad[] = {
        "a/b", "a+b",   "a#",
        "a b", "x\\$y", "0123456789012345678901234567890123456789012345678901234567890123456789"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctl_refused("invalid device id",
                    th_fmt("device add acme %s --dir %s", th_shq(bad[i]), th_shq(t.pki)));
        ctl_refused("invalid tenant",
                    th_fmt("device add %s ok-id --dir %s", th_shq(bad[i]), th_shq(t.pki)));
    }
    ctl_refused("cloud's broker user", th_fmt("device add acme synccloud --dir %s", th_shq(t.pki)));
    TH_CHECK(th_sql_int(pki("registry.db"), "SELECT count(*) FROM devices") == 3,
             "refused adds changed the registry");
    TH_CHECK(access(pki("devices/ok-id"), F_OK) != 0, "a refused add left a folder");

    /* Other users of the password file: syncctl keeps their lines and refuses their names. */
    TH_CHECK(th_run("mosquitto_passwd -b %s synccloud cloud-secret && mosquitto_passwd -b %s "
                    "viewer viewer-secret",
                    th_shq(pki("passwd")), th_shq(pki("passwd"))) == 0,
             "mosquitto_passwd failed");
    char cloud_line[512], viewer_line[512];
    TH_CHECK(passwd_line("synccloud", cloud_line, sizeof cloud_line) == 0 &&
                 passwd_line("viewer", viewer_line, sizeof viewer_line) == 0,
             "mosquitto_passwd did not add the users");
    ctl_refused("not a device", th_fmt("device add acme viewer --dir %s", th_shq(t.pki)));

    /* A config file, as in production: the broker's pid file and an acl_extra file. */
    const char *conf = th_fmt("%s/syncctl.conf", t.dir);
    FILE *f = fopen(conf, "w");
    TH_CHECK(f != NULL, "cannot write %s", conf);
    fprintf(f,
            "# syncctl for the test broker\ndir %s\nbroker_pid_file %s/mosquitto.pid\n"
            "acl_extra %s/viewer.acl\ncrl_days 7\n",
            t.pki, t.dir, t.dir);
    fclose(f);
    f = fopen(th_fmt("%s/viewer.acl", t.dir), "w");
    TH_CHECK(f != NULL, "cannot write viewer.acl");
    fputs("user viewer\ntopic read sync/acme/events/#\nuser dashboard\n"
          "topic read sync/acme/events/#\n",
          f);
    fclose(f);
    const char *C = th_shq(conf);
    ctl_refused("acl_extra file", th_fmt("-c %s device add acme dashboard", C));

    /* The broker. */
    TH_CHECK(th_run("bash %s/scripts/dev-certs.sh %s >/dev/null", th_shq(SYNC_SOURCE_DIR),
                    th_shq(t.srv)) == 0,
             "dev-certs.sh failed");
    start_broker();
    TH_CHECK(ctl(&o, "-c %s acl generate", C) == 0 && strstr(o, "reloaded the broker"),
             "acl generate must reload the broker through broker_pid_file");
    free(o);
    acl = slurp(pki("acl"));
    TH_CHECK(acl && strstr(acl, "user viewer\ntopic read sync/acme/events/#\n"),
             "acl_extra is not in the ACL");
    free(acl);

    char pw_pw[128], pw_b[128];
    passfile("dev-pw", pw_pw, sizeof pw_pw);
    passfile("dev-b", pw_b, sizeof pw_b);
    expect_login("dev-pw", pw_pw, 1);
    expect_login("dev-b", pw_b, 1);
    TH_CHECK(try_password("dev-pw", "not-the-password") != 0, "a wrong password was accepted");
    TH_CHECK(try_password("dev-pw", pw_b) != 0, "dev-b's password let dev-pw in");
    TH_CHECK(try_password("synccloud", "cloud-secret") == 0, "the cloud's kept line does not work");
    expect_login("dev-cert", NULL, 1);
    TH_CHECK(try_password("dev-cert", "") != 0, "a certificate-only device logged in with a "
                                                "password");

    /* The ACL: a device reads its own tenant's head, not another tenant's. */
    TH_CHECK(th_run("mosquitto_pub -h 127.0.0.1 -p %d --cafile %s/ca.crt -u synccloud -P "
                    "cloud-secret -t sync/acme/head -m acme-head -r -q 1 && mosquitto_pub -h "
                    "127.0.0.1 -p %d --cafile %s/ca.crt -u synccloud -P cloud-secret -t "
                    "sync/other/head -m other-head -r -q 1",
                    t.port_pw, th_shq(t.srv), t.port_pw, th_shq(t.srv)) == 0,
             "the cloud cannot publish the heads");
    const char *sub1 = "mosquitto_sub -h 127.0.0.1 -p %d --cafile %s/ca.crt -u dev-pw -P %s -t %s "
                       "-C 1 -W 3 2>>%s";
    TH_CHECK(th_capture(&o, sub1, t.port_pw, th_shq(t.srv), th_shq(pw_pw), "sync/acme/head",
                        th_shq(t.clog)) == 0 &&
                 strstr(o, "acme-head"),
             "dev-pw does not get its tenant's head");
    free(o);
    th_capture(&o, sub1, t.port_pw, th_shq(t.srv), th_shq(pw_pw), "sync/other/head",
               th_shq(t.clog));
    TH_CHECK(o && !strstr(o, "other-head"), "dev-pw reads another tenant's head");
    free(o);

    /* A password client stays connected while dev-pw is suspended: the reload drops it. */
    const char *keep_log = th_fmt("%s/keep-dev-pw.log", t.dir);
    char *keep_argv[] = {"mosquitto_sub",
                         "-h",
                         "127.0.0.1",
                         "-p",
                         (char *)th_fmt("%d", t.port_pw),
                         "--cafile",
                         (char *)th_fmt("%s/ca.crt", t.srv),
                         "-u",
                         "dev-pw",
                         "-P",
                         pw_pw,
                         "-i",
                         "keep-dev-pw",
                         "-t",
                         "sync/acme/head",
                         NULL};
    th_register_log(keep_log);
    pid_t keep = th_spawn(keep_log, keep_argv);
    TH_CHECK(keep > 0, "cannot start mosquitto_sub");
    char *got = NULL;
    for (int i = 0; i < 100 && !(got && strstr(got, "acme-head")); i++) {
        free(got);
        usleep(50000);
        got = slurp(keep_log);
    }
    TH_CHECK(got && strstr(got, "acme-head"), "the connected subscriber got nothing");
    free(got);

    /* Suspend: the password, the certificate and the connected client are all refused. */
    TH_CHECK(ctl(&o, "-c %s device suspend dev-pw", C) == 0 && strstr(o, "reloaded the broker"),
             "device suspend dev-pw");
    free(o);
    expect_login("dev-pw", pw_pw, 0);
    int st = th_wait_exit(keep, 5000, 0);
    TH_CHECK(st >= 0, "the connected client of a suspended device was not dropped on reload");
    printf("syncctl: the connected password client was dropped on reload (exit status %d)\n",
           WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    TH_CHECK(passwd_line("dev-pw", line, sizeof line) != 0, "a suspended device kept its line");
    TH_CHECK(passwd_line("synccloud", line, sizeof line) == 0 && strcmp(line, cloud_line) == 0 &&
                 passwd_line("viewer", line, sizeof line) == 0 && strcmp(line, viewer_line) == 0,
             "the other users' lines changed");
    acl = slurp(pki("acl"));
    TH_CHECK(acl && !strstr(acl, "user dev-pw") && strstr(acl, "user dev-b"),
             "a suspended device kept its ACL block (or another lost it)");
    free(acl);
    reg_text("dev-pw", "status", line, sizeof line);
    TH_CHECK(strcmp(line, "suspended") == 0, "registry status of dev-pw: %s", line);
    TH_CHECK(revoked_by_crl("dev-pw") && !revoked_by_crl("dev-cert"), "the CRL is wrong");
    CTL_OK("-c %s device suspend dev-cert", C);
    expect_login("dev-cert", NULL, 0);
    TH_CHECK(revoked_by_crl("dev-cert"), "dev-cert is not on the CRL");
    txt = crl_text();
    if (txt) {
        reg_text("dev-cert", "serial", line, sizeof line);
        TH_CHECK(strstr(txt, line) && strstr(txt, "Certificate Hold"),
                 "openssl does not see dev-cert on hold:\n%s", txt);
    }
    free(txt);
    expect_login("dev-b", pw_b, 1);
    TH_CHECK(ctl(&o, "-c %s device suspend dev-cert", C) == 0 && strstr(o, "already"),
             "suspending a suspended device must say so and succeed");
    free(o);
    ctl_refused("Unknown option", th_fmt("-c %s device suspend dev-cert --bogus 1", C));

    /* Resume: the same credentials work again. */
    CTL_OK("-c %s device resume dev-pw", C);
    CTL_OK("-c %s device resume dev-cert", C);
    expect_login("dev-pw", pw_pw, 1);
    expect_login("dev-cert", NULL, 1);
    TH_CHECK(!revoked_by_crl("dev-pw") && !revoked_by_crl("dev-cert"), "resumed but revoked");
    txt = crl_text();
    TH_CHECK(!txt || strstr(txt, "No Revoked Certificates"), "the CRL is not empty again");
    free(txt);

    /* Remove, compromised: revoked for good, its id never comes back. */
    CTL_OK("-c %s device remove dev-b --compromised", C);
    expect_login("dev-b", pw_b, 0);
    TH_CHECK(revoked_by_crl("dev-b"), "a removed device is not on the CRL");
    txt = crl_text();
    TH_CHECK(!txt || strstr(txt, "Key Compromise"), "no keyCompromise reason:\n%s", txt);
    free(txt);
    ctl_refused("removed", th_fmt("-c %s device resume dev-b", C));
    ctl_refused("already exists", th_fmt("-c %s device add other dev-b", C));
    reg_text("dev-b", "status", line, sizeof line);
    TH_CHECK(strcmp(line, "removed") == 0, "registry status of dev-b: %s", line);
    TH_CHECK(ctl(&o, "-c %s device list --json", C) == 0 && o[0] == '[' &&
                 strstr(o, "\"device\":\"dev-b\"") && strstr(o, "\"status\":\"removed\"") &&
                 strstr(o, "\"reason\":\"keyCompromise\"") && strstr(o, "\"device\":\"dev-pw\""),
             "device list --json");
    free(o);
    TH_CHECK(ctl(&o, "-c %s device show dev-pw", C) == 0 && strstr(o, "status      active"),
             "device show");
    free(o);
    TH_CHECK(ctl(&o, "-c %s crl generate", C) == 0 && strstr(o, "1 revoked, valid 7 days"),
             "crl generate");
    free(o);

    /* A sanitizer build reports leaks and errors on stderr, which is in the transcript: also
     * for the runs that were meant to fail. */
    TH_CHECK(!strstr(t.transcript, "Sanitizer") && !strstr(t.transcript, "runtime error:"),
             "a sanitizer reported a problem in syncctl (see its output above)");
    /* No secret ever reached syncctl's output. */
    TH_CHECK(!strstr(t.transcript, pw_pw) && !strstr(t.transcript, pw_b) &&
                 !strstr(t.transcript, keyline),
             "a password or a private key appears in syncctl's output");

    th_stop(t.broker, "mosquitto", th_fmt("%s/mosquitto.log", t.dir), 0);
    free(t.transcript);
    printf("syncctl: OK\n");
    return 0;
}
