/* secwire.c - broker clients, watchers and message decoding for the security tests (see
 * secwire.h). */
#include "secwire.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "sync/err.h"
#include "sync/record.h"

#define SW_MAX_ARGS 48
#define SW_PROBE_S 30 /* how long a watcher may take to connect and subscribe */

struct sw_watch {
    const char *label; /* for messages */
    const char *log;   /* the mosquitto_sub output */
    pid_t pid;         /* the mosquitto_sub */
    size_t parsed;     /* bytes of the log turned into messages */
    sw_msg *msgs;      /* messages received, in order */
    int n, cap;        /* used and allocated entries of msgs */
};

static const char *client_log = "/dev/null";

void sw_set_client_log(const char *path)
{
    client_log = path;
    th_register_log(path);
}

const char *sw_conn(const sw_id *id)
{
    const char *s = th_fmt("-h 127.0.0.1 -p %d --cafile %s", id->port, th_shq(id->cafile));
    if (id->user)
        s = th_fmt("%s -u %s -P %s", s, th_shq(id->user), th_shq(id->pass ? id->pass : ""));
    if (id->cert)
        s = th_fmt("%s --cert %s --key %s", s, th_shq(id->cert), th_shq(id->key));
    return s;
}

const char *sw_write(const char *name, const void *p, size_t n)
{
    const char *path = th_fmt("%s/%s", th_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    TH_CHECK(f != NULL, "cannot write %s", path);
    TH_CHECK(n == 0 || fwrite(p, 1, n, f) == n, "cannot write %s", path);
    TH_CHECK(fclose(f) == 0, "cannot write %s", path);
    return path;
}

/* Appends text to the client log, each line prefixed with who ran what. */
static void note(const char *who, const char *what, const char *text)
{
    FILE *f = fopen(client_log, "a");
    if (!f)
        return;
    fprintf(f, "[%s %s] %s%s", who, what, text,
            !*text || text[strlen(text) - 1] != '\n' ? "\n" : "");
    fclose(f);
}

int sw_pub(const sw_id *id, const char *cid, const char *topic, const char *file, const char *extra,
           char **out)
{
    char *o = NULL;
    int st = th_capture(&o, "mosquitto_pub %s %s -q 1 -t %s %s %s 2>&1", sw_conn(id),
                        cid ? th_fmt("-i %s", th_shq(cid)) : "", th_shq(topic),
                        file ? th_fmt("-f %s", th_shq(file)) : "-n", extra ? extra : "");
    note(id->label, th_fmt("pub %s -> %d", topic, st), o ? o : "");
    if (out)
        *out = o;
    else
        free(o);
    return st;
}

void sw_pub_text(const sw_id *id, const char *topic, const char *msg, int retain)
{
    const char *f = sw_write("pub-text.tmp", msg, strlen(msg));
    int st = sw_pub(id, NULL, topic, f, retain ? "-r" : "", NULL);
    TH_CHECK(st == 0, "%s cannot publish on %s (mosquitto_pub exit %d)", id->label, topic, st);
}

int sw_connect(const sw_id *id, const char *topic)
{
    char *o = NULL;
    int st = th_capture(&o, "mosquitto_sub %s -t %s -E -W 5 2>&1", sw_conn(id), th_shq(topic));
    note(id->label, th_fmt("connect -> %d", st), o ? o : "");
    free(o);
    return st;
}

char *sw_take(const sw_id *id, const char *const *topics, int n, int count, int timeout_s)
{
    const char *t = "";
    for (int i = 0; i < n; i++)
        t = th_fmt("%s -t %s", t, th_shq(topics[i]));
    char *o = NULL;
    int st = th_capture(&o, "mosquitto_sub %s -q 1 -C %d -W %d -F '%%t %%x' %s 2>>%s", sw_conn(id),
                        count, timeout_s, t, th_shq(client_log));
    note(id->label, th_fmt("take %d of%s -> %d", count, t, st), o ? o : "(nothing)");
    if (o && o[0] == '\0') {
        free(o);
        o = NULL;
    }
    return o;
}

struct retained {
    const sw_id *id;
    const char *topic;
};

static int has_retained(void *p)
{
    const struct retained *r = p;
    char *o = sw_take(r->id, &r->topic, 1, 1, 2);
    int got = o != NULL;
    free(o);
    return got;
}

void sw_wait_retained(const sw_id *id, const char *topic, int timeout_ms)
{
    struct retained r = {id, topic};
    TH_CHECK(th_wait_until(has_retained, &r, timeout_ms) == 0,
             "%s finds no retained message on %s after %d ms", id->label, topic, timeout_ms);
}

/* ---- watchers ---------------------------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Turns one log line "TOPIC HEX" into a message; other lines (mosquitto_sub's own warnings)
 * are skipped. */
static void parse_line(sw_watch *w, const char *line, size_t len)
{
    const char *sp = memchr(line, ' ', len);
    if (!sp || sp == line || (size_t)(sp - line) >= sizeof w->msgs[0].topic ||
        strncmp(line, "sync/", 5) != 0)
        return;
    const char *hex = sp + 1;
    size_t hl = len - (size_t)(hex - line);
    if (hl % 2)
        return;
    for (size_t i = 0; i < hl; i++)
        if (hexval((unsigned char)hex[i]) < 0)
            return;
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        sw_msg *nm = realloc(w->msgs, (size_t)cap * sizeof *nm);
        TH_CHECK(nm != NULL, "out of memory");
        w->msgs = nm;
        w->cap = cap;
    }
    sw_msg *m = &w->msgs[w->n];
    memcpy(m->topic, line, (size_t)(sp - line));
    m->topic[sp - line] = '\0';
    m->len = hl / 2;
    m->data = malloc(m->len + 1);
    TH_CHECK(m->data != NULL, "out of memory");
    for (size_t i = 0; i < m->len; i++)
        m->data[i] = (uint8_t)(hexval((unsigned char)hex[2 * i]) << 4 |
                               hexval((unsigned char)hex[2 * i + 1]));
    m->data[m->len] = '\0';
    w->n++;
}

/* Parses the complete lines the log has gained since the last call. */
static void refresh(sw_watch *w)
{
    FILE *f = fopen(w->log, "rb");
    if (!f)
        return;
    if (fseek(f, (long)w->parsed, SEEK_SET) != 0) {
        fclose(f);
        return;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    char chunk[65536];
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + got > cap) {
            cap = 2 * (len + got);
            char *nb = realloc(buf, cap);
            TH_CHECK(nb != NULL, "out of memory");
            buf = nb;
        }
        memcpy(buf + len, chunk, got);
        len += got;
    }
    fclose(f);
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        parse_line(w, buf + start, i - start);
        start = i + 1;
    }
    w->parsed += start; /* a partial last line is read again next time */
    free(buf);
}

int sw_watch_count(sw_watch *w)
{
    refresh(w);
    return w->n;
}

const sw_msg *sw_watch_get(sw_watch *w, int i)
{
    TH_CHECK(i >= 0 && i < w->n, "watcher %s has no message %d", w->label, i);
    return &w->msgs[i];
}

int sw_watch_find(sw_watch *w, int from, int to, const char *topic)
{
    refresh(w);
    if (to < 0 || to > w->n)
        to = w->n;
    for (int i = from; i < to; i++)
        if (strcmp(w->msgs[i].topic, topic) == 0)
            return i;
    return -1;
}

int sw_watch_find_prefix(sw_watch *w, int from, int to, const char *prefix)
{
    refresh(w);
    if (to < 0 || to > w->n)
        to = w->n;
    for (int i = from; i < to; i++)
        if (strncmp(w->msgs[i].topic, prefix, strlen(prefix)) == 0)
            return i;
    return -1;
}

struct wait_ctx {
    sw_watch *w;
    int from;
    int (*match)(const sw_msg *, void *);
    void *ctx;
    int found;
};

static int wait_pred(void *p)
{
    struct wait_ctx *c = p;
    refresh(c->w);
    for (int i = c->from; i < c->w->n; i++) {
        if (c->match(&c->w->msgs[i], c->ctx)) {
            c->found = i;
            return 1;
        }
    }
    c->from = c->w->n; /* those did not match: look only at new ones next time */
    return 0;
}

int sw_watch_wait(sw_watch *w, int from, int (*match)(const sw_msg *m, void *ctx), void *ctx,
                  int timeout_ms)
{
    struct wait_ctx c = {w, from, match, ctx, -1};
    if (th_wait_until(wait_pred, &c, timeout_ms) != 0)
        return -1;
    return c.found;
}

static int is_probe(const sw_msg *m, void *ctx)
{
    return strcmp(m->topic, ((const char **)ctx)[0]) == 0 &&
           strcmp((const char *)m->data, ((const char **)ctx)[1]) == 0;
}

sw_watch *sw_watch_start(const sw_id *id, const char *label, const char *const *topics, int n,
                         const char *probe)
{
    sw_watch *w = calloc(1, sizeof *w);
    TH_CHECK(w != NULL, "out of memory");
    w->label = label;
    w->log = th_fmt("%s/watch-%s.log", th_tmpdir(), label);
    char *argv[SW_MAX_ARGS];
    int a = 0;
    argv[a++] = "mosquitto_sub";
    argv[a++] = "-h";
    argv[a++] = "127.0.0.1";
    argv[a++] = "-p";
    argv[a++] = (char *)th_fmt("%d", id->port);
    argv[a++] = "--cafile";
    argv[a++] = (char *)id->cafile;
    if (id->user) {
        argv[a++] = "-u";
        argv[a++] = (char *)id->user;
        argv[a++] = "-P";
        argv[a++] = (char *)(id->pass ? id->pass : "");
    }
    if (id->cert) {
        argv[a++] = "--cert";
        argv[a++] = (char *)id->cert;
        argv[a++] = "--key";
        argv[a++] = (char *)id->key;
    }
    argv[a++] = "-i";
    argv[a++] = (char *)th_fmt("watch-%s", label);
    argv[a++] = "-q";
    argv[a++] = "1";
    /* One line per message: the topic and the payload in hex (acks are binary). */
    argv[a++] = "-F";
    argv[a++] = "%t %x";
    for (int i = 0; i < n; i++) {
        TH_CHECK(a + 5 < SW_MAX_ARGS, "too many topics for a watcher");
        argv[a++] = "-t";
        argv[a++] = (char *)topics[i];
    }
    argv[a++] = "-t";
    argv[a++] = (char *)probe;
    argv[a] = NULL;
    th_register_log(w->log);
    w->pid = th_spawn(w->log, argv);
    TH_CHECK(w->pid > 0, "cannot start the watcher %s", label);
    /* Subscribed once a probe published after the start comes back. */
    double until = th_now() + SW_PROBE_S;
    for (int k = 0;; k++) {
        TH_CHECK(th_alive(w->pid), "the watcher %s exited (see its log)", label);
        TH_CHECK(th_now() < until, "the watcher %s is not subscribed after %d s", label,
                 SW_PROBE_S);
        const char *text = th_fmt("probe %s %d", label, k);
        const char *f = sw_write("probe.tmp", text, strlen(text));
        sw_pub(id, th_fmt("probe-%s", label), probe, f, "", NULL);
        const char *ctx[2] = {probe, text};
        if (sw_watch_wait(w, 0, is_probe, (void *)ctx, 1000) >= 0)
            return w;
    }
}

pid_t sw_watch_pid(const sw_watch *w)
{
    return w->pid;
}

void sw_watch_stop(sw_watch *w)
{
    if (!w)
        return;
    if (th_alive(w->pid))
        th_kill(w->pid, SIGTERM);
    th_wait_exit(w->pid, 5000, 1);
    for (int i = 0; i < w->n; i++)
        free(w->msgs[i].data);
    free(w->msgs);
    free(w);
}

/* ---- decoding ---------------------------------------------------------------------------- */

static int ack_hdr(void *ctx, const sync_ack_hdr *h)
{
    sw_ack *a = ctx;
    a->base_seq = h->base_seq;
    a->last_seq = h->last_seq;
    a->status = (int)h->status;
    a->nresults = h->nresults;
    size_t n = h->reason_len < sizeof a->reason - 1 ? h->reason_len : sizeof a->reason - 1;
    if (n)
        memcpy(a->reason, h->reason, n);
    a->reason[n] = '\0';
    return 0;
}

static int ack_result(void *ctx, const sync_ack_result *r)
{
    sw_ack *a = ctx;
    if (a->first_code < 0)
        a->first_code = (int)r->result;
    return 0;
}

int sw_ack_parse(const sw_msg *m, sw_ack *a)
{
    memset(a, 0, sizeof *a);
    a->first_code = -1;
    char err[256];
    return sync_ack_decode(m->data, m->len, NULL, ack_hdr, ack_result, a, err, sizeof err) ==
                   SYNC_OK
               ? 0
               : -1;
}

/* Start of the value of member key in the JSON text, or NULL. */
static const char *json_member(const sw_msg *m, const char *key)
{
    const char *pat = th_fmt("\"%s\":", key);
    const char *p = strstr((const char *)m->data, pat);
    return p ? p + strlen(pat) : NULL;
}

int sw_json_str(const sw_msg *m, const char *key, char *out, size_t n)
{
    const char *p = json_member(m, key);
    if (!p || *p != '"' || n == 0)
        return -1;
    size_t o = 0;
    for (p++; *p && *p != '"'; p++) {
        char c = *p;
        if (c == '\\') {
            p++;
            switch (*p) {
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case 'b':
                c = '\b';
                break;
            case 'f':
                c = '\f';
                break;
            case 'u': {
                int v = 0;
                for (int i = 1; i <= 4; i++) {
                    int h = p[i] ? hexval((unsigned char)p[i]) : -1;
                    if (h < 0)
                        return -1;
                    v = v * 16 + h;
                }
                p += 4;
                c = v < 0x80 ? (char)v : '?';
                break;
            }
            case '\0':
                return -1;
            default:
                c = *p; /* \" \\ \/ */
            }
        }
        if (o + 1 < n)
            out[o++] = c;
    }
    out[o] = '\0';
    return *p == '"' ? 0 : -1;
}

int sw_json_u64(const sw_msg *m, const char *key, uint64_t *v)
{
    const char *p = json_member(m, key);
    if (!p || *p < '0' || *p > '9')
        return -1;
    *v = strtoull(p, NULL, 10);
    return 0;
}

/* ---- batches ----------------------------------------------------------------------------- */

void sw_batch_item(sync_cbuf *b, const char *dev, uint32_t ver, uint64_t seq, int64_t id,
                   const char *name)
{
    static sync_record r; /* large: keep it off the stack */
    sync_batch_hdr h = {
        .schema_version = ver,
        .device = dev,
        .device_len = strlen(dev),
        .base_seq = seq,
        .nrecords = 1,
    };
    memset(&r, 0, sizeof r);
    r.table = "items";
    r.table_len = 5;
    r.key.type = SYNC_INT;
    r.key.u.i = id;
    r.op = SYNC_OP_INSERT;
    r.hlc = 1000 + seq;
    r.seq = seq;
    r.ncols = 2;
    r.cols[0].name = "id";
    r.cols[0].name_len = 2;
    r.cols[0].v = r.key;
    r.cols[1].name = "name";
    r.cols[1].name_len = 4;
    r.cols[1].v.type = SYNC_TEXT;
    r.cols[1].v.u.b.p = (const uint8_t *)name;
    r.cols[1].v.u.b.n = strlen(name);
    sync_batch_encode_hdr(b, &h);
    sync_record_encode(b, &r, seq);
    TH_CHECK(b->err == SYNC_OK, "encoding a batch failed (%d)", b->err);
}
