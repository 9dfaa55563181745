/* test_bridge.c - a site broker bridged to the central broker, from broker-config/bridge-site.conf.
 *
 * Real processes only, all on 127.0.0.1:
 *   - the central broker: scripts/devbroker.sh (TLS, passwords: synccloud, edge-b, viewer), plus
 *     a listener that requires client certificates from syncctl's CA, as the production central
 *     broker does (broker-config/mosquitto.conf), where the site's bridge logs in; the central
 *     ACL gets the lines of broker-config/bridge-site.acl (as syncctl's acl_extra would);
 *   - the site broker: broker-config/bridge-site.conf itself, rendered with this test's paths and
 *     ports (every replaced string must occur in the file, so the test follows the example);
 *     the site's devices shop-12 and shop-13 log in there with certificates from syncctl, and the
 *     bridge logs in at the central broker as site-berlin (a certificate from syncctl too);
 *   - synccloud and the replica edge-b on the central broker; shop-12 (writes, and is a replica
 *     too) and shop-13 (a replica that starts late, from nothing) on the site broker.
 * Checked, each by a condition that fails when the bridge does not carry it:
 *   1. shop-12's changes reach the cloud (its applied and records counts equal the changes
 *      written) and edge-b: batches up and acks down through the bridge, the outbox drains;
 *   2. shop-13, started afterwards with an empty database, ends up identical: its catch-up pulls
 *      (MQTT 5 Response Topic + Correlation Data) go up and the pages come back down;
 *   3. changes written on edge-b (central) reach shop-12 and shop-13 (deltas down), and more
 *      changes of shop-12 reach everyone: all four checksums agree;
 *   4. shop-12's retained state is readable at the central broker, and when shop-12 is killed
 *      -9 its Last Will (published by the site broker) replaces it there;
 *   5. the bridge's notification topic reads "1" at the central broker, and "0" (the bridge's
 *      Last Will) once the site broker is killed -9;
 *   6. shop-14, a registered device at the site that bridge-site.acl does not list, gets nothing
 *      applied: the central ACL lets the site speak only for its own devices (its write comes
 *      before shop-12's last ones, which are applied).
 *
 * Needs mosquitto, mosquitto_sub and openssl. TH_KEEP=1 keeps the folder.
 */
#include "harness.h"

#include <pwd.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SYNCEDGE_BIN
#error "SYNCEDGE_BIN (path of the syncedge binary) must be defined by the build"
#endif
#ifndef SYNCCLOUD_BIN
#error "SYNCCLOUD_BIN (path of the synccloud binary) must be defined by the build"
#endif
#ifndef SYNCCTL_BIN
#error "SYNCCTL_BIN (path of the syncctl binary) must be defined by the build"
#endif

#define WAIT_MS 60000      /* starting, a retained message showing up */
#define CONVERGE_MS 120000 /* copies agreeing */
#define MAX_ARGS 32

/* Everything the test and its wait predicates share. */
static struct {
    const char *dir;     /* the temp folder */
    const char *central; /* devbroker's folder: certificates, passwords, conf, acl */
    const char *pki;     /* syncctl's --dir: CA, registry, device identities, ACL, CRL */
    const char *siteetc; /* the site broker's /etc/mosquitto/{certs,edgesync} */
    const char *site;    /* the site broker's persistence, pid file and log */
    const char *schema;  /* docs/examples/schema.conf */
    int cport;           /* central: password listener (synccloud, edge-b, viewer) */
    int bport;           /* central: client-certificate listener (the bridge) */
    int sport;           /* site: the devices' listener */
    pid_t central_pid, site_pid, cloud_pid;
    pid_t w_pid;          /* shop-12: the writer at the site */
    pid_t r_pid;          /* shop-13: the late replica at the site */
    pid_t x_pid;          /* shop-14: at the site, but not listed in the central ACL */
    pid_t b_pid;          /* edge-b: the replica at the central broker */
    const char *w_db, *r_db, *b_db, *x_db, *cloud_db;
    const char *sum_log;  /* stderr of the --checksum runs */
    const char *sum_w, *sum_r, *sum_b, *sum_cloud; /* --checksum commands */
} t;

struct args {
    char *v[MAX_ARGS + 1]; /* NULL-terminated argv */
    int n;                 /* entries used */
};

static void add(struct args *a, const char *s)
{
    TH_CHECK(a->n < MAX_ARGS, "too many arguments");
    a->v[a->n++] = (char *)s;
    a->v[a->n] = NULL;
}

/* ---- files ---------------------------------------------------------------------------- */

/* Returns the whole file (allocated, NUL-terminated; the caller frees it). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    TH_CHECK(f != NULL, "cannot open %s", path);
    TH_CHECK(fseek(f, 0, SEEK_END) == 0, "seek %s", path);
    long n = ftell(f);
    TH_CHECK(n >= 0 && fseek(f, 0, SEEK_SET) == 0, "size of %s", path);
    char *buf = malloc((size_t)n + 1);
    TH_CHECK(buf != NULL, "out of memory");
    TH_CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n, "read %s", path);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void spit(const char *path, const char *text, const char *mode)
{
    FILE *f = fopen(path, mode);
    TH_CHECK(f != NULL, "cannot write %s", path);
    TH_CHECK(fputs(text, f) >= 0 && fclose(f) == 0, "write %s", path);
}

/* Replaces every occurrence of from in *text by to; fails the test if there is none, so a
 * change of the example file that this rendering no longer covers is noticed. */
static void replace_all(char **text, const char *from, const char *to, const char *what)
{
    size_t fl = strlen(from), tl = strlen(to), count = 0;
    for (const char *p = strstr(*text, from); p; p = strstr(p + fl, from))
        count++;
    TH_CHECK(count > 0, "%s: '%s' not found: the example changed, update the test", what, from);
    size_t len = strlen(*text) + count * tl + 1;
    char *out = malloc(len), *o = out;
    TH_CHECK(out != NULL, "out of memory");
    const char *s = *text;
    for (const char *p = strstr(s, from); p; p = strstr(s, from)) {
        memcpy(o, s, (size_t)(p - s));
        o += p - s;
        memcpy(o, to, tl);
        o += tl;
        s = p + fl;
    }
    strcpy(o, s);
    free(*text);
    *text = out;
}

/* Fails the test if a line that is not a comment still contains needle. */
static void no_live_line_with(const char *text, const char *needle, const char *what)
{
    const char *line = text;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        if (line[0] != '#') {
            char buf[1024];
            snprintf(buf, sizeof buf, "%.*s", (int)(n < sizeof buf - 1 ? n : sizeof buf - 1),
                     line);
            TH_CHECK(strstr(buf, needle) == NULL, "%s: line left unrendered: %s", what, buf);
        }
        line += n + (end ? 1 : 0);
    }
}

static int file_has(const char *path, const char *needle)
{
    char *out = NULL;
    int rc = th_capture(&out, "grep -cF -- %s %s 2>/dev/null", th_shq(needle), th_shq(path));
    free(out);
    return rc == 0;
}

/* ---- the brokers ------------------------------------------------------------------------ */

/* syncctl with --dir pki; fails the test on a nonzero exit. */
static void ctl(const char *args)
{
    char *out = NULL;
    int st = th_capture(&out, "%s --dir %s %s 2>&1", th_shq(SYNCCTL_BIN), th_shq(t.pki), args);
    TH_CHECK(st == 0, "syncctl %s failed (%d):\n%s", args, st, out ? out : "");
    free(out);
}

/* The central broker: devbroker's config plus a client-certificate listener for bridges, and
 * the central ACL plus the site's lines from bridge-site.acl. */
static void setup_central(void)
{
    TH_CHECK(th_run("bash %s/scripts/devbroker.sh setup %s %d >/dev/null",
                    th_shq(SYNC_SOURCE_DIR), th_shq(t.central), t.cport) == 0,
             "devbroker.sh setup failed");
    spit(th_fmt("%s/mosquitto.conf", t.central),
         th_fmt("\n# test_bridge: the bridges' listener, as the production broker's 8883\n"
                "listener %d 127.0.0.1\n"
                "certfile %s/server.crt\nkeyfile %s/server.key\n"
                "cafile %s/ca.crt\ncrlfile %s/crl.pem\n"
                "require_certificate true\nuse_identity_as_username true\ntls_version tlsv1.2\n",
                t.bport, t.central, t.central, t.pki, t.pki),
         "a");
    /* As in production: syncctl's block for site-berlin (a registered "device"), then the
     * acl_extra lines, which must take effect although the user has a block already. */
    TH_CHECK(th_run("{ echo; awk '/^# device site-berlin /{on=1} on && /^$/{exit} on' %s/acl; } >>%s/acl",
                    th_shq(t.pki), th_shq(t.central)) == 0 &&
                 file_has(th_fmt("%s/acl", t.central), "user site-berlin"),
             "cannot copy syncctl's block of site-berlin");
    char *acl = slurp(SYNC_SOURCE_DIR "/broker-config/bridge-site.acl");
    replace_all(&acl, "sync/acme/", "sync/demo/", "bridge-site.acl");
    no_live_line_with(acl, "acme", "bridge-site.acl");
    spit(th_fmt("%s/acl", t.central), "\n# ---- test_bridge: bridge-site.acl ----\n", "a");
    spit(th_fmt("%s/acl", t.central), acl, "a");
    free(acl);
}

/* The site broker: bridge-site.conf with this test's paths and ports, and the files it names. */
static void setup_site(void)
{
    struct passwd *pw = getpwuid(geteuid());
    TH_CHECK(pw != NULL, "who am I?");
    TH_CHECK(th_run("mkdir -p %s %s", th_shq(t.siteetc), th_shq(t.site)) == 0, "mkdir");
    /* What the site keeps: copies of syncctl's CA, CRL and ACL, the CA of the central broker's
     * certificate, the bridge's identity, and its own server certificate. */
    TH_CHECK(th_run("cd %s && install -m 0644 ca.crt crl.pem acl %s/ && "
                    "install -m 0644 devices/site-berlin/device.crt %s/bridge.crt && "
                    "install -m 0600 devices/site-berlin/device.key %s/bridge.key && "
                    "install -m 0644 %s/ca.crt %s/central-ca.crt && "
                    "install -m 0644 %s/server.crt %s/site.crt && "
                    "install -m 0600 %s/server.key %s/site.key",
                    th_shq(t.pki), th_shq(t.siteetc), th_shq(t.siteetc), th_shq(t.siteetc),
                    th_shq(t.central), th_shq(t.siteetc), th_shq(t.central), th_shq(t.siteetc),
                    th_shq(t.central), th_shq(t.siteetc)) == 0,
             "cannot copy the site's files");
    char *conf = slurp(SYNC_SOURCE_DIR "/broker-config/bridge-site.conf");
    const char *what = "bridge-site.conf";
    replace_all(&conf, "user mosquitto", th_fmt("user %s", pw->pw_name), what);
    replace_all(&conf, "/run/mosquitto/", th_fmt("%s/", t.site), what);
    replace_all(&conf, "listener 8883", th_fmt("listener %d 127.0.0.1", t.sport), what);
    replace_all(&conf, "/etc/mosquitto/certs/", th_fmt("%s/", t.siteetc), what);
    replace_all(&conf, "/etc/mosquitto/edgesync/", th_fmt("%s/", t.siteetc), what);
    replace_all(&conf, "/var/lib/mosquitto/", th_fmt("%s/", t.site), what);
    replace_all(&conf, "/var/log/mosquitto/", th_fmt("%s/", t.site), what);
    replace_all(&conf, "address mqtt.example.com:8883", th_fmt("address 127.0.0.1:%d", t.bport),
                what);
    replace_all(&conf, "sync/acme/", "sync/demo/", what);
    no_live_line_with(conf, "acme", what);
    no_live_line_with(conf, "example.com", what);
    no_live_line_with(conf, "/etc/mosquitto", what);
    no_live_line_with(conf, "/var/", what);
    spit(th_fmt("%s/mosquitto.conf", t.site), conf, "w");
    free(conf);
}

static pid_t start_broker(const char *conf, const char *log, int port)
{
    char *argv[] = {"mosquitto", "-c", (char *)conf, NULL};
    th_register_log(log);
    pid_t pid = th_spawn(log, argv);
    TH_CHECK(pid > 0, "cannot start mosquitto -c %s", conf);
    TH_CHECK(th_wait_port(port, 10000) == 0, "mosquitto -c %s does not listen on %d", conf,
             port);
    return pid;
}

/* ---- the daemons ---------------------------------------------------------------------- */

/* syncedge for device on db: at the site with its certificate, at the central broker with
 * its devbroker password. */
static struct args edge_args(const char *device, const char *db, int at_site)
{
    struct args a = {{NULL}, 0};
    add(&a, SYNCEDGE_BIN);
    add(&a, "--database");
    add(&a, db);
    add(&a, "--schema");
    add(&a, t.schema);
    add(&a, "--tenant");
    add(&a, "demo");
    add(&a, "--device");
    add(&a, device);
    add(&a, "--broker");
    add(&a, th_fmt("ssl://127.0.0.1:%d", at_site ? t.sport : t.cport));
    /* Both brokers' server certificates come from devbroker's CA. */
    add(&a, "--cafile");
    add(&a, th_fmt("%s/ca.crt", t.central));
    if (at_site) {
        add(&a, "--certfile");
        add(&a, th_fmt("%s/devices/%s/device.crt", t.pki, device));
        add(&a, "--keyfile");
        add(&a, th_fmt("%s/devices/%s/device.key", t.pki, device));
    } else {
        add(&a, "--password-file");
        add(&a, th_fmt("%s/%s.pass", t.central, device));
    }
    add(&a, "--replica");
    add(&a, "true");
    add(&a, "--log-level");
    add(&a, "info");
    add(&a, "--log-dest");
    add(&a, "stderr");
    return a;
}

static struct args cloud_args(void)
{
    struct args a = {{NULL}, 0};
    add(&a, SYNCCLOUD_BIN);
    add(&a, "--database");
    add(&a, t.cloud_db);
    add(&a, "--schema");
    add(&a, t.schema);
    add(&a, "--tenant");
    add(&a, "demo");
    add(&a, "--broker");
    add(&a, th_fmt("ssl://127.0.0.1:%d", t.cport));
    add(&a, "--username");
    add(&a, "synccloud");
    add(&a, "--password-file");
    add(&a, th_fmt("%s/synccloud.pass", t.central));
    add(&a, "--cafile");
    add(&a, th_fmt("%s/ca.crt", t.central));
    add(&a, "--log-level");
    add(&a, "info");
    add(&a, "--log-dest");
    add(&a, "stderr");
    return a;
}

static pid_t spawn(const char *log, const struct args *a)
{
    th_register_log(log);
    pid_t pid = th_spawn(log, a->v);
    TH_CHECK(pid > 0, "cannot start %s", a->v[0]);
    return pid;
}

static void check_alive(void)
{
    TH_CHECK(th_alive(t.central_pid), "the central mosquitto exited");
    TH_CHECK(th_alive(t.site_pid), "the site mosquitto exited");
    TH_CHECK(th_alive(t.cloud_pid), "synccloud exited");
    TH_CHECK(th_alive(t.w_pid), "syncedge shop-12 exited");
    TH_CHECK(th_alive(t.b_pid), "syncedge edge-b exited");
    TH_CHECK(t.r_pid == 0 || th_alive(t.r_pid), "syncedge shop-13 exited");
}

static int has_tables(const char *db)
{
    return th_run("test -f %s", th_shq(db)) == 0 &&
           th_sql_int(db, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN "
                          "('items','notes','_sync_ctl')") == 3;
}

/* Everyone logged in (the bridge at the central broker with its certificate's CN, the site's
 * devices at the site broker with theirs) and the databases are prepared. */
static int started(void *ctx)
{
    (void)ctx;
    const char *clog = th_fmt("%s/mosquitto.log", t.central);
    const char *slog = th_fmt("%s/mosquitto.log", t.site);
    check_alive();
    return file_has(clog, "u'synccloud'") && file_has(clog, "u'edge-b'") &&
           file_has(clog, "u'site-berlin'") && file_has(slog, "u'shop-12'") &&
           th_sql_int(t.w_db, "SELECT count(DISTINCT tbl_name) FROM sqlite_master WHERE "
                              "type='trigger' AND tbl_name IN ('items','notes')") == 2 &&
           has_tables(t.b_db);
}

/* ---- writes and convergence ----------------------------------------------------------- */

/* Runs each statement of sqls on db (one per entry, NULL-terminated) in one transaction and
 * returns the number of rows they changed: each is one captured change. */
static int write_tx(const char *db, const char *const *sqls)
{
    sqlite3 *h = NULL;
    int n = 0;
    TH_CHECK(sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK, "open %s", db);
    sqlite3_busy_timeout(h, 5000);
    TH_CHECK(sqlite3_exec(h, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK, "begin on %s: %s",
             db, sqlite3_errmsg(h));
    for (int i = 0; sqls[i]; i++) {
        TH_CHECK(sqlite3_exec(h, sqls[i], NULL, NULL, NULL) == SQLITE_OK, "%s on %s: %s",
                 sqls[i], db, sqlite3_errmsg(h));
        n += sqlite3_changes(h);
    }
    TH_CHECK(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL) == SQLITE_OK, "commit on %s: %s", db,
             sqlite3_errmsg(h));
    sqlite3_close(h);
    return n;
}

/* Writes a round of changes with item ids from base: inserts in several transactions, then
 * updates, deletes and notes with awkward text keys. Returns the number of changes. */
static int write_round(const char *db, int base, const char *tag)
{
    int n = 0;
    for (int tx = 0; tx < 8; tx++) {
        const char *ins[] = {
            th_fmt("WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 24) "
                   "INSERT INTO items(id, name, qty, price, note, data) SELECT %d + %d * 25 + i, "
                   "'%s ' || i, i * 7 - 50, i / 3.0, CASE WHEN i %% 4 = 0 THEN NULL ELSE "
                   "'Grüße ✓ ' || i END, randomblob(i) FROM s",
                   base, tx, tag),
            NULL};
        n += write_tx(db, ins);
    }
    const char *more[] = {
        th_fmt("UPDATE items SET qty = qty + 1, note = 'upd' WHERE id BETWEEN %d AND %d AND "
               "id %% 3 = 0",
               base, base + 199),
        th_fmt("DELETE FROM items WHERE id BETWEEN %d AND %d AND id %% 10 = 7", base, base + 199),
        th_fmt("WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 29) "
               "INSERT INTO notes(k, body, n) SELECT '%s a/b+c#' || i || ' ü', 'body ' || i, i "
               "FROM s",
               tag),
        NULL};
    n += write_tx(db, more);
    return n;
}

/* The --checksum outputs of the listed commands are identical and name both tables, and the
 * writers' outboxes are empty. */
struct conv {
    const char *cmds[5]; /* --checksum commands, NULL-terminated */
    const char *dbs[3];  /* databases whose _sync_outbox must be empty, NULL-terminated */
    char *last[5];       /* latest outputs, for the failure message */
};

static int converged(void *ctx)
{
    struct conv *c = ctx;
    check_alive();
    for (int i = 0; c->dbs[i]; i++)
        if (th_sql_int(c->dbs[i], "SELECT count(*) FROM _sync_outbox") != 0)
            return 0;
    int same = 1;
    for (int i = 0; c->cmds[i]; i++) {
        free(c->last[i]);
        c->last[i] = th_output(c->cmds[i]);
        if (!c->last[i] || !strstr(c->last[i], "items ") || !strstr(c->last[i], "notes ") ||
            (i > 0 && (!c->last[0] || strcmp(c->last[0], c->last[i]) != 0)))
            same = 0;
    }
    if (!same)
        usleep(200000);
    return same;
}

static void wait_converged(struct conv *c, const char *what)
{
    if (th_wait_until(converged, c, CONVERGE_MS) != 0) {
        for (int i = 0; c->cmds[i]; i++)
            fprintf(stderr, "---- checksum %d ----\n%s", i, c->last[i] ? c->last[i] : "(failed)\n");
        TH_FAIL("%s: no convergence within %d s", what, CONVERGE_MS / 1000);
    }
    printf("bridge: %s: converged:\n%s", what, c->last[0]);
    for (int i = 0; c->cmds[i]; i++) {
        free(c->last[i]);
        c->last[i] = NULL;
    }
}

/* The cloud's counters of a device: it applied exactly `want` changes in `want` records. */
static void check_applied(const char *device, int want)
{
    long long applied = th_sql_int(t.cloud_db, "SELECT applied FROM _sync_devices WHERE device = %Q",
                                   device);
    long long records = th_sql_int(t.cloud_db, "SELECT records FROM _sync_devices WHERE device = %Q",
                                   device);
    TH_CHECK(applied == want && records == want,
             "the cloud applied %lld changes (%lld records) of %s, %d were written", applied,
             records, device, want);
    printf("bridge: the cloud applied all %d changes of %s\n", want, device);
}

/* ---- retained messages at the central broker ------------------------------------------ */

struct retained {
    const char *cmd;  /* mosquitto_sub printing "RETAIN PAYLOAD" of the retained message */
    const char *want; /* substring the output must contain */
    char *last;       /* latest output */
};

static int retained_is(void *ctx)
{
    struct retained *r = ctx;
    free(r->last);
    r->last = NULL;
    th_capture(&r->last, "%s", r->cmd);
    return r->last && strstr(r->last, r->want) != NULL;
}

static void wait_retained(const char *cmd, const char *want, const char *what)
{
    struct retained r = {cmd, want, NULL};
    TH_CHECK(th_wait_until(retained_is, &r, WAIT_MS) == 0, "%s: wanted '%s', got '%s'", what,
             want, r.last ? r.last : "(nothing)");
    printf("bridge: %s: %s", what, r.last);
    free(r.last);
}

/* ---- the test --------------------------------------------------------------------------- */

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    th_init();
    t.dir = th_tmpdir();
    TH_CHECK(t.dir != NULL, "no temp folder");
    t.central = th_fmt("%s/central", t.dir);
    t.pki = th_fmt("%s/ctl", t.dir);
    t.siteetc = th_fmt("%s/siteetc", t.dir);
    t.site = th_fmt("%s/site", t.dir);
    t.schema = SYNC_SOURCE_DIR "/docs/examples/schema.conf";
    t.w_db = th_fmt("%s/shop-12.db", t.dir);
    t.r_db = th_fmt("%s/shop-13.db", t.dir);
    t.b_db = th_fmt("%s/edge-b.db", t.dir);
    t.x_db = th_fmt("%s/shop-14.db", t.dir);
    t.cloud_db = th_fmt("%s/cloud.db", t.dir);
    t.sum_log = th_fmt("%s/checksum.log", t.dir);
    th_register_log(t.sum_log);
    t.cport = th_free_port();
    t.bport = th_free_port();
    t.sport = th_free_port();
    TH_CHECK(t.cport > 0 && t.bport > 0 && t.sport > 0 && t.cport != t.bport &&
                 t.bport != t.sport && t.cport != t.sport,
             "no free ports");
    printf("bridge: folder %s; central :%d (passwords) :%d (bridges), site :%d\n", t.dir,
           t.cport, t.bport, t.sport);

    /* Identities from syncctl, as in production: the site's devices and the site itself. */
    ctl("ca init --cn 'test device CA'");
    ctl("device add demo shop-12");
    ctl("device add demo shop-13");
    ctl("device add demo shop-14");
    ctl("device add demo site-berlin");
    setup_central();
    setup_site();

    t.central_pid = start_broker(th_fmt("%s/mosquitto.conf", t.central),
                                 th_fmt("%s/mosquitto.log", t.central), t.cport);
    TH_CHECK(th_wait_port(t.bport, 10000) == 0, "no bridge listener on %d", t.bport);
    th_register_log(th_fmt("%s/mosquitto.log", t.site));
    t.site_pid = start_broker(th_fmt("%s/mosquitto.conf", t.site),
                              th_fmt("%s/stderr.log", t.site), t.sport);

    /* shop-12's and shop-14's applications had their tables before sync was installed. */
    const char *app_dbs[] = {t.w_db, t.x_db};
    for (int i = 0; i < 2; i++)
        TH_CHECK(th_sql_exec(app_dbs[i], "PRAGMA journal_mode=WAL;"
                                         "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT,"
                                         " qty INTEGER, price REAL, note TEXT, data BLOB);"
                                         "CREATE TABLE notes(k TEXT PRIMARY KEY, body TEXT NOT "
                                         "NULL, n INTEGER)") == 0,
                 "cannot create %s", app_dbs[i]);

    struct args a = cloud_args();
    t.sum_cloud = th_checksum_cmd(a.v, a.n, t.sum_log);
    t.cloud_pid = spawn(th_fmt("%s/synccloud.log", t.dir), &a);
    a = edge_args("edge-b", t.b_db, 0);
    t.sum_b = th_checksum_cmd(a.v, a.n, t.sum_log);
    t.b_pid = spawn(th_fmt("%s/edge-b.log", t.dir), &a);
    a = edge_args("shop-12", t.w_db, 1);
    t.sum_w = th_checksum_cmd(a.v, a.n, t.sum_log);
    t.w_pid = spawn(th_fmt("%s/shop-12.log", t.dir), &a);
    a = edge_args("shop-14", t.x_db, 1);
    t.x_pid = spawn(th_fmt("%s/shop-14.log", t.dir), &a);
    TH_CHECK(th_wait_until(started, NULL, WAIT_MS) == 0,
             "the brokers, the bridge and the daemons did not come up within %d s",
             WAIT_MS / 1000);

    /* 1. Up through the bridge, acks back down; edge-b (central) gets the deltas. */
    int w_changes = write_round(t.w_db, 0, "site");
    printf("bridge: wrote %d changes on shop-12 (site)\n", w_changes);
    struct conv c1 = {{t.sum_w, t.sum_cloud, t.sum_b, NULL}, {t.w_db, NULL}, {NULL}};
    wait_converged(&c1, "shop-12 = cloud = edge-b");
    check_applied("shop-12", w_changes);

    /* 2. A replica at the site that starts from nothing: catch-up pulls through the bridge. */
    a = edge_args("shop-13", t.r_db, 1);
    t.sum_r = th_checksum_cmd(a.v, a.n, t.sum_log);
    t.r_pid = spawn(th_fmt("%s/shop-13.log", t.dir), &a);
    struct conv c2 = {{t.sum_w, t.sum_cloud, t.sum_r, NULL}, {t.w_db, NULL}, {NULL}};
    wait_converged(&c2, "late replica shop-13 (site) = cloud");
    TH_CHECK(th_sql_int(t.r_db, "SELECT count(*) FROM items") > 0, "shop-13 has no items");

    /* shop-14 writes now; its batch must never be applied (checked after step 3). */
    TH_CHECK(th_sql_exec(t.x_db, "INSERT INTO items(id, name) VALUES (900000, 'not allowed')") ==
                 0,
             "insert on shop-14");

    /* 3. Both ways at once: edge-b writes at the central broker, shop-12 at the site. */
    int b_changes = write_round(t.b_db, 100000, "central");
    w_changes += write_round(t.w_db, 200000, "site2");
    struct conv c3 = {{t.sum_w, t.sum_cloud, t.sum_b, t.sum_r}, {t.w_db, t.b_db, NULL}, {NULL}};
    wait_converged(&c3, "shop-12 = cloud = edge-b = shop-13");
    check_applied("shop-12", w_changes);
    check_applied("edge-b", b_changes);
    TH_CHECK(th_sql_int(t.w_db, "SELECT count(*) FROM items WHERE id >= 100000 AND id < 200000") >
                 0,
             "edge-b's rows did not reach shop-12");

    /* 6. shop-14 is connected at the site (its device topics there are allowed) but the central
     * ACL does not let the bridge publish for it: nothing applied, its change still waits. */
    TH_CHECK(th_alive(t.x_pid), "syncedge shop-14 exited");
    TH_CHECK(file_has(th_fmt("%s/mosquitto.log", t.site), "u'shop-14'"),
             "shop-14 did not log in at the site broker");
    TH_CHECK(th_sql_int(t.cloud_db, "SELECT count(*) FROM _sync_devices WHERE device = 'shop-14'") ==
                     0 &&
                 th_sql_int(t.cloud_db, "SELECT count(*) FROM items WHERE id = 900000") == 0,
             "the cloud applied a change of shop-14, which the central ACL does not allow");
    TH_CHECK(th_sql_int(t.x_db, "SELECT count(*) FROM _sync_outbox") == 1,
             "shop-14's change should still wait in its outbox");
    printf("bridge: nothing of shop-14 (not in bridge-site.acl) was applied\n");
    th_stop(t.x_pid, "syncedge shop-14", th_fmt("%s/shop-14.log", t.dir), 1);
    t.x_pid = 0;

    /* 4. Retained state and Last Will, published at the site, read at the central broker. */
    const char *state_cmd = th_fmt(
        "mosquitto_sub -h 127.0.0.1 -p %d --cafile %s -u viewer -P \"$(head -n 1 %s)\" "
        "-i bridge-probe-state -t sync/demo/dev/shop-12/state -C 1 -W 5 -F '%%r %%p' "
        "2>/dev/null",
        t.cport, th_shq(th_fmt("%s/ca.crt", t.central)),
        th_shq(th_fmt("%s/viewer.pass", t.central)));
    wait_retained(state_cmd, "1 {\"device\":\"shop-12\",\"online\":true",
                  "shop-12's retained state at the central broker");
    TH_CHECK(th_kill(t.w_pid, SIGKILL) == 0, "kill -9 shop-12");
    th_wait_exit(t.w_pid, 5000, 1);
    t.w_pid = 0;
    wait_retained(state_cmd, "\"clean\":false", "shop-12's Last Will at the central broker");

    /* 5. The link's own state: "1" while up, the bridge's Last Will "0" once the site dies. */
    const char *link_cmd = th_fmt(
        "mosquitto_sub -h 127.0.0.1 -p %d --cafile %s --cert %s --key %s -i bridge-probe-link "
        "-t bridges/site-berlin/state -C 1 -W 5 -F '%%r %%p' 2>/dev/null",
        t.bport, th_shq(th_fmt("%s/ca.crt", t.central)),
        th_shq(th_fmt("%s/bridge.crt", t.siteetc)), th_shq(th_fmt("%s/bridge.key", t.siteetc)));
    wait_retained(link_cmd, "1 1", "the bridge's notification at the central broker");
    th_stop(t.r_pid, "syncedge shop-13", th_fmt("%s/shop-13.log", t.dir), 1);
    t.r_pid = 0;
    TH_CHECK(th_kill(t.site_pid, SIGKILL) == 0, "kill -9 the site broker");
    th_wait_exit(t.site_pid, 5000, 1);
    t.site_pid = 0;
    wait_retained(link_cmd, "1 0", "the bridge's Last Will at the central broker");

    th_stop(t.b_pid, "syncedge edge-b", th_fmt("%s/edge-b.log", t.dir), 1);
    th_stop(t.cloud_pid, "synccloud", th_fmt("%s/synccloud.log", t.dir), 1);
    th_stop(t.central_pid, "mosquitto", th_fmt("%s/mosquitto.log", t.central), 0);
    printf("bridge: OK\n");
    return 0;
}
