/* test_scale.c - three synccloud consumers share one PostgreSQL store and the load of five
 * writing edges through an MQTT shared subscription; one consumer is killed -9 mid-stream.
 *
 * Real processes only (see rig.h): a throwaway PostgreSQL server, the development Mosquitto
 * (TLS, passwords, broker-config's ACL), synccloud-1 .. synccloud-3 started with the same
 * --shared-group and their own --client-id on the same database, and syncedge for edge-a ..
 * edge-e, each edge also a replica of both tables. The test is the five edges' application:
 * it writes SCALE_CHANGES changes in all (inserts, updates, deletes, re-inserts; transactions
 * of 1..20 changes) spread over a writing phase of SCALE_SECONDS, each edge in its own key
 * space, so each committed change is exactly one change the cloud must apply for that device.
 *
 * While the edges write, synccloud-2 is killed with SIGKILL (at 30 % of the writing phase).
 * SCALE_KILL says what happens next: "restart" (the default) starts it again with the same
 * client id at 65 %; "leave" leaves it dead to the end. Members of a shared group keep no
 * broker session (synccloud's default with --shared-group), so meanwhile the broker hands
 * every new batch and catch-up request to the live members; the batches the dead one had
 * received unacknowledged come back when the edges resend them (--ack-timeout 3), and are
 * applied once. (With a persistent session, Mosquitto 2.0 goes on routing a third of the
 * batches to the dead member: SCALE_SESSION_EXPIRY=86400 shows it.)
 *
 * Checks: while writing, the cloud never counts more applied changes of a device than its
 * application committed, and the live consumers keep applying while one is dead. Then, with
 * no more writes: every edge's outbox empties; each device's _sync_devices.applied in
 * PostgreSQL (read with psql) equals the changes its application committed (more: a change
 * applied twice; fewer: lost); `synccloud --checksum` equals every edge's `syncedge
 * --checksum`; the broker's retained row message of every row (tombstones too) carries the
 * row's newest change, as the store holds it (except rows the killed consumer changed in its
 * last moments: see check_retained_rows); every consumer that ran to the end applied batches
 * (from the "stopping:" line each logs on SIGTERM), so the load really was shared; everything
 * stops with status 0 on SIGTERM.
 *
 * Skipped (77) without the PostgreSQL server binaries unless CI=true. Environment:
 * SCALE_SEED=N repeats a run's writes; SCALE_CHANGES (default 6000); SCALE_SECONDS (default
 * 15); SCALE_KILL (restart or leave); SCALE_CONVERGE_S (default 120); SCALE_SESSION_EXPIRY
 * (the consumers' --session-expiry; default synccloud's); TH_KEEP=1 keeps the folder with
 * every database and log.
 */
#include "harness.h"
#include "rig.h"
#include "sync/record.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SC_CLOUDS 3           /* consumers in the shared group */
#define SC_EDGES 5            /* writing edges, edge-a .. edge-e */
#define SC_VICTIM 1           /* synccloud-2 is killed */
#define SC_CHANGES 6000       /* default total of changes */
#define SC_SECONDS 15         /* default length of the writing phase */
#define SC_CONVERGE_S 120     /* default time allowed to converge after writing */
#define SC_START_S 60         /* how long the daemons may take to start */
#define SC_KILL_AT 0.30       /* the kill, as a fraction of the writing phase */
#define SC_RESTART_AT 0.65    /* the restart (SCALE_KILL=restart) */
#define SC_CHECK_PERIOD 1.0   /* seconds between exactly-once checks while writing */
#define SC_COUNT_PERIOD 0.25  /* seconds between count checks while converging */
#define SC_REPORT_PERIOD 10   /* seconds between progress lines while converging */
#define SC_SAMPLE_PERIOD 0.25 /* seconds between samples of the store's cseq while writing */
#define SC_SAMPLES 4096       /* room for them */
#define SC_UNPUBLISHED_S 2.0  /* the killed consumer's last unpublished commits: see below */

static struct rig R;
static double t0;                   /* th_now() when writing started */
static double checked_at;           /* th_now() of the latest count check while converging */
static double reported_at;          /* th_now() of the latest progress report */
static uint64_t seed;               /* of this run */
static int passed;                  /* set at the end: no seed reminder at exit */
static double sample_t[SC_SAMPLES]; /* th_now() of each cseq sample */
static unsigned long long sample_cseq[SC_SAMPLES]; /* the store's newest cseq then */
static int nsamples;                               /* samples taken */

static void on_exit_report(void)
{
    if (!passed)
        fprintf(stderr, "scale: FAILED: SCALE_SEED=%" PRIu64 " repeats this run's writes\n", seed);
}

static long long env_ll(const char *name, long long def, long long min)
{
    const char *s = getenv(name);
    char *end;
    long long v;

    if (s == NULL || *s == '\0')
        return def;
    v = strtoll(s, &end, 0);
    TH_CHECK(*end == '\0' && v >= min, "%s=%s: expected a number of at least %lld", name, s, min);
    return v;
}

static uint64_t pick_seed(void)
{
    const char *s = getenv("SCALE_SEED");
    struct timespec ts;

    if (s != NULL && *s != '\0')
        return strtoull(s, NULL, 0);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
}

/* The cloud never holds more applied changes of a device than its application committed. */
static void check_not_twice(void)
{
    int i;

    for (i = 0; i < SC_EDGES; i++) {
        struct rig_edge *e = &R.edges[i];
        long long a = rig_applied(&R, e->name);
        if (a < 0)
            continue;
        e->applied = a;
        TH_CHECK(a <= e->counted,
                 "the cloud applied %lld changes of %s, which committed only %lld: some change "
                 "was applied more than once",
                 a, e->name, e->counted);
    }
}

static void print_status(FILE *out)
{
    int i;

    for (i = 0; i < SC_EDGES; i++) {
        const struct rig_edge *e = &R.edges[i];
        fprintf(out, "scale:   %s: committed %lld, cloud applied %lld, outbox %lld, checksum %s\n",
                e->name, e->counted, e->applied, e->outbox,
                e->sum == NULL                                            ? "(not taken)"
                : R.cloud_sum != NULL && strcmp(e->sum, R.cloud_sum) == 0 ? "= cloud"
                                                                          : "DIFFERS");
    }
}

/* Every outbox empty, every applied count equal to the committed count, and every checksum
 * equal to the cloud's. */
static int converged(void *ctx)
{
    double now = th_now();
    int i, counts = 1;

    (void)ctx;
    rig_check_alive(&R);
    if (now - checked_at < SC_COUNT_PERIOD)
        return 0;
    checked_at = now;
    check_not_twice();
    for (i = 0; i < SC_EDGES; i++) {
        struct rig_edge *e = &R.edges[i];
        e->outbox = rig_outbox(e);
        if (e->outbox != 0 || e->applied != e->counted)
            counts = 0;
    }
    if (counts && rig_checksums(&R))
        return 1;
    if (now - reported_at >= SC_REPORT_PERIOD) {
        reported_at = now;
        printf("scale: t=%.1f s converging:\n", now - t0);
        print_status(stdout);
    }
    return 0;
}

/* ---- the broker's retained row states ----------------------------------------------------- */

/* A row named as "table:key" (items: the id in decimal; notes: the key's bytes in hex), with the
 * cseq of its newest change. */
struct rowstate {
    char id[160];            /* table:key */
    unsigned long long cseq; /* of the row's newest change */
};

static int by_id(const void *a, const void *b)
{
    return strcmp(((const struct rowstate *)a)->id, ((const struct rowstate *)b)->id);
}

static void hex(char *out, size_t n, const uint8_t *p, size_t len)
{
    size_t i;

    for (i = 0; i < len && 2 * i + 2 < n; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
    out[2 * i] = '\0';
}

static int unhex(const char *s, size_t len, uint8_t *out)
{
    size_t i;
    unsigned v;

    for (i = 0; i + 1 < len; i += 2) {
        if (sscanf(s + i, "%2x", &v) != 1)
            return -1;
        out[i / 2] = (uint8_t)v;
    }
    return 0;
}

/* Every row of the store (tombstones too), as the store holds it. Returns the count; *out is
 * allocated (the caller frees it). */
static size_t store_rows(struct rowstate **out)
{
    PGresult *res;
    size_t n, i;

    TH_CHECK(rig_applied_total(&R) >= 0, "cannot query the store"); /* connects R.pq */
    res = PQexec(R.pq, "SELECT 'items:' || id::text, _cseq FROM items UNION ALL SELECT 'notes:' "
                       "|| encode(convert_to(k, 'UTF8'), 'hex'), _cseq FROM notes");
    TH_CHECK(PQresultStatus(res) == PGRES_TUPLES_OK, "the store's rows: %s",
             PQresultErrorMessage(res));
    n = (size_t)PQntuples(res);
    *out = calloc(n + 1, sizeof(**out));
    TH_CHECK(*out != NULL, "out of memory");
    for (i = 0; i < n; i++) {
        snprintf((*out)[i].id, sizeof((*out)[i].id), "%s", PQgetvalue(res, (int)i, 0));
        (*out)[i].cseq = strtoull(PQgetvalue(res, (int)i, 1), NULL, 10);
    }
    PQclear(res);
    qsort(*out, n, sizeof(**out), by_id);
    return n;
}

/* The retained row messages the broker holds, read as the dashboard user would (up to want of
 * them; a few seconds at most). Returns the count; *out is allocated (the caller frees it). */
static size_t retained_rows(size_t want, struct rowstate **out)
{
    char pass[128], err[256], *text, *line, *nl;
    const char *table;
    size_t n = 0, tlen, len;
    uint8_t *buf;
    sync_limits lim;
    static sync_change c; /* large: kept off the stack */

    TH_CHECK(th_read_first_line(th_fmt("%s/viewer.pass", R.dir), pass, sizeof(pass)) == 0,
             "no viewer password");
    th_capture(&text,
               "mosquitto_sub -h 127.0.0.1 -p %d --cafile %s -u viewer -P %s -i scale-rows "
               "-t 'sync/demo/rows/#' --retained-only -C %zu -W 3 -F %%x 2>&1",
               R.port, th_shq(th_fmt("%s/ca.crt", R.dir)), th_shq(pass), want);
    TH_CHECK(text != NULL, "mosquitto_sub failed");
    *out = calloc(want + 1, sizeof(**out));
    TH_CHECK(*out != NULL, "out of memory");
    sync_limits_default(&lim);
    for (line = text; *line != '\0' && n < want; line = nl) {
        nl = strchr(line, '\n');
        len = nl != NULL ? (size_t)(nl - line) : strlen(line);
        nl = nl != NULL ? nl + 1 : line + len;
        if (strncmp(line, "Timed out", 9) == 0)
            continue; /* fewer retained messages than rows: the comparison tells which */
        buf = malloc(len / 2 + 1);
        TH_CHECK(buf != NULL, "out of memory");
        TH_CHECK(len % 2 == 0 && unhex(line, len, buf) == 0, "mosquitto_sub printed: %.*s",
                 (int)(len > 200 ? 200 : len), line);
        TH_CHECK(sync_row_decode(buf, len / 2, &lim, &c, &table, &tlen, err, sizeof(err)) == 0,
                 "a retained row message does not decode: %s", err);
        if (c.key.type == SYNC_TEXT) {
            char h[140];
            hex(h, sizeof(h), c.key.u.b.p, c.key.u.b.n);
            snprintf((*out)[n].id, sizeof((*out)[n].id), "%.*s:%s", (int)tlen, table, h);
        } else {
            snprintf((*out)[n].id, sizeof((*out)[n].id), "%.*s:%lld", (int)tlen, table,
                     (long long)c.key.u.i);
        }
        (*out)[n++].cseq = (unsigned long long)c.cseq;
        free(buf);
    }
    free(text);
    qsort(*out, n, sizeof(**out), by_id);
    return n;
}

/* The broker's retained row message of every row carries the row's newest change: with several
 * consumers, an older state published by one must not stay retained over a newer state another
 * one published (cloud/rowcheck.h). One exception is allowed: a consumer killed -9 takes with
 * it the row states it had committed and not yet handed to the broker, and nobody publishes
 * those again (the row stays at its previous state, or unpublished, until it changes again).
 * So a row whose newest change has a cseq in (lo, hi], the changes committed in the last
 * SC_UNPUBLISHED_S seconds before the kill, may be behind; it is listed, not failed. Returns
 * the count of the other differences. */
static long check_retained_rows(unsigned long long lo, unsigned long long hi)
{
    struct rowstate *st = NULL, *rt = NULL;
    size_t ns = store_rows(&st), nr = retained_rows(ns, &rt), i = 0, j = 0;
    long behind = 0, excused = 0, ahead = 0, missing = 0, extra = 0, shown = 0;
    int cmp, ok;

    while (i < ns || j < nr) {
        cmp = i >= ns ? 1 : j >= nr ? -1 : strcmp(st[i].id, rt[j].id);
        if (cmp == 0 && st[i].cseq == rt[j].cseq) {
            i++;
            j++;
            continue;
        }
        ok =
            cmp <= 0 && st[i].cseq > lo && st[i].cseq <= hi && (cmp < 0 || rt[j].cseq < st[i].cseq);
        if (shown++ < 20)
            printf("scale:   retained row %s: store cseq %llu, retained cseq %llu%s\n",
                   cmp <= 0 ? st[i].id : rt[j].id, cmp <= 0 ? st[i].cseq : 0,
                   cmp >= 0 ? rt[j].cseq : 0,
                   ok ? " (committed by the killed consumer just before it died)" : "");
        excused += ok;
        if (cmp == 0) {
            if (!ok && rt[j].cseq < st[i].cseq)
                behind++;
            else if (!ok)
                ahead++;
            i++;
            j++;
        } else if (cmp < 0) {
            missing += !ok;
            i++;
        } else {
            extra++;
            j++;
        }
    }
    printf("scale: retained rows: %zu in the store, %zu retained; %ld behind the store, %ld "
           "ahead of it, %ld missing, %ld unknown to the store; %ld more behind or missing with "
           "a change from the kill's last %.0f s (cseq %llu..%llu)\n",
           ns, nr, behind, ahead, missing, extra, excused, SC_UNPUBLISHED_S, lo + 1, hi);
    free(st);
    free(rt);
    return behind + ahead + missing + extra;
}

/* The store's newest cseq (_sync_state), or -1 on error. */
static long long store_cseq(void)
{
    return rig_cloud_int(&R, "SELECT cseq FROM _sync_state WHERE id = 1");
}

int main(void)
{
    struct rig_opts o;
    long long changes, total = 0, share, at_kill = -1, at_back = -1, before, after, cs;
    double seconds, now, next_check = 0, next_sample = 0, t_written, t_done, t_killed = 0;
    unsigned long long kill_lo = 0, kill_hi = 0;
    int i, converge_s, restart, killed = 0, back = 0, all_written;
    const char *mode, *expiry;

    setvbuf(stdout, NULL, _IOLBF, 0);
    th_init();
    seed = pick_seed();
    changes = env_ll("SCALE_CHANGES", SC_CHANGES, SC_EDGES);
    seconds = (double)env_ll("SCALE_SECONDS", SC_SECONDS, 4);
    converge_s = (int)env_ll("SCALE_CONVERGE_S", SC_CONVERGE_S, 10);
    mode = getenv("SCALE_KILL");
    if (mode == NULL || *mode == '\0')
        mode = "restart";
    TH_CHECK(strcmp(mode, "restart") == 0 || strcmp(mode, "leave") == 0,
             "SCALE_KILL=%s: expected restart or leave", mode);
    restart = strcmp(mode, "restart") == 0;
    printf("scale: seed %" PRIu64 " (SCALE_SEED), %lld changes (SCALE_CHANGES) over %.0f s "
           "(SCALE_SECONDS), %d consumers in one shared group, %d edges; synccloud-%d killed -9 "
           "at %.0f %%, %s (SCALE_KILL=%s)\n",
           seed, changes, seconds, SC_CLOUDS, SC_EDGES, SC_VICTIM + 1, SC_KILL_AT * 100,
           restart ? th_fmt("restarted at %.0f %%", SC_RESTART_AT * 100) : "left dead", mode);

    memset(&o, 0, sizeof(o));
    o.tag = "scale";
    o.pg = 1;
    o.nclouds = SC_CLOUDS;
    o.nedges = SC_EDGES;
    o.shared_group = "scale";
    o.seed = seed;
    {
        /* Batch events only: one JSON event per change would be most of the publishing. */
        static const char *cloud_extra[] = {"--events",    "batches",     "--log-level",
                                            "info",        "--retry-min", "1",
                                            "--retry-max", "3",           NULL};
        /* A batch handed to the dead consumer comes back after 3 s, not the default 30. */
        static const char *edge_extra[] = {"--ack-timeout", "3",    "--retry-min", "1",
                                           "--retry-max",   "3",    "--replica",   "true",
                                           "--log-level",   "info", NULL};
        memcpy(o.cloud_extra, cloud_extra, sizeof(cloud_extra));
        memcpy(o.edge_extra, edge_extra, sizeof(edge_extra));
    }
    expiry = getenv("SCALE_SESSION_EXPIRY");
    if (expiry != NULL && *expiry != '\0') {
        /* How long the broker keeps a gone consumer's session, and its place in the group. */
        for (i = 0; o.cloud_extra[i] != NULL; i++)
            ;
        TH_CHECK(i + 2 < RIG_MAX_EXTRA, "no room for --session-expiry");
        o.cloud_extra[i] = "--session-expiry";
        o.cloud_extra[i + 1] = expiry;
    }
    rig_setup(&R, &o);
    atexit(on_exit_report); /* not before: without PostgreSQL, rig_setup exits to skip */
    printf("scale: folder %s, broker ssl://127.0.0.1:%d, store %s\n", R.dir, R.port, R.store);
    for (i = 0; i < SC_CLOUDS; i++)
        rig_start_cloud(&R, i);
    for (i = 0; i < SC_EDGES; i++)
        rig_start_edge(&R, i);
    rig_wait_ready(&R, SC_START_S);
    rig_open_apps(&R);

    /* ---- writing, with a consumer killed on the way ---- */
    t0 = th_now();
    printf("scale: t=0 writing starts\n");
    for (;;) {
        now = th_now() - t0;
        all_written = 1;
        for (i = 0; i < SC_EDGES; i++) {
            struct rig_edge *e = &R.edges[i];
            double frac = now >= seconds ? 1.0 : now / seconds;
            share = changes / SC_EDGES + (i < changes % SC_EDGES ? 1 : 0);
            rig_write(e, (long long)((double)share * frac), 4);
            if (e->counted < share)
                all_written = 0;
        }
        if (!killed && now >= SC_KILL_AT * seconds) {
            at_kill = rig_applied_total(&R);
            printf("scale: t=%.1f s kill -9 %s (pid %ld); the cloud has applied %lld changes\n",
                   now, R.clouds[SC_VICTIM].client_id, (long)R.clouds[SC_VICTIM].pid, at_kill);
            rig_kill_cloud(&R, SC_VICTIM);
            killed = 1;
            t_killed = now;
            /* Its last commits: from SC_UNPUBLISHED_S before now to what is committed now. */
            cs = store_cseq();
            TH_CHECK(cs >= 0, "cannot read the store's cseq");
            kill_hi = (unsigned long long)cs;
            for (i = 0; i < nsamples; i++)
                if (sample_t[i] <= t0 + now - SC_UNPUBLISHED_S)
                    kill_lo = sample_cseq[i];
        }
        if (restart && killed && !back && now >= SC_RESTART_AT * seconds) {
            at_back = rig_applied_total(&R);
            rig_start_cloud(&R, SC_VICTIM);
            printf("scale: t=%.1f s %s restarted (pid %ld); the cloud has applied %lld changes\n",
                   now, R.clouds[SC_VICTIM].client_id, (long)R.clouds[SC_VICTIM].pid, at_back);
            back = 1;
        }
        rig_check_alive(&R);
        if (now >= next_check) {
            check_not_twice();
            next_check = now + SC_CHECK_PERIOD;
        }
        if (now >= next_sample && nsamples < SC_SAMPLES && (cs = store_cseq()) >= 0) {
            sample_t[nsamples] = th_now();
            sample_cseq[nsamples++] = (unsigned long long)cs;
            next_sample = now + SC_SAMPLE_PERIOD;
        }
        if (all_written && killed && (back || !restart))
            break;
        usleep(5000);
    }
    t_written = th_now();
    if (!restart)
        at_back = rig_applied_total(&R);
    for (i = 0; i < SC_EDGES; i++) {
        const struct rig_edge *e = &R.edges[i];
        total += e->counted;
        printf("scale: %s wrote %lld changes in %lld transactions: %lld inserts, %lld updates, "
               "%lld deletes, %lld re-inserts\n",
               e->name, e->counted, e->txs, e->ins, e->upd, e->del, e->reins);
    }
    printf("scale: t=%.1f s writing over: %lld changes (%.0f changes/s)\n", t_written - t0, total,
           (double)total / (t_written - t0));
    TH_CHECK(total == changes, "committed %lld changes instead of %lld", total, changes);
    /* The group kept consuming with a member dead. */
    TH_CHECK(at_kill >= 0 && at_back > at_kill,
             "the live consumers applied nothing while %s was dead (%lld applied at the kill, "
             "%lld %.1f s later)",
             R.clouds[SC_VICTIM].client_id, at_kill, at_back, t_written - t0 - t_killed);

    /* ---- convergence ---- */
    if (th_wait_until(converged, NULL, converge_s * 1000) != 0) {
        rig_checksums(&R);
        fprintf(stderr, "scale: no convergence %d s after writing\n", converge_s);
        print_status(stderr);
        fprintf(stderr, "---- checksums: cloud ----\n%s", R.cloud_sum ? R.cloud_sum : "(failed)\n");
        for (i = 0; i < SC_EDGES; i++)
            fprintf(stderr, "---- checksums: %s ----\n%s", R.edges[i].name,
                    R.edges[i].sum ? R.edges[i].sum : "(failed)\n");
        TH_FAIL("the cloud and the edges did not converge within %d s after writing", converge_s);
    }
    t_done = th_now();
    printf("scale: t=%.1f s converged, %.1f s after writing ended\n", t_done - t0,
           t_done - t_written);
    /* Exactly once, read from PostgreSQL with psql (not through the rig's connection). */
    for (i = 0; i < SC_EDGES; i++) {
        const struct rig_edge *e = &R.edges[i];
        long long a =
            th_pg_int(R.pg, "SELECT applied FROM _sync_devices WHERE device = '%s'", e->name);
        TH_CHECK(a == e->counted,
                 "the cloud applied %lld changes of %s, its application committed %lld", a, e->name,
                 e->counted);
        printf("scale:   %s: committed %lld, applied %lld, outbox %lld\n", e->name, e->counted, a,
               e->outbox);
    }
    TH_CHECK(th_pg_int(R.pg, "SELECT sum(applied) FROM _sync_devices") == total,
             "the applied counts of all devices do not add up to %lld", total);
    printf("scale: checksums (cloud = edge-a .. edge-e):\n%s", R.cloud_sum);
    if (check_retained_rows(kill_lo, kill_hi) != 0) {
        /* A consumer re-reads a row only after the broker acknowledged its message: give a
         * re-publication on its way the time to arrive before calling the difference final. */
        printf("scale: looking again in 2 s\n");
        usleep(2000000);
        TH_CHECK(check_retained_rows(kill_lo, kill_hi) == 0,
                 "the broker's retained rows differ from the store (see the list above)");
    }

    /* ---- orderly stop; then who did the work ---- */
    before = th_pg_int(R.pg, "SELECT sum(applied) FROM _sync_devices");
    rig_teardown(&R);
    after = 0;
    for (i = 0; i < SC_CLOUDS; i++) {
        const struct rig_cloud *c = &R.clouds[i];
        struct rig_stats s;
        if (i == SC_VICTIM && !restart)
            continue;
        TH_CHECK(rig_cloud_stats(c->log, &s) == 0, "%s logged no statistics when it stopped (%s)",
                 c->client_id, c->log);
        printf("scale: %s%s: %lld batches, %lld changes received, %lld applied, %lld "
               "duplicates, %lld retained rows published again\n",
               c->client_id, i == SC_VICTIM ? " (after its restart)" : "", s.batches, s.received,
               s.applied, s.duplicates, s.republished);
        after += s.applied;
        if (i != SC_VICTIM)
            TH_CHECK(s.batches > 0 && s.applied > 0,
                     "%s applied no batch: the shared group did not share the load", c->client_id);
    }
    TH_CHECK(after <= before, "the consumers' logs count %lld applied changes, the store %lld",
             after, before);
    printf("scale: OK in %.1f s (%lld changes exactly once, %s)\n", th_now() - t0, total,
           restart ? "killed consumer restarted" : "killed consumer left dead");
    passed = 1;
    return 0;
}
