/* rig.h - one small deployment for the scale test and the consumer benchmark.
 *
 * A rig is: the development Mosquitto (scripts/devbroker.sh: TLS, passwords, broker-config's
 * ACL) on a free loopback port, a cloud store (a throwaway PostgreSQL server from the harness,
 * or an SQLite file), up to RIG_MAX_CLOUDS synccloud consumers (client ids synccloud-1 ..,
 * optionally in one shared subscription group) and up to RIG_MAX_EDGES syncedge edges (edge-a
 * .. edge-e, the dev broker's device users, and more for a benchmark), all real processes in
 * th_tmpdir().
 *
 * The rig is also every edge's application: it writes with plain SQL (the sqlite3 API) into the
 * edge's own SQLite database, whose tables it created before syncedge attached, in
 * transactions of inserts, updates (always a real change, so always captured), deletes and
 * re-inserts of both tables of docs/examples/schema.conf. Each edge writes only in its own key
 * space (items ids i*1000000+1 .., notes keys "X:N" with X the edge's letter), so every
 * committed change is exactly one change the cloud must apply for that device: a change counts
 * when its statement changed one row and its transaction committed.
 *
 * Everything fails the test through TH_CHECK; the harness stops the processes on exit.
 */
#ifndef SYNC_TEST_RIG_H
#define SYNC_TEST_RIG_H

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdint.h>
#include <sys/types.h>

#define RIG_MAX_CLOUDS 4 /* consumers one rig can run */
#define RIG_MAX_EDGES 16 /* edge-a .. edge-p (after edge-e: publishers only, see rig_setup) */
#define RIG_MAX_ARGS 48  /* argv entries of a daemon */
#define RIG_MAX_EXTRA 16 /* extra arguments given to every consumer or every edge */

/* A NULL-terminated argv under construction. */
struct rig_args {
    char *v[RIG_MAX_ARGS + 1]; /* the arguments, then NULL */
    int n;                     /* entries used */
};

/* Live and deleted key numbers of one table of one edge's application. */
struct rig_keys {
    int *live; /* key numbers of the rows that exist */
    int nlive; /* entries in live */
    int *dead; /* key numbers of deleted rows, for re-inserts */
    int ndead; /* entries in dead */
    int next;  /* next never-used key number */
    int cap;   /* room in live and dead */
    int last;  /* key number touched last (edited again sometimes), or -1 */
};

/* One syncedge and its application. */
struct rig_edge {
    const char *name;                    /* device id edge-X */
    char letter;                         /* X */
    const char *db;                      /* the application's database */
    const char *log;                     /* syncedge's stderr */
    struct rig_args args;                /* syncedge's argv */
    const char *sum_cmd;                 /* shell command printing its --checksum */
    pid_t pid;                           /* 0 while not running */
    sqlite3 *app;                        /* the application's connection (rig_open_apps) */
    uint64_t rng;                        /* the application's random numbers */
    struct rig_keys items;               /* items ids id_base + 1 + key number */
    struct rig_keys notes;               /* notes keys "X:N..." */
    long long id_base;                   /* i * 1000000 */
    long long counted;                   /* changes committed */
    long long ins, upd, del, reins, txs; /* committed changes by kind; transactions */
    long long uniq;                      /* makes updated texts unique */
    char *sum;                           /* latest --checksum output (owned, or NULL) */
    long long outbox;                    /* latest _sync_outbox count (-1 unknown) */
    long long applied;                   /* latest cloud applied count (-1 unknown) */
};

/* One synccloud consumer. */
struct rig_cloud {
    const char *client_id; /* synccloud-N */
    const char *log;       /* stderr of its current (latest) run */
    struct rig_args args;  /* its argv */
    pid_t pid;             /* 0 while not running */
    int runs;              /* times started */
};

/* What to set up. */
struct rig_opts {
    const char *tag;                        /* prefix of progress lines, e.g. "scale" */
    int pg;                                 /* 1: store on PostgreSQL, 0: an SQLite file */
    int nclouds;                            /* consumers, 1 .. RIG_MAX_CLOUDS */
    int nedges;                             /* edges, 1 .. RIG_MAX_EDGES */
    const char *shared_group;               /* consumers' --shared-group, or NULL */
    const char *cloud_extra[RIG_MAX_EXTRA]; /* more synccloud arguments, NULL-terminated */
    const char *edge_extra[RIG_MAX_EXTRA];  /* more syncedge arguments, NULL-terminated */
    uint64_t seed;                          /* the applications' random numbers */
};

struct rig {
    struct rig_opts o;                       /* as given to rig_setup */
    const char *dir;                         /* th_tmpdir() */
    const char *schema;                      /* docs/examples/schema.conf */
    int port;                                /* broker TLS port */
    const char *broker_log;                  /* mosquitto's output */
    char *broker_argv[4];                    /* mosquitto -c CONF */
    pid_t broker_pid;                        /* mosquitto */
    const char *store;                       /* synccloud --database */
    const char *pg;                          /* PostgreSQL connection string, or NULL */
    PGconn *pq;                              /* the rig's own connection for queries */
    const char *sum_log;                     /* stderr of every --checksum run */
    const char *cloud_sum_cmd;               /* shell command printing the cloud's --checksum */
    char *cloud_sum;                         /* latest cloud --checksum output (owned) */
    struct rig_cloud clouds[RIG_MAX_CLOUDS]; /* the consumers */
    struct rig_edge edges[RIG_MAX_EDGES];    /* the edges */
};

/* Creates the temp folder, the store (starts PostgreSQL with o->pg: skips the test, 77,
 * without its binaries unless CI=true), the broker's files, and starts the broker; creates
 * every edge's application tables (WAL) and builds every daemon's argv. Starts no daemon.
 * The dev broker knows edge-a .. edge-e; later edges become extra device users
 * (DEVBROKER_EXTRA_USERS of scripts/devbroker.sh); the benchmark runs them as publishers only
 * (--replica false). */
void rig_setup(struct rig *r, const struct rig_opts *o);

/* Starts consumer i (again); each run logs to a file of its own. */
void rig_start_cloud(struct rig *r, int i);

/* Starts edge i's syncedge. */
void rig_start_edge(struct rig *r, int i);

/* Waits until every running consumer and edge has connected to the broker with its
 * subscriptions granted (their logs say "mqtt: connected") and every edge has its outbox and
 * capture triggers. Fails the test after timeout_s. */
void rig_wait_ready(struct rig *r, int timeout_s);

/* Fails the test if a daemon the rig believes running has exited. */
void rig_check_alive(struct rig *r);

/* kill -9 consumer i and reap it. */
void rig_kill_cloud(struct rig *r, int i);

/* SIGTERM to a consumer; it must exit with status 0. Returns the seconds it took. */
double rig_stop_cloud(struct rig *r, int i);

/* Opens every edge's application connection (busy timeout 5 s). */
void rig_open_apps(struct rig *r);

/* Commits application transactions on e until it has committed at least `due` changes, at
 * most max_tx transactions per call. Each transaction holds 1..20 changes (never more than
 * are still due). A transaction whose statement does not change exactly one row fails the
 * test: only the application writes its key space. */
void rig_write(struct rig_edge *e, long long due, int max_tx);

/* Returns the integer the query yields on the cloud's store (read through the rig's own
 * connection), or -1 on any error (e.g. before synccloud created its tables). */
long long rig_cloud_int(struct rig *r, const char *sql);

/* The cloud's _sync_devices.applied of device (0 if unknown to it), -1 on error. */
long long rig_applied(struct rig *r, const char *device);

/* The sum of _sync_devices.applied over every device, -1 on error. */
long long rig_applied_total(struct rig *r);

/* Returns the count of e's _sync_outbox, or -1 on error. Prints nothing. */
long long rig_outbox(const struct rig_edge *e);

/* Runs the cloud's and every edge's --checksum; returns 1 if all outputs are identical and
 * cover both tables. The outputs stay in r->cloud_sum and each edge's sum. */
int rig_checksums(struct rig *r);

/* What a consumer says about its run when it stops. */
struct rig_stats {
    long long batches;     /* batches received */
    long long received;    /* changes in them */
    long long applied;     /* changes applied */
    long long conflicts;   /* changes that lost or were held as conflicts */
    long long duplicates;  /* changes already applied before (resent batches) */
    long long republished; /* retained rows published again (shared group), or -1 */
};

/* Reads the "stopping: N batches, N changes received, N applied, N conflicts, N duplicates"
 * line a consumer logs on SIGTERM from log, and in a shared group the count of "retained rows
 * published again". Returns 0, or -1 if the stopping line is not there. */
int rig_cloud_stats(const char *log, struct rig_stats *s);

/* Stops every edge and consumer still running with SIGTERM (each must exit with status 0),
 * then the broker and PostgreSQL, and closes the applications' connections. */
void rig_teardown(struct rig *r);

/* Prints a line prefixed with the rig's tag. */
void rig_say(const struct rig *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
