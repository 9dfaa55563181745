/* harness.h - small support library for integration tests (processes, ports, temp dirs, SQL).
 *
 * An integration test starts real servers (mosquitto, syncedge, synccloud) on free loopback
 * ports in one temporary folder, checks what they do, and must leave nothing behind, also
 * when a check fails or the test is interrupted. This library keeps a registry of every
 * process it spawned and of every log worth showing, and promises:
 *   - th_cleanup() runs at exit (atexit) and on SIGINT, SIGTERM, SIGHUP and SIGPIPE: it stops
 *     every registered process that is still alive (SIGTERM, then SIGKILL after 3 s) and
 *     removes the temporary folder, unless the environment variable TH_KEEP is set (then it
 *     prints where it is);
 *   - TH_CHECK(cond, fmt, ...) on failure prints file:line, the message and the tail of every
 *     registered log, cleans up and exits with status 1.
 * Errors of the helpers are printed to stderr with the prefix "harness: ".
 * Single-threaded tests only: the registry has no lock. The one exception is th_proxy, which
 * runs its own background thread; its functions are still meant to be called from the test's
 * main thread.
 */
#ifndef SYNC_TEST_HARNESS_H
#define SYNC_TEST_HARNESS_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

/* Returned by th_sql_int() when the query fails or yields no row. */
#define TH_SQL_ERR LLONG_MIN

/* Installs the atexit and signal handlers. Every other function calls it as needed, so a
 * test only calls it to get the handlers before anything else happens. Idempotent. */
void th_init(void);

/* Returns this test's temporary folder, created on the first call as
 * $TMPDIR/syncth-XXXXXX (or /tmp/... when TMPDIR is unset). Later calls return the same path.
 * The string is owned by the harness and lives until exit. Returns NULL (with a message) if
 * the folder cannot be created. */
const char *th_tmpdir(void);

/* Removes path recursively. Refuses (returns -1 with a message) anything that is not the
 * folder made by th_tmpdir() or inside it. Returns 0 on success, also if path is gone. */
int th_rmrf(const char *path);

/* Returns a TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close),
 * or -1 on error. Another process may take it before the caller binds it: tests accept that. */
int th_free_port(void);

/* Starts argv[0] (searched in PATH) with arguments argv (NULL-terminated), stdin from
 * /dev/null, stdout and stderr appended to logpath (created if needed). Records the pid in the
 * registry so th_cleanup() stops it. Returns the pid, or -1 with a message if the log cannot be
 * opened or the program cannot be executed (the failure is also written to logpath). */
pid_t th_spawn(const char *logpath, char *const argv[]);

/* Adds a process the harness did not fork (e.g. read from a pid file) to the registry, so
 * th_cleanup() stops it too. Returns 0, or -1 if the registry is full. */
int th_register_pid(pid_t pid);

/* Sends signal sig to pid. Returns 0, or -1 (with a message) if it failed for a reason other
 * than the process being gone. */
int th_kill(pid_t pid, int sig);

/* Waits up to timeout_ms for pid to exit and reaps it if it is our child. If it is still alive
 * then and kill_after is nonzero, sends SIGKILL and waits for it. Returns the wait status
 * (use WIFEXITED/WEXITSTATUS; 0 for a process that is not our child), or -1 if the process is
 * still running or pid is unknown. */
int th_wait_exit(pid_t pid, int timeout_ms, int kill_after);

/* Returns 1 if pid is alive (and not a zombie of ours), 0 otherwise. Reaps it if it exited. */
int th_alive(pid_t pid);

/* Waits until something accepts TCP connections on 127.0.0.1:port. Returns 0, or -1 after
 * timeout_ms. */
int th_wait_port(int port, int timeout_ms);

/* Runs a shell command built with printf-style fmt through system(). Returns its exit status
 * (0..255), 128+N if it died of signal N, or -1 if it could not be run. Paths in the command
 * should be quoted with th_shq(). */
int th_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Like th_run() but collects the command's stdout into *out (NUL-terminated, allocated;
 * the caller frees it; set to NULL on error). Returns the exit status as th_run() does. */
int th_capture(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Calls pred(ctx) every 50 ms until it returns nonzero (then returns 0) or timeout_ms has
 * passed (then returns -1 after one last call). */
int th_wait_until(int (*pred)(void *), void *ctx, int timeout_ms);

/* Opens the SQLite database dbpath (created if missing) with a busy timeout of 5 s, runs the
 * SQL built with sqlite3_mprintf-style fmt (so %q, %Q and %w quote safely) and closes it.
 * Several statements separated by ';' are allowed. Returns 0, or -1 with a message. */
int th_sql_exec(const char *dbpath, const char *fmt, ...);

/* Opens the existing database dbpath (never creates it) with a busy timeout of 5 s, runs the
 * query built like th_sql_exec() and returns the integer in the first column of the first row
 * (NULL reads as 0). Returns TH_SQL_ERR with a message on error or when there is no row. */
long long th_sql_int(const char *dbpath, const char *fmt, ...);

/* Runs sql (one or more statements) on the existing database dbpath as an application would:
 * its own connection, a busy timeout of 5 s. Returns NULL, or SQLite's error message (kept until
 * th_cleanup), so a test can check what the application was told. */
const char *th_sql_try(const char *dbpath, const char *sql);

/* Waits up to timeout_ms until th_sql_int(dbpath, sql) is want; fails the test otherwise, with
 * `what`, the query and the last value. */
void th_wait_sql(const char *dbpath, const char *sql, long long want, int timeout_ms,
                 const char *what);

/* Reads the first line of path into buf (size n, NUL-terminated, newline removed).
 * Returns 0, or -1 if the file cannot be read or is empty. */
int th_read_first_line(const char *path, char *buf, size_t n);

/* Prints the last nlines lines of path to stderr under a header naming the file. */
void th_log_tail(const char *path, int nlines);

/* Runs a shell command and returns its stdout (the caller frees it), or NULL if it exited
 * nonzero. */
char *th_output(const char *cmd);

/* Stops a daemon with SIGTERM (SIGKILL after 15 s) and reaps it. With must_be_clean, anything
 * but exit status 0 fails the test after showing the tail of log: that also catches leaks and
 * errors that sanitizer builds report at exit. Returns the seconds the stop took. */
double th_stop(pid_t pid, const char *name, const char *log, int must_be_clean);

/* Remembers path so a failing TH_CHECK prints its tail. Returns 0, or -1 if the list is full. */
int th_register_log(const char *path);

/* Prints the tail of every registered log to stderr. */
void th_dump_logs(int nlines);

/* Stops every registered process that is still alive (SIGTERM, then SIGKILL after 3 s), then
 * every proxy still running, and removes the temporary folder unless TH_KEEP is set in the
 * environment (then prints its path). Safe to call more than once; runs by itself at exit and
 * on those signals. */
void th_cleanup(void);

/* Returns a printf-formatted string owned by the harness (freed at exit), or aborts on
 * allocation failure. Handy for building argv arrays and paths. */
const char *th_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Returns s quoted for a POSIX shell ('...'), owned by the harness (freed at exit). */
const char *th_shq(const char *s);

/* Returns the shell command that runs the daemon argv[0..n-1] (each word quoted) with
 * --checksum added, its stderr appended to errlog; owned by the harness. Fails the test if the
 * command would not fit in 8 KiB. */
const char *th_checksum_cmd(char *const argv[], int n, const char *errlog);

/* Returns a monotonic clock reading in seconds, for measuring durations. */
double th_now(void);

/* ---- TCP forwarding proxy (network faults) ---------------------------------------------- */

/* A TCP proxy on 127.0.0.1 that forwards every accepted connection to 127.0.0.1:target_port,
 * bytes both ways and untouched (TLS passes through), on one background thread. A test puts it
 * between a client and a server to cut the network between them at will. */
typedef struct th_proxy th_proxy;

/* Listens on 127.0.0.1:listen_port and starts forwarding. Each accepted connection gets its own
 * connection to the target; if the target does not accept it (server down), the client's
 * connection is closed. Returns the proxy (owned by the caller, released by th_proxy_stop(); a
 * proxy still running at th_cleanup() is stopped there), or NULL with a message if the port
 * cannot be bound or the thread cannot be started. */
th_proxy *th_proxy_start(int listen_port, int target_port);

/* cut = 1: closes every current connection at once, with a reset to both ends (as a router or
 * NAT that lost the flow answers), and closes each new one as soon as it is accepted, until
 * called with cut = 0, which restores normal forwarding for new connections. Returns when the
 * proxy has done it (or after 10 s with a message if its thread does not answer). */
void th_proxy_cut(th_proxy *p, int cut);

/* Stops the thread, closes every connection and the listening socket, frees p. NULL is a no-op.
 * Must not be called twice for the same proxy. */
void th_proxy_stop(th_proxy *p);

/* Reports a failure and exits with status 1 after printing log tails and cleaning up. expr is
 * the failed condition's text, or NULL. Use TH_CHECK/TH_FAIL rather than calling it directly. */
_Noreturn void th_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* TH_CHECK(cond, fmt, ...): fails the test with a message when cond is false. */
#define TH_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            th_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                       \
    } while (0)

/* TH_FAIL(fmt, ...): fails the test unconditionally with a message. */
#define TH_FAIL(...) th_fail(__FILE__, __LINE__, NULL, __VA_ARGS__)

/* ---- throwaway PostgreSQL server ------------------------------------------------------- */

/* Exit status of a test that skipped itself (give ctest SKIP_RETURN_CODE 77). */
#define TH_SKIP 77

/* Starts a PostgreSQL server of its own for this test: initdb of a new cluster in
 * th_tmpdir()/pg (trust authentication, UTF8, C locale), postgres on 127.0.0.1 at a free port
 * with its unix socket in that folder, a role `synccloud` and a database `synctest` it owns.
 * Returns the connection string "host=127.0.0.1 port=N dbname=synctest user=synccloud" (owned
 * by the harness). Run as root, the server runs as the `postgres` system user (PostgreSQL
 * refuses root), so the temp folder is made traversable (0711) and the cluster folder is given
 * to that user. The binaries are looked for in $SYNC_PG_BINDIR, `pg_config --bindir`,
 * /usr/lib/postgresql/N/bin (highest N) and PATH. The server is stopped (a fast shutdown) by
 * th_pg_stop() or th_cleanup(), also when the test fails or is interrupted; its log is shown
 * by a failing TH_CHECK.
 * Never returns NULL: if the binaries are not installed, it fails the test when the
 * environment has CI=true (or 1) and otherwise exits with TH_SKIP after saying why; any other
 * problem fails the test. One server per test program. */
const char *th_pg_start(void);

/* The port of the server th_pg_start() started (0 if none). */
int th_pg_port(void);

/* Stops the server th_pg_start() started (fast shutdown: sessions are ended) and waits for it.
 * A no-op if none runs. */
void th_pg_stop(void);

/* Runs the SQL built with printf-style fmt (values quoted by the caller) on the database of
 * conninfo with psql, as one transaction (one statement that cannot run inside one, such as
 * CREATE DATABASE, works alone). Returns 0, or -1 with psql's message. */
int th_pg_exec(const char *conninfo, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Runs the query built like th_pg_exec() and returns the integer in the first column of the
 * first row (NULL reads as 0). Returns TH_SQL_ERR with a message on error or when there is
 * no row. */
long long th_pg_int(const char *conninfo, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
