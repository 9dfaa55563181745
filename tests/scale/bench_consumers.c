/* bench_consumers.c - how many changes per second K synccloud consumers apply from a backlog.
 *
 * Usage: bench_consumers --consumers K --store pg|sqlite --edges N --changes M
 *                        [--group yes|no] [--cloud-arg ARG]... [--edge-arg ARG]...
 *
 * Method (real processes, see rig.h): the development Mosquitto, the store (a throwaway
 * PostgreSQL server, or an SQLite file), K consumers and N edges (pure publishers: --replica
 * false). Two or more consumers form one shared group (--shared-group bench); one consumer
 * runs alone as it would be deployed, unless --group yes puts it in a group of one (which
 * costs what a group costs, e.g. the re-reading of every published row, cloud/rowcheck.h).
 * SQLite takes one consumer and no group.
 *   1. The K consumers start once, subscribe, create the store's tables, and stop (SIGTERM):
 *      the broker keeps their sessions (--session-expiry 600: a shared group's members keep
 *      none by default), so what the edges publish next waits there for them.
 *   2. The edges start and their applications write M changes each (the rig's mix of inserts,
 *      updates, deletes and re-inserts, transactions of 1..20 changes) while no consumer runs:
 *      each edge publishes its first batch, which waits at the broker, and the rest waits in its
 *      outbox. The edges get --ack-timeout 600, so nothing is sent twice while they wait.
 *   3. The clock starts, the K consumers start again, and the clock stops when the store's
 *      _sync_devices.applied adds up to N * M (polled every 50 ms).
 * Everything else is at its default unless --cloud-arg / --edge-arg add arguments (e.g.
 * --cloud-arg --events --cloud-arg batches): sync_full true (every commit fsynced before the
 * acks), events "changes" (one JSON event per applied change), publish_rows true,
 * max_tx_batches 64; on the edges batch_max 500, one batch in flight. PostgreSQL runs with
 * fsync on.
 *
 * Prints a human-readable summary (where the CPU time went, what the consumers' PostgreSQL
 * sessions were doing, sampled every 50 ms, and how the batches were spread) and the line
 *   bench=consumers store=S consumers=K edges=N changes=M seconds=T changes_per_s=R total=N*M
 *   group=yes|no
 * (one line; changes= is per edge, as given; total= is what was applied).
 * Exit status 0, or 1 on any failure, or 77 without the PostgreSQL binaries (store pg).
 */
#include "harness.h"
#include "rig.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BC_POLL_MS 50        /* th_wait_until's period: applied count and session samples */
#define BC_TIMEOUT_S 900     /* longest a run may take */
#define BC_START_S 60        /* how long the daemons may take to start */
#define BC_MAX_KINDS 32      /* distinct session states counted */
#define BC_SETTLE_S 1.0      /* pause after writing, so each edge has published */
#define BC_ACK_TIMEOUT "600" /* edges never resend during a run */

/* How often each state of the consumers' PostgreSQL sessions was seen. */
struct sessions {
    char kind[BC_MAX_KINDS][96];  /* "state wait_event_type:wait_event" */
    long long seen[BC_MAX_KINDS]; /* samples of a session in that state */
    int n;                        /* kinds used */
    long long total;              /* session samples in all */
};

static void usage(const char *me)
{
    fprintf(stderr,
            "usage: %s --consumers K --store pg|sqlite --edges N --changes M [--group yes|no] "
            "[--cloud-arg ARG]... [--edge-arg ARG]...\n"
            "  K 1..%d (sqlite: 1), N 1..%d edges, M changes written by each edge; --group: a "
            "shared group also for K = 1 (default: only for K > 1)\n",
            me, RIG_MAX_CLOUDS, RIG_MAX_EDGES);
    exit(2);
}

static long parse_num(const char *me, const char *s, long lo, long hi)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        usage(me);
    return v;
}

/* ---- CPU time from /proc ---------------------------------------------------------------- */

/* User plus system CPU seconds of pid, and its parent in *ppid; -1 if it is gone. */
static double proc_cpu(pid_t pid, pid_t *ppid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut = 0, st = 0;
    int pp = 0;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: the fields start after the last ')'. */
    p = strrchr(buf, ')');
    if (p == NULL ||
        sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &pp, &ut, &st) != 3)
        return -1;
    if (ppid != NULL)
        *ppid = pp;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds of the postmaster and all its children (backends, WAL writer, checkpointer). */
static double pg_cpu(pid_t postmaster)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    double sum = 0, c;
    pid_t pid, pp;

    if (d == NULL || postmaster <= 0) {
        if (d != NULL)
            closedir(d);
        return 0;
    }
    while ((de = readdir(d)) != NULL) {
        pid = (pid_t)atol(de->d_name);
        if (pid <= 0)
            continue;
        pp = 0;
        c = proc_cpu(pid, &pp);
        if (c >= 0 && (pid == postmaster || pp == postmaster))
            sum += c;
    }
    closedir(d);
    return sum;
}

/* Busy and total CPU seconds of the whole machine (every core), from /proc/stat. */
static void machine_cpu(double *busy, double *total)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    double tick = (double)sysconf(_SC_CLK_TCK);
    int i;

    *busy = *total = 0;
    if (f == NULL)
        return;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7]) == 8) {
        for (i = 0; i < 8; i++)
            *total += (double)v[i] / tick;
        *busy = *total - (double)(v[3] + v[4]) / tick; /* idle and iowait are not busy */
    }
    fclose(f);
}

/* ---- the consumers' PostgreSQL sessions ------------------------------------------------- */

static void sessions_sample(PGconn *pq, struct sessions *s)
{
    PGresult *res;
    int i, j;

    if (pq == NULL || PQstatus(pq) != CONNECTION_OK)
        return;
    res = PQexec(
        pq, "SELECT state || ' ' || coalesce(wait_event_type || ':' || wait_event, "
            "'(on CPU)'), count(*) FROM pg_stat_activity WHERE datname = "
            "current_database() AND backend_type = 'client backend' AND pid <> "
            "pg_backend_pid() AND application_name NOT IN ('bench', 'rig', 'psql') GROUP BY 1");
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        for (i = 0; i < PQntuples(res); i++) {
            const char *k = PQgetvalue(res, i, 0);
            long long c = strtoll(PQgetvalue(res, i, 1), NULL, 10);
            for (j = 0; j < s->n && strcmp(s->kind[j], k) != 0; j++)
                ;
            if (j == s->n && s->n < BC_MAX_KINDS)
                snprintf(s->kind[s->n++], sizeof(s->kind[0]), "%s", k);
            if (j < s->n)
                s->seen[j] += c;
            s->total += c;
        }
    }
    PQclear(res);
}

static void sessions_print(const struct sessions *s)
{
    int i, j, best;
    char used[BC_MAX_KINDS] = {0};

    if (s->total == 0)
        return;
    printf("bench:   the consumers' PostgreSQL sessions, %lld samples (one per session every %d "
           "ms):\n",
           s->total, BC_POLL_MS);
    for (i = 0; i < s->n; i++) {
        best = -1;
        for (j = 0; j < s->n; j++)
            if (!used[j] && (best < 0 || s->seen[j] > s->seen[best]))
                best = j;
        used[best] = 1;
        printf("bench:     %5.1f %%  %s\n", 100.0 * (double)s->seen[best] / (double)s->total,
               s->kind[best]);
    }
}

/* What the wait for the last change shares with its predicate. */
struct run {
    struct rig *r;      /* the rig */
    PGconn *pq;         /* sampling connection (pg only) */
    struct sessions *s; /* what the sessions were doing */
    long long want;     /* N * M */
    long long applied;  /* latest sum */
};

/* Done when the store's applied sum reaches the total; samples the sessions on the way. */
static int applied_all(void *ctx)
{
    struct run *u = ctx;
    int i;

    for (i = 0; i < u->r->o.nclouds; i++)
        TH_CHECK(th_alive(u->r->clouds[i].pid), "%s exited", u->r->clouds[i].client_id);
    u->applied = rig_applied_total(u->r);
    if (u->pq != NULL)
        sessions_sample(u->pq, u->s);
    TH_CHECK(u->applied <= u->want, "the store counts %lld applied changes, only %lld were written",
             u->applied, u->want);
    return u->applied == u->want;
}

int main(int argc, char **argv)
{
    static struct rig r;
    static struct sessions sess;
    struct rig_opts o;
    struct run u;
    const char *store = NULL, *pm_file, *group = NULL;
    long consumers = 0, edges = 0, changes = 0;
    const char *ucloud[RIG_MAX_EXTRA], *uedge[RIG_MAX_EXTRA]; /* --cloud-arg, --edge-arg */
    int i, nucloud = 0, nuedge = 0, n;
    double t_start, t_end, seconds, rate, busy0, total0, busy1, total1;
    double cpu_cloud = 0, cpu_edges0 = 0, cpu_edges1 = 0, cpu_pg0, cpu_pg1, cpu_broker0;
    double cpu_broker1, c;
    long long outbox = 0;
    pid_t postmaster = 0;
    char line[64];

    setvbuf(stdout, NULL, _IOLBF, 0);
    memset(&o, 0, sizeof(o));
    for (i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage(argv[0]);
        if (strcmp(argv[i], "--consumers") == 0)
            consumers = parse_num(argv[0], argv[++i], 1, RIG_MAX_CLOUDS);
        else if (strcmp(argv[i], "--edges") == 0)
            edges = parse_num(argv[0], argv[++i], 1, RIG_MAX_EDGES);
        else if (strcmp(argv[i], "--changes") == 0)
            changes = parse_num(argv[0], argv[++i], 1, 10000000);
        else if (strcmp(argv[i], "--store") == 0)
            store = argv[++i];
        else if (strcmp(argv[i], "--group") == 0)
            group = argv[++i];
        else if (strcmp(argv[i], "--cloud-arg") == 0 && nucloud < RIG_MAX_EXTRA - 3)
            ucloud[nucloud++] = argv[++i];
        else if (strcmp(argv[i], "--edge-arg") == 0 && nuedge < RIG_MAX_EXTRA - 7)
            uedge[nuedge++] = argv[++i];
        else
            usage(argv[0]);
    }
    if (consumers == 0 || edges == 0 || changes == 0 || store == NULL ||
        (strcmp(store, "pg") != 0 && strcmp(store, "sqlite") != 0) ||
        (group != NULL && strcmp(group, "yes") != 0 && strcmp(group, "no") != 0))
        usage(argv[0]);
    o.pg = strcmp(store, "pg") == 0;
    o.shared_group = (group != NULL ? strcmp(group, "yes") == 0 : consumers > 1) ? "bench" : NULL;
    if ((!o.pg && (consumers != 1 || o.shared_group != NULL)) ||
        (consumers > 1 && o.shared_group == NULL)) {
        fprintf(stderr,
                "%s: an SQLite store takes one consumer and no group (synccloud refuses "
                "a shared group there); several consumers need a group\n",
                argv[0]);
        return 2;
    }
    th_init();
    o.tag = "bench";
    o.nclouds = (int)consumers;
    o.nedges = (int)edges;
    o.seed = 42;
    /* The benchmark's own arguments first, so the caller's (later flags win) can change them. */
    n = 0;
    o.cloud_extra[n++] = "--log-level";
    o.cloud_extra[n++] = "info";
    /* The backlog waits at the broker in the consumers' sessions (step 1), which members of a
     * shared group do not keep by default (session_expiry 0): ask for one. */
    o.cloud_extra[n++] = "--session-expiry";
    o.cloud_extra[n++] = "600";
    for (i = 0; i < nucloud; i++)
        o.cloud_extra[n++] = ucloud[i];
    n = 0;
    o.edge_extra[n++] = "--replica";
    o.edge_extra[n++] = "false";
    o.edge_extra[n++] = "--ack-timeout";
    o.edge_extra[n++] = BC_ACK_TIMEOUT;
    o.edge_extra[n++] = "--log-level";
    o.edge_extra[n++] = "info";
    for (i = 0; i < nuedge; i++)
        o.edge_extra[n++] = uedge[i];
    rig_setup(&r, &o);
    printf("bench: %s store, %ld consumer%s%s, %ld edges x %ld changes; folder %s\n",
           o.pg ? "PostgreSQL" : "SQLite", consumers, consumers == 1 ? "" : "s",
           o.shared_group ? " in one shared group" : " (no group)", edges, changes, r.dir);
    printf("bench: synccloud's defaults (sync_full true: every commit fsynced before its acks; "
           "events changes; publish_rows true; max_tx_batches 64) unless given here:");
    for (i = 0; i < RIG_MAX_EXTRA && o.cloud_extra[i] != NULL; i++)
        printf(" %s", o.cloud_extra[i]);
    printf("; syncedge:");
    for (i = 0; i < RIG_MAX_EXTRA && o.edge_extra[i] != NULL; i++)
        printf(" %s", o.edge_extra[i]);
    printf("\n");

    /* 1. Sessions and tables first. */
    for (i = 0; i < o.nclouds; i++)
        rig_start_cloud(&r, i);
    rig_wait_ready(&r, BC_START_S);
    for (i = 0; i < o.nclouds; i++)
        rig_stop_cloud(&r, i);

    /* 2. The backlog, written while no consumer runs. */
    for (i = 0; i < o.nedges; i++)
        rig_start_edge(&r, i);
    rig_wait_ready(&r, BC_START_S);
    rig_open_apps(&r);
    t_start = th_now();
    for (i = 0; i < o.nedges; i++)
        rig_write(&r.edges[i], changes, 1 << 30);
    printf("bench: wrote %ld changes in %.1f s\n", edges * changes, th_now() - t_start);
    usleep((useconds_t)(BC_SETTLE_S * 1e6));
    for (i = 0; i < o.nedges; i++) {
        long long rows = rig_outbox(&r.edges[i]);
        TH_CHECK(rows >= 0, "cannot read the outbox of %s", r.edges[i].name);
        outbox += rows;
    }
    TH_CHECK(rig_applied_total(&r) == 0, "changes were applied while no consumer ran");
    printf("bench: backlog: %lld rows in the edges' outboxes, one batch per edge waiting at the "
           "broker\n",
           outbox);

    /* 3. The measured part. */
    memset(&u, 0, sizeof(u));
    u.r = &r;
    u.s = &sess;
    u.want = (long long)edges * changes;
    if (o.pg) {
        pm_file = th_fmt("%s/pg/data/postmaster.pid", r.dir);
        if (th_read_first_line(pm_file, line, sizeof(line)) == 0)
            postmaster = (pid_t)atol(line);
        u.pq = PQconnectdb(th_fmt("%s application_name=bench", r.pg));
    }
    cpu_pg0 = pg_cpu(postmaster);
    cpu_broker0 = proc_cpu(r.broker_pid, NULL);
    for (i = 0; i < o.nedges; i++)
        cpu_edges0 += proc_cpu(r.edges[i].pid, NULL);
    machine_cpu(&busy0, &total0);
    t_start = th_now();
    for (i = 0; i < o.nclouds; i++)
        rig_start_cloud(&r, i);
    TH_CHECK(th_wait_until(applied_all, &u, BC_TIMEOUT_S * 1000) == 0,
             "%lld of %lld changes applied after %d s", u.applied, u.want, BC_TIMEOUT_S);
    t_end = th_now();
    machine_cpu(&busy1, &total1);
    for (i = 0; i < o.nclouds; i++)
        cpu_cloud += proc_cpu(r.clouds[i].pid, NULL);
    for (i = 0; i < o.nedges; i++)
        cpu_edges1 += proc_cpu(r.edges[i].pid, NULL);
    cpu_broker1 = proc_cpu(r.broker_pid, NULL);
    cpu_pg1 = pg_cpu(postmaster);
    seconds = t_end - t_start;
    rate = (double)u.want / seconds;

    printf("bench: %s, %ld consumer%s%s, %ld edges x %ld changes: %lld changes applied in %.2f "
           "s = %.0f changes/s\n",
           o.pg ? "PostgreSQL" : "SQLite", consumers, consumers == 1 ? "" : "s",
           o.shared_group ? " (shared group)" : "", edges, changes, u.want, seconds, rate);
    c = busy1 - busy0;
    printf("bench:   CPU seconds while applying: consumers %.1f, %s %.1f, mosquitto %.1f, edges "
           "%.1f; the whole machine (%ld cores, shared with other work) %.1f of %.1f (%.0f %% "
           "busy)\n",
           cpu_cloud, o.pg ? "postgres" : "(no server)", cpu_pg1 - cpu_pg0,
           cpu_broker1 - cpu_broker0, cpu_edges1 - cpu_edges0, sysconf(_SC_NPROCESSORS_ONLN), c,
           total1 - total0, total1 > total0 ? 100.0 * c / (total1 - total0) : 0.0);
    sessions_print(&sess);

    for (i = 0; i < o.nclouds; i++)
        rig_stop_cloud(&r, i);
    for (i = 0; i < o.nclouds; i++) {
        struct rig_stats s;
        TH_CHECK(rig_cloud_stats(r.clouds[i].log, &s) == 0, "%s logged no statistics",
                 r.clouds[i].client_id);
        printf("bench:   %s: %lld batches (%.0f changes each), %lld applied, %lld duplicates\n",
               r.clouds[i].client_id, s.batches,
               s.batches ? (double)s.received / (double)s.batches : 0.0, s.applied, s.duplicates);
    }
    if (u.pq != NULL)
        PQfinish(u.pq);
    rig_teardown(&r);
    printf("bench=consumers store=%s consumers=%ld edges=%ld changes=%ld seconds=%.2f "
           "changes_per_s=%.0f total=%lld group=%s\n",
           store, consumers, edges, changes, seconds, rate, u.want, o.shared_group ? "yes" : "no");
    return 0;
}
