/* test_broker.c - the production broker config keeps devices and tenants apart.
 *
 * A real Mosquitto runs from broker-config/mosquitto.conf itself, rendered into a temp folder
 * (its paths there, its listener on a free port of 127.0.0.1; every other line as shipped).
 * syncctl makes the CA and the devices dev-a, dev-b (tenant t1) and dev-x (tenant t2) and
 * writes the ACL and CRL the broker reads. syncctl refuses to issue a certificate for the cloud
 * consumer's user name (synccloud), so the test signs one with the openssl CLI from syncctl's
 * CA, as docs/broker.md tells an operator to; the broker's server certificate comes from
 * scripts/dev-certs.sh (another CA, as in production). synccloud (tenant t1, SQLite store,
 * device registry) connects with its certificate. Then, with each check next to a control that
 * shows it could fail:
 *   - dev-b publishing a valid batch on dev-a's up topic is dropped by the broker: the cloud
 *     never applies it, while dev-a's own batch is applied and acked;
 *   - dev-b does not receive dev-a's ack (dev-a does), nor anything of tenant t2; dev-x does
 *     not receive t1's deltas, rows, head or events;
 *   - no certificate, a certificate of another CA and an expired certificate cannot connect;
 *   - a suspended device (syncctl device suspend + SIGHUP) cannot connect, and a resumed one can;
 *   - the cloud's second lock (synccloud --registry): a batch for a suspended device injected
 *     with the cloud's own identity (as if the broker had let it through) is dropped unacked
 *     with a `rejected` event saying "suspended" and nothing applied; so are batches of a
 *     device of another tenant and of an unknown device; after resume, the same batch sent
 *     again by the device is applied.
 *
 * Needs mosquitto, mosquitto_pub, mosquitto_sub and openssl. TH_KEEP=1 keeps the folder.
 */
#include "harness.h"
#include "secwire.h"

#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SYNCCTL_BIN
#error "SYNCCTL_BIN (path of the syncctl binary) must be defined by the build"
#endif
#ifndef SYNCCLOUD_BIN
#error "SYNCCLOUD_BIN (path of the synccloud binary) must be defined by the build"
#endif

#define WAIT_MS 30000 /* how long anything may take to show (generous: sanitizer builds) */
#define SEQ_A 100     /* dev-a's batch */
#define SEQ_B 200     /* dev-b's batch, refused while suspended, applied after resume */

static struct {
    const char *dir;      /* the temp folder */
    const char *pki;      /* syncctl's --dir */
    const char *srv;      /* the broker's certificate and its CA (dev-certs.sh) */
    const char *conf;     /* syncctl.conf */
    const char *cloud_db; /* synccloud's store */
    const char *mlog;     /* mosquitto's log_dest file */
    const char *clog;     /* synccloud's output */
    int port;             /* the broker's TLS listener */
    pid_t broker, cloud;
    sw_id a, b, x, cloud_id; /* dev-a, dev-b, dev-x, synccloud */
} t;

/* ---- syncctl and openssl ------------------------------------------------------------------ */

/* Runs syncctl with args (a shell fragment); returns its status, output in *out if wanted. */
static int ctl(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ctl(char **out, const char *fmt, ...)
{
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    TH_CHECK(n > 0 && (size_t)n < sizeof args, "syncctl arguments too long");
    char *o = NULL;
    int st = th_capture(&o, "%s %s 2>&1", th_shq(SYNCCTL_BIN), args);
    printf("$ syncctl %s   -> %d\n%s", args, st, o ? o : "");
    if (out)
        *out = o;
    else
        free(o);
    return st;
}

#define CTL_OK(...) TH_CHECK(ctl(NULL, __VA_ARGS__) == 0, "syncctl failed")

/* Issues a client certificate CN=cn signed by the CA ca_crt/ca_key with the openssl CLI, into
 * DIR/name.crt and DIR/name.key. validity: "-days N" or "-startdate X -enddate Y". */
static void issue(const char *name, const char *cn, const char *ca_crt, const char *ca_key,
                  const char *validity)
{
    const char *w = th_fmt("%s/issue-%s", t.dir, name);
    const char *cnf = th_fmt("[ca]\ndefault_ca = c\n[c]\ndatabase = %s/index.txt\n"
                             "new_certs_dir = %s\nrand_serial = yes\ndefault_md = sha256\n"
                             "policy = p\nunique_subject = no\n[p]\ncommonName = supplied\n"
                             "[ext]\nbasicConstraints = critical, CA:FALSE\n"
                             "keyUsage = critical, digitalSignature\n"
                             "extendedKeyUsage = clientAuth\n",
                             w, w);
    TH_CHECK(th_run("mkdir -p %s && : >%s/index.txt", th_shq(w), th_shq(w)) == 0, "mkdir %s", w);
    sw_write(th_fmt("issue-%s/ca.cnf", name), cnf, strlen(cnf));
    int st = th_run("cd %s && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                    "-keyout %s/%s.key -subj %s -out req.csr >openssl.log 2>&1 && "
                    "openssl ca -batch -config ca.cnf -cert %s -keyfile %s -in req.csr -out "
                    "%s/%s.crt %s -extensions ext -notext >>openssl.log 2>&1",
                    th_shq(w), th_shq(t.dir), name, th_shq(th_fmt("/CN=%s", cn)), th_shq(ca_crt),
                    th_shq(ca_key), th_shq(t.dir), name, validity);
    if (st != 0)
        th_log_tail(th_fmt("%s/openssl.log", w), 30);
    TH_CHECK(st == 0, "openssl could not issue the certificate %s (CN=%s)", name, cn);
}

/* ---- the broker ----------------------------------------------------------------------------- */

/* One rewrite of the production config: every occurrence of from becomes to. whole: from is a
 * whole line. Each must apply at least once, so a change of the shipped file that the test does
 * not follow fails here instead of testing something else. */
struct subst {
    const char *from, *to;
    int whole;
    int used;
};

/* Writes DIR/mosquitto.conf from broker-config/mosquitto.conf. */
static void render_config(void)
{
    struct passwd *pw = getpwuid(geteuid());
    TH_CHECK(pw != NULL, "who am I?");
    struct subst subs[] = {
        /* Started by root, Mosquitto would switch to the user "mosquitto", which cannot read
         * the temp folder: run as the user the test runs as. */
        {"user mosquitto", th_fmt("user %s", pw->pw_name), 1, 0},
        {"listener 8883", th_fmt("listener %d 127.0.0.1", t.port), 1, 0},
        {"/var/lib/syncedge-ctl/", th_fmt("%s/", t.pki), 0, 0},
        {"/etc/mosquitto/certs/", th_fmt("%s/", t.srv), 0, 0},
        {"/var/lib/mosquitto/", th_fmt("%s/persist/", t.dir), 0, 0},
        {"/run/mosquitto/", th_fmt("%s/", t.dir), 0, 0},
        {"/var/log/mosquitto/", th_fmt("%s/", t.dir), 0, 0},
    };
    const size_t nsubs = sizeof subs / sizeof subs[0];
    const char *src = SYNC_SOURCE_DIR "/broker-config/mosquitto.conf";
    FILE *in = fopen(src, "r");
    TH_CHECK(in != NULL, "cannot read %s", src);
    const char *dst = th_fmt("%s/mosquitto.conf", t.dir);
    FILE *out = fopen(dst, "w");
    TH_CHECK(out != NULL, "cannot write %s", dst);
    char line[1024], buf[4096];
    while (fgets(line, sizeof line, in)) {
        line[strcspn(line, "\n")] = '\0';
        snprintf(buf, sizeof buf, "%s", line);
        for (size_t i = 0; i < nsubs; i++) {
            if (subs[i].whole) {
                if (strcmp(buf, subs[i].from) == 0) {
                    snprintf(buf, sizeof buf, "%s", subs[i].to);
                    subs[i].used++;
                }
                continue;
            }
            char *p;
            while ((p = strstr(buf, subs[i].from)) != NULL) {
                char rest[4096];
                snprintf(rest, sizeof rest, "%s", p + strlen(subs[i].from));
                snprintf(p, sizeof buf - (size_t)(p - buf), "%s%s", subs[i].to, rest);
                subs[i].used++;
            }
        }
        /* What the broker reads (not the comments) must point into the temp folder only. */
        if (buf[0] != '#' && (strstr(buf, "/var/") || strstr(buf, "/etc/") || strstr(buf, "/run/")))
            TH_FAIL("%s: the line '%s' still points outside the test folder", src, line);
        fprintf(out, "%s\n", buf);
    }
    fclose(in);
    TH_CHECK(fclose(out) == 0, "cannot write %s", dst);
    for (size_t i = 0; i < nsubs; i++)
        TH_CHECK(subs[i].used > 0, "%s no longer has '%s': update the test's rendering", src,
                 subs[i].from);
    TH_CHECK(th_run("mkdir -p %s/persist", th_shq(t.dir)) == 0, "mkdir persist");
}

static void start_broker(void)
{
    char *argv[] = {"mosquitto", "-c", (char *)th_fmt("%s/mosquitto.conf", t.dir), NULL};
    th_register_log(t.mlog);
    const char *out = th_fmt("%s/mosquitto.out", t.dir);
    th_register_log(out);
    t.broker = th_spawn(out, argv);
    TH_CHECK(t.broker > 0, "cannot start mosquitto");
    TH_CHECK(th_wait_port(t.port, 10000) == 0, "mosquitto does not listen on %d", t.port);
}

/* SIGHUP to the broker we started: it reads the ACL and, on this listener, the CRL again. */
static void reload_broker(void)
{
    TH_CHECK(th_alive(t.broker), "mosquitto is gone");
    TH_CHECK(th_kill(t.broker, SIGHUP) == 0, "cannot signal mosquitto");
}

static int file_has(const char *path, const char *needle)
{
    return th_run("grep -qF -- %s %s 2>/dev/null", th_shq(needle), th_shq(path)) == 0;
}

/* ---- waiting ------------------------------------------------------------------------------- */

struct conn_want {
    const sw_id *id;
    int ok; /* 1: wait until it can connect; 0: until it cannot */
};

static int conn_as_wanted(void *p)
{
    const struct conn_want *c = p;
    return (sw_connect(c->id, "sync/t1/head") == 0) == c->ok;
}

static void expect_connect(const sw_id *id, int ok)
{
    struct conn_want c = {id, ok};
    TH_CHECK(th_wait_until(conn_as_wanted, &c, WAIT_MS) == 0, "%s %s connect after %d ms",
             id->label, ok ? "still cannot" : "can still", WAIT_MS);
}

static int cloud_connected(void *p)
{
    (void)p;
    TH_CHECK(th_alive(t.cloud), "synccloud exited");
    return file_has(t.mlog, "u'synccloud'");
}

/* A message matcher: topic, and for acks the base_seq, for events the device (and first_seq). */
struct want {
    const char *topic;
    uint64_t seq;       /* acks: base_seq; events: first_seq (0: any) */
    const char *device; /* events: the "device" member (NULL: any) */
};

static int is_ack(const sw_msg *m, void *p)
{
    const struct want *w = p;
    sw_ack a;
    return strcmp(m->topic, w->topic) == 0 && sw_ack_parse(m, &a) == 0 && a.base_seq == w->seq;
}

static int is_event(const sw_msg *m, void *p)
{
    const struct want *w = p;
    char dev[128];
    uint64_t first = 0;
    if (strcmp(m->topic, w->topic) != 0)
        return 0;
    if (w->device && (sw_json_str(m, "device", dev, sizeof dev) != 0 || strcmp(dev, w->device)))
        return 0;
    return w->seq == 0 || (sw_json_u64(m, "first_seq", &first) == 0 && first == w->seq);
}

static const sw_msg *wait_msg(sw_watch *w, const char *who, int from, int ack,
                              const struct want *want, int *index)
{
    int i = sw_watch_wait(w, from, ack ? is_ack : is_event, (void *)want, WAIT_MS);
    TH_CHECK(i >= 0, "%s never received %s on %s (seq %llu, device %s)", who,
             ack ? "the ack" : "the event", want->topic, (unsigned long long)want->seq,
             want->device ? want->device : "any");
    if (index)
        *index = i;
    return sw_watch_get(w, i);
}

/* Rows of the cloud's items table with this id and name (0 or 1). */
static long long item(long long id, const char *name)
{
    return th_sql_int(t.cloud_db, "SELECT count(*) FROM items WHERE id = %lld AND name = %Q", id,
                      name);
}

static long long last_seq(const char *device)
{
    return th_sql_int(t.cloud_db,
                      "SELECT coalesce((SELECT last_seq FROM _sync_devices WHERE device = %Q), -1)",
                      device);
}

/* ---- the checks ------------------------------------------------------------------------------ */

/* dev-b publishes a valid batch naming dev-a on dev-a's topic, then dev-a its own batch. The
 * broker forwards one publisher's messages in order, so once dev-a's batch is applied, dev-b's
 * would have been too. dev-b's watcher (subscribed to dev-a's ack) must not get the ack that
 * dev-a's watcher gets. */
static void own_topics(sw_watch *wa, sw_watch *wb)
{
    sync_cbuf b;
    sync_cbuf_init(&b, 0);
    sw_batch_item(&b, "dev-a", 1, 5000, 666, "spoofed-by-b");
    const char *spoof = sw_write("spoof.cbor", b.data, b.len);
    sync_cbuf_reset(&b);
    sw_batch_item(&b, "dev-a", 1, SEQ_A, 1, "from-a");
    const char *good = sw_write("a.cbor", b.data, b.len);
    sync_cbuf_free(&b);

    int na = sw_watch_count(wa), nb = sw_watch_count(wb);
    char *o = NULL;
    int st = sw_pub(&t.b, NULL, "sync/t1/dev/dev-a/up", spoof, "-V 5", &o);
    printf("broker: dev-b publishing on dev-a's up topic: mosquitto_pub exit %d: %s", st,
           o && *o ? o : "(no output)\n");
    free(o);
    TH_CHECK(sw_pub(&t.a, NULL, "sync/t1/dev/dev-a/up", good, "", NULL) == 0,
             "dev-a cannot publish on its own up topic");

    struct want ack = {"sync/t1/dev/dev-a/ack", SEQ_A, NULL};
    sw_ack a;
    int ai;
    TH_CHECK(sw_ack_parse(wait_msg(wa, "dev-a", na, 1, &ack, &ai), &a) == 0 && a.status == 0 &&
                 a.first_code == 0 && a.last_seq == SEQ_A,
             "dev-a's batch was not acked as applied (status %d, code %d)", a.status, a.first_code);
    TH_CHECK(item(1, "from-a") == 1, "dev-a's batch is not in the store");
    TH_CHECK(th_sql_int(t.cloud_db, "SELECT count(*) FROM items WHERE id = 666") == 0,
             "dev-b's batch on dev-a's topic was applied: the broker let it through");
    TH_CHECK(last_seq("dev-a") == SEQ_A, "dev-a's last_seq is %lld, not %d (dev-b's batch got in)",
             last_seq("dev-a"), SEQ_A);
    TH_CHECK(th_sql_int(t.cloud_db, "SELECT count(*) FROM _sync_devices") == 1,
             "the store knows other devices than dev-a");
    TH_CHECK(sw_watch_find(wa, na, ai, "sync/t1/events/rejected") < 0,
             "the cloud saw (and refused) something before dev-a's batch");
    printf("broker: dev-a's batch applied and acked; dev-b's batch on dev-a's topic never "
           "reached the cloud\n");

    /* dev-b reads its tenant's events: the batch event comes after the ack from the same
     * publisher, so by then the ack would have reached dev-b too. */
    struct want ev = {"sync/t1/events/batch", SEQ_A, "dev-a"};
    int bi;
    wait_msg(wb, "dev-b", nb, 0, &ev, &bi);
    TH_CHECK(sw_watch_find(wb, nb, -1, "sync/t1/dev/dev-a/ack") < 0, "dev-b received dev-a's ack");
    TH_CHECK(sw_watch_find(wb, nb, -1, "sync/t1/dev/dev-a/up") < 0, "dev-b received dev-a's batch");
    printf("broker: dev-b got dev-a's batch event but not its ack\n");
}

/* The topics of the messages in out ("TOPIC HEX" lines), space-separated. */
static const char *topics_of(const char *out)
{
    const char *r = "";
    for (const char *p = out; p && *p;) {
        size_t n = strcspn(p, " \n");
        r = th_fmt("%s%s%.*s", r, *r ? " " : "", (int)n, p);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return r;
}

/* Subscribes as id to topics (ending with id's own retained marker) and requires exactly the
 * retained messages listed in want, in that order: what an earlier topic brought comes before
 * the marker, so a readable foreign message would show up within the count. */
static void reads_exactly(const sw_id *id, const char *const *topics, int n, const char *want,
                          int count)
{
    char *o = sw_take(id, topics, n, count, 10);
    const char *got = topics_of(o);
    TH_CHECK(strcmp(got, want) == 0, "%s read [%s], expected [%s]:\n%s", id->label, got, want,
             o ? o : "(nothing)");
    free(o);
}

/* Tenants: dev-x (t2) must not read what the cloud of t1 publishes, dev-b (t1) nothing of t2. */
static void tenants(sw_watch *wa, sw_watch *wb, sw_watch *wx)
{
    /* t2's retained head and a row, as the cloud of t2 would publish them. */
    sw_pub_text(&t.cloud_id, "sync/t2/head", "t2-head", 1);
    sw_pub_text(&t.cloud_id, "sync/t2/rows/items/1", "t2-row", 1);
    /* Each device's own retained state: the end marker of its reads. */
    sw_pub_text(&t.b, "sync/t1/dev/dev-b/state", "marker-b", 1);
    sw_pub_text(&t.x, "sync/t2/dev/dev-x/state", "marker-x", 1);

    /* Each reads its own tenant's head and rows, wildcards across tenants included, and nothing
     * of the other tenant. */
    const char *b_topics[] = {"sync/t2/head", "sync/t2/rows/#", "sync/t2/#",
                              "sync/+/head",  "sync/+/rows/#",  "sync/t1/dev/dev-b/state"};
    reads_exactly(&t.b, b_topics, 6, "sync/t1/head sync/t1/rows/items/1 sync/t1/dev/dev-b/state",
                  3);
    const char *x_topics[] = {
        "sync/t1/head", "sync/t1/rows/#", "sync/t1/delta/#",       "sync/t1/#",
        "sync/+/head",  "sync/+/rows/#",  "sync/t1/dev/dev-a/ack", "sync/t2/dev/dev-x/state"};
    reads_exactly(&t.x, x_topics, 8, "sync/t2/head sync/t2/rows/items/1 sync/t2/dev/dev-x/state",
                  3);

    /* Live messages: dev-x's watcher (t1's delta, rows, head, events and acks) saw none of
     * what the cloud published for dev-a's batch. A marker on t2 published after dev-a's
     * watcher got all of them comes to dev-x after anything of those it could read. */
    int n = sw_watch_count(wa);
    TH_CHECK(sw_watch_find(wa, 0, n, "sync/t1/events/batch") >= 0, "dev-a saw no t1 event");
    sw_pub_text(&t.cloud_id, "sync/t2/events/marker", "marker", 0);
    struct want mk = {"sync/t2/events/marker", 0, NULL};
    int mi;
    wait_msg(wx, "dev-x", 0, 0, &mk, &mi);
    int leak = sw_watch_find_prefix(wx, 0, mi, "sync/t1/");
    TH_CHECK(leak < 0, "dev-x received a message of tenant t1 on %s",
             sw_watch_get(wx, leak)->topic);
    /* dev-b's watcher (subscribed to sync/t2/#) got nothing of t2's retained and live
     * messages: a t1 marker published after them comes after anything it could read. */
    sw_pub_text(&t.cloud_id, "sync/t1/events/marker", "marker", 0);
    struct want mk1 = {"sync/t1/events/marker", 0, NULL};
    wait_msg(wb, "dev-b", 0, 0, &mk1, &mi);
    leak = sw_watch_find_prefix(wb, 0, mi, "sync/t2/");
    TH_CHECK(leak < 0, "dev-b received a message of tenant t2 on %s",
             sw_watch_get(wb, leak)->topic);
    printf("broker: tenants t1 and t2 read only their own trees\n");
}

/* Who cannot connect at all; each next to the same attempt that works. */
static void logins(void)
{
    TH_CHECK(sw_connect(&t.a, "sync/t1/head") == 0, "dev-a cannot connect with its certificate");
    sw_id none = t.a;
    none.label = "no-cert";
    none.cert = none.key = NULL;
    TH_CHECK(sw_connect(&none, "sync/t1/head") != 0, "a client without a certificate got in");
    sw_id pw = none;
    pw.label = "password-only";
    pw.user = "dev-a";
    pw.pass = "guess";
    TH_CHECK(sw_connect(&pw, "sync/t1/head") != 0, "a password login got in without certificate");
    sw_id rogue = t.a;
    rogue.label = "other-CA";
    rogue.cert = th_fmt("%s/rogue.crt", t.dir);
    rogue.key = th_fmt("%s/rogue.key", t.dir);
    TH_CHECK(sw_connect(&rogue, "sync/t1/head") != 0,
             "a certificate with CN=dev-a from another CA got in");
    sw_id old = t.a;
    old.label = "expired";
    old.cert = th_fmt("%s/expired.crt", t.dir);
    old.key = th_fmt("%s/expired.key", t.dir);
    TH_CHECK(sw_connect(&old, "sync/t1/head") != 0, "an expired certificate got in");
    printf("broker: no certificate, another CA's and an expired one are refused\n");
}

/* The cloud's registry check: batches the broker should never have let through, injected with
 * the cloud's own identity, are dropped without an ack and reported. */
static void injected(sw_watch *wc, const char *dev, const char *file, int64_t id, const char *why)
{
    int n = sw_watch_count(wc);
    const char *topic = th_fmt("sync/t1/dev/%s/up", dev);
    TH_CHECK(sw_pub(&t.cloud_id, "inject", topic, file, "", NULL) == 0, "cannot inject on %s",
             topic);
    struct want ev = {"sync/t1/events/rejected", 0, dev};
    int ei;
    const sw_msg *m = wait_msg(wc, "the cloud's watcher", n, 0, &ev, &ei);
    char reason[512];
    TH_CHECK(sw_json_str(m, "reason", reason, sizeof reason) == 0 && strstr(reason, why),
             "the rejected event for %s does not say '%s': %s", dev, why, (const char *)m->data);
    TH_CHECK(strstr((const char *)m->data, "\"acked\":false"), "the event does not say unacked: %s",
             (const char *)m->data);
    /* Acks are published before the events of the same transaction. */
    TH_CHECK(sw_watch_find(wc, n, ei, th_fmt("sync/t1/dev/%s/ack", dev)) < 0,
             "the cloud acked a batch of %s", dev);
    TH_CHECK(th_sql_int(t.cloud_db, "SELECT count(*) FROM items WHERE id = %lld", (long long)id) ==
                 0,
             "the batch of %s was applied", dev);
    TH_CHECK(last_seq(dev) == -1, "the store has a _sync_devices row for %s", dev);
    TH_CHECK(th_alive(t.cloud), "synccloud exited");
    printf("broker: the cloud dropped an injected batch of %s unacked: %s\n", dev, reason);
}

static void suspend_resume(sw_watch *wa, sw_watch *wb, sw_watch *wc)
{
    sync_cbuf b;
    sync_cbuf_init(&b, 0);
    sw_batch_item(&b, "dev-b", 1, SEQ_B, 777, "from-b");
    const char *bfile = sw_write("b.cbor", b.data, b.len);
    sync_cbuf_reset(&b);
    sw_batch_item(&b, "dev-x", 1, 300, 778, "from-x");
    const char *xfile = sw_write("x.cbor", b.data, b.len);
    sync_cbuf_reset(&b);
    sw_batch_item(&b, "ghost", 1, 400, 779, "from-ghost");
    const char *gfile = sw_write("ghost.cbor", b.data, b.len);
    sync_cbuf_free(&b);

    TH_CHECK(sw_connect(&t.b, "sync/t1/head") == 0, "dev-b cannot connect before suspension");
    CTL_OK("-c %s device suspend dev-b", th_shq(t.conf));
    reload_broker();
    expect_connect(&t.b, 0);
    TH_CHECK(sw_connect(&t.a, "sync/t1/head") == 0, "dev-a was locked out with dev-b");
    printf("broker: suspended dev-b cannot connect after SIGHUP\n");

    int nb = sw_watch_count(wb);
    injected(wc, "dev-b", bfile, 777, "suspended");
    /* dev-b's watcher connected before the suspension: still connected, it gets nothing more
     * (its ACL lines are gone). dev-a's watcher got the same event; give the broker a moment to
     * have delivered it to dev-b too, were it allowed (nothing dev-b may still read could serve
     * as a marker, so this one check waits instead: it can pass wrongly on a very slow machine,
     * never fail wrongly). */
    struct want ev = {"sync/t1/events/rejected", 0, "dev-b"};
    wait_msg(wa, "dev-a", 0, 0, &ev, NULL);
    usleep(500000);
    TH_CHECK(sw_watch_count(wb) == nb, "the suspended dev-b still receives its tenant's events");
    printf("broker: dev-b's connection from before the suspension %s, but receives nothing\n",
           th_alive(sw_watch_pid(wb)) ? "stays open" : "was closed");

    injected(wc, "dev-x", xfile, 778, "not registered for tenant 't1'");
    injected(wc, "ghost", gfile, 779, "not registered");
    TH_CHECK(file_has(t.clog, "dropped a batch from dev-b without acknowledging it"),
             "synccloud did not log the dropped batch");

    CTL_OK("-c %s device resume dev-b", th_shq(t.conf));
    reload_broker();
    expect_connect(&t.b, 1);
    printf("broker: resumed dev-b connects again\n");
    /* The edge resends what was never acked: the same bytes, the same seq. */
    int n = sw_watch_count(wc);
    TH_CHECK(sw_pub(&t.b, NULL, "sync/t1/dev/dev-b/up", bfile, "", NULL) == 0,
             "dev-b cannot publish after resume");
    struct want ack = {"sync/t1/dev/dev-b/ack", SEQ_B, NULL};
    sw_ack a;
    TH_CHECK(sw_ack_parse(wait_msg(wc, "the cloud's watcher", n, 1, &ack, NULL), &a) == 0 &&
                 a.status == 0 && a.first_code == 0,
             "dev-b's resent batch was not applied (status %d, code %d, %s)", a.status,
             a.first_code, a.reason);
    TH_CHECK(item(777, "from-b") == 1 && last_seq("dev-b") == SEQ_B,
             "dev-b's resent batch is not in the store");
    printf("broker: after resume the same batch is applied\n");
}

/* ---- the test -------------------------------------------------------------------------------- */

static sw_id cert_id(const char *label, const char *crt, const char *key)
{
    sw_id id = {label, t.port, th_fmt("%s/ca.crt", t.srv), NULL, NULL, crt, key};
    return id;
}

static sw_id device_id(const char *dev)
{
    return cert_id(dev, th_fmt("%s/devices/%s/device.crt", t.pki, dev),
                   th_fmt("%s/devices/%s/device.key", t.pki, dev));
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    th_init();
    t.dir = th_tmpdir();
    TH_CHECK(t.dir != NULL, "no temp folder");
    t.pki = th_fmt("%s/pki", t.dir);
    t.srv = th_fmt("%s/srv", t.dir);
    t.conf = th_fmt("%s/syncctl.conf", t.dir);
    t.cloud_db = th_fmt("%s/cloud.db", t.dir);
    t.mlog = th_fmt("%s/mosquitto.log", t.dir);
    t.clog = th_fmt("%s/synccloud.log", t.dir);
    t.port = th_free_port();
    TH_CHECK(t.port > 0, "no free port");
    sw_set_client_log(th_fmt("%s/clients.log", t.dir));
    TH_CHECK(th_run("{ command -v mosquitto && command -v mosquitto_sub && command -v "
                    "mosquitto_pub && command -v openssl; } >/dev/null") == 0,
             "mosquitto, its clients and openssl are needed");
    printf("broker: folder %s, port %d\n", t.dir, t.port);

    /* Identities: syncctl's CA and devices; the cloud's certificate from the same CA. */
    FILE *f = fopen(t.conf, "w");
    TH_CHECK(f != NULL, "cannot write %s", t.conf);
    fprintf(f, "dir %s\ncloud_user synccloud\n", t.pki);
    fclose(f);
    CTL_OK("-c %s ca init --cn 'broker test CA'", th_shq(t.conf));
    CTL_OK("-c %s device add t1 dev-a", th_shq(t.conf));
    CTL_OK("-c %s device add t1 dev-b", th_shq(t.conf));
    CTL_OK("-c %s device add t2 dev-x", th_shq(t.conf));
    char *o = NULL;
    TH_CHECK(ctl(&o, "-c %s device add t1 synccloud", th_shq(t.conf)) != 0 &&
                 strstr(o, "cloud's broker user"),
             "syncctl must refuse to make the cloud user a device");
    free(o);
    const char *ca_crt = th_fmt("%s/ca.crt", t.pki), *ca_key = th_fmt("%s/ca.key", t.pki);
    issue("cloud", "synccloud", ca_crt, ca_key, "-days 30");
    issue("expired", "dev-a", ca_crt, ca_key,
          "-startdate 20200101000000Z -enddate 20200201000000Z");
    TH_CHECK(th_run("bash %s/scripts/dev-certs.sh %s >/dev/null", th_shq(SYNC_SOURCE_DIR),
                    th_shq(t.srv)) == 0,
             "dev-certs.sh failed");
    issue("rogue", "dev-a", th_fmt("%s/ca.crt", t.srv), th_fmt("%s/ca.key", t.srv), "-days 30");
    /* The fixtures are what the checks below take them for. */
    o = NULL;
    TH_CHECK(th_capture(&o,
                        "openssl verify -CAfile %s %s/cloud.crt %s/expired.crt %s/rogue.crt 2>&1",
                        th_shq(ca_crt), th_shq(t.dir), th_shq(t.dir), th_shq(t.dir)) != 0 &&
                 o && strstr(o, "cloud.crt: OK") && strstr(o, "certificate has expired") &&
                 !strstr(o, "rogue.crt: OK") && !strstr(o, "expired.crt: OK"),
             "openssl verify does not see the cloud's certificate valid, the expired one expired "
             "and the other CA's foreign:\n%s",
             o ? o : "");
    free(o);
    CTL_OK("-c %s acl generate", th_shq(t.conf));

    t.a = device_id("dev-a");
    t.b = device_id("dev-b");
    t.x = device_id("dev-x");
    t.cloud_id = cert_id("cloud", th_fmt("%s/cloud.crt", t.dir), th_fmt("%s/cloud.key", t.dir));

    render_config();
    start_broker();

    char *cloud_argv[] = {SYNCCLOUD_BIN,
                          "--database",
                          (char *)t.cloud_db,
                          "--schema",
                          SYNC_SOURCE_DIR "/docs/examples/schema.conf",
                          "--tenant",
                          "t1",
                          "--broker",
                          (char *)th_fmt("ssl://127.0.0.1:%d", t.port),
                          "--cafile",
                          (char *)th_fmt("%s/ca.crt", t.srv),
                          "--certfile",
                          (char *)th_fmt("%s/cloud.crt", t.dir),
                          "--keyfile",
                          (char *)th_fmt("%s/cloud.key", t.dir),
                          "--registry",
                          (char *)th_fmt("%s/registry.db", t.pki),
                          "--log-level",
                          "info",
                          "--log-dest",
                          "stderr",
                          NULL};
    th_register_log(t.clog);
    t.cloud = th_spawn(t.clog, cloud_argv);
    TH_CHECK(t.cloud > 0, "cannot start synccloud");
    TH_CHECK(th_wait_until(cloud_connected, NULL, WAIT_MS) == 0,
             "synccloud did not log in with its certificate");
    TH_CHECK(file_has(t.clog, "devices checked against the registry"),
             "synccloud does not check devices against the registry");
    /* Its retained head comes once it is connected and subscribed. */
    sw_wait_retained(&t.a, "sync/t1/head", WAIT_MS);

    /* Watchers. dev-b's subscribes to dev-a's topics and tenant t2 too, dev-x's to t1's
     * downstream tree: those subscriptions must bring nothing. */
    const char *wa_t[] = {"sync/t1/dev/dev-a/ack", "sync/t1/events/#"};
    const char *wb_t[] = {"sync/t1/dev/dev-a/ack", "sync/t1/dev/dev-a/up", "sync/t2/#",
                          "sync/t1/events/#"};
    const char *wx_t[] = {"sync/t1/delta/#",  "sync/t1/rows/#",    "sync/t1/head",
                          "sync/t1/events/#", "sync/t1/dev/+/ack", "sync/t2/events/#"};
    const char *wc_t[] = {"sync/t1/dev/+/ack", "sync/t1/events/#"};
    sw_watch *wa = sw_watch_start(&t.a, "dev-a", wa_t, 2, "sync/t1/dev/dev-a/state");
    sw_watch *wb = sw_watch_start(&t.b, "dev-b", wb_t, 4, "sync/t1/dev/dev-b/state");
    sw_watch *wx = sw_watch_start(&t.x, "dev-x", wx_t, 6, "sync/t2/dev/dev-x/state");
    sw_watch *wc = sw_watch_start(&t.cloud_id, "cloud", wc_t, 2, "sync/test/probe");

    own_topics(wa, wb);
    tenants(wa, wb, wx);
    logins();
    suspend_resume(wa, wb, wc);

    TH_CHECK(th_alive(t.broker), "mosquitto exited");
    sw_watch_stop(wa);
    sw_watch_stop(wb);
    sw_watch_stop(wx);
    sw_watch_stop(wc);
    th_stop(t.cloud, "synccloud", t.clog, 1);
    th_stop(t.broker, "mosquitto", t.mlog, 0);
    printf("broker: OK\n");
    return 0;
}
