/* harness.c - process registry, temp folder, ports, shell and SQLite helpers for tests.
 *
 * See harness.h for the contract. Everything here is meant for single-threaded test
 * programs: the registries are plain static arrays, and the signal handler calls
 * th_cleanup() directly (not async-signal-safe in theory; in a test that is interrupted,
 * leaving no servers behind matters more). The TCP proxy is the one part with a thread of its
 * own: it shares with the caller only what its mutex (and one atomic stop flag) guards.
 */
/* accept4() and pipe2() create descriptors that are close-on-exec from the start: the proxy's
 * thread makes sockets while the main thread forks servers, which must not inherit them. */
#define _GNU_SOURCE

#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TH__MAX_PROCS 64       /* processes one test may start */
#define TH__MAX_LOGS 32        /* logs shown by a failing TH_CHECK */
#define TH__PATH 4096          /* room for a path */
#define TH__POLL_MS 50         /* polling period of the wait helpers */
#define TH__TERM_GRACE_MS 3000 /* time between SIGTERM and SIGKILL in th_cleanup() */
#define TH__TAIL_BYTES 65536   /* how far back th_log_tail() reads */
#define TH__MAX_PROXIES 16     /* proxies th_cleanup() knows about */
#define TH__PROXY_CONNS 32     /* connections one proxy forwards at once */
#define TH__PROXY_BUF 65536    /* bytes buffered per direction of a connection */
#define TH__PROXY_WAIT_S 10    /* longest th_proxy_cut() waits for the thread */

struct th__proc {
    pid_t pid;     /* process id; 0 marks a free slot */
    int child;     /* 1 if th_spawn() forked it (so it can be reaped) */
    int done;      /* 1 once it has been reaped or seen gone */
    char name[64]; /* basename of argv[0], for messages */
};

struct th__str {
    struct th__str *next; /* next string handed out by th_fmt()/th_shq() */
    char s[];             /* the string itself */
};

/* One forwarded connection. Only the proxy's thread touches it. */
struct th__pconn {
    int fd[2];      /* 0: the accepted client; 1: our connection to the target */
    int connecting; /* 1 while the connection to the target is in progress */
    int eof[2];     /* fd[i] said end-of-file: nothing more to read from it */
    int shut[2];    /* writing on fd[i] is shut down (its peer has seen end-of-file) */
    size_t beg[2];  /* buf[i][beg[i] .. end[i]) came from fd[i] and waits for fd[1 - i] */
    size_t end[2];  /* see beg */
    unsigned char buf[2][TH__PROXY_BUF]; /* one buffer per direction */
};

struct th_proxy {
    int lfd;                /* listening socket on 127.0.0.1 */
    int wake[2];            /* self-pipe: callers write wake[1] so poll() in the thread returns */
    int target_port;        /* where accepted connections are forwarded */
    pthread_t thread;       /* the forwarding thread */
    atomic_int stop;        /* set by th_proxy_stop(): the thread returns */
    pthread_mutex_t lock;   /* guards cut_want, req and done */
    pthread_cond_t applied; /* broadcast when the thread has caught up with req */
    int cut_want;           /* requested state: 1 cut off, 0 forwarding */
    unsigned req;           /* cut requests made */
    unsigned done;          /* cut requests the thread has applied */
    int cut;                /* state in force (thread only) */
    struct th__pconn *conns[TH__PROXY_CONNS]; /* live connections, NULL = free (thread only) */
};

static struct th__proc th__procs[TH__MAX_PROCS];
static th_proxy *th__proxies[TH__MAX_PROXIES]; /* proxies running, for th_cleanup() */
static char *th__logs[TH__MAX_LOGS];
static struct th__str *th__strs;
static char th__dir[TH__PATH];  /* the temp folder as created */
static char th__real[TH__PATH]; /* its canonical path, for th_rmrf()'s check */
static int th__kept;            /* TH_KEEP message already printed */
static int th__inited;
static pid_t th__owner; /* pid that called th_init(): forked copies never clean up */
static volatile sig_atomic_t th__cleaning;

static void th__err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void th__err(const char *fmt, ...)
{
    va_list ap;

    fputs("harness: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void th__sleep_ms(int ms)
{
    struct timespec ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

double th_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Returns a malloc'd formatted string, or NULL. */
static char *th__vfmt(const char *fmt, va_list ap)
{
    va_list ap2;
    int n;
    char *s;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    s = malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

/* Keeps s (length len) in the list freed at exit and returns its copy. */
static const char *th__keep(const char *s, size_t len)
{
    struct th__str *e = malloc(sizeof(*e) + len + 1);

    if (e == NULL) {
        th__err("out of memory");
        abort();
    }
    memcpy(e->s, s, len);
    e->s[len] = '\0';
    e->next = th__strs;
    th__strs = e;
    return e->s;
}

const char *th_fmt(const char *fmt, ...)
{
    va_list ap;
    char *s;
    const char *kept;

    va_start(ap, fmt);
    s = th__vfmt(fmt, ap);
    va_end(ap);
    if (s == NULL) {
        th__err("out of memory");
        abort();
    }
    kept = th__keep(s, strlen(s));
    free(s);
    return kept;
}

const char *th_shq(const char *s)
{
    size_t len = 2, i, o = 0;
    char *q;
    const char *kept;

    for (i = 0; s[i] != '\0'; i++)
        len += s[i] == '\'' ? 4 : 1;
    q = malloc(len + 1);
    if (q == NULL) {
        th__err("out of memory");
        abort();
    }
    q[o++] = '\'';
    for (i = 0; s[i] != '\0'; i++) {
        if (s[i] == '\'') {
            /* Close the quote, add an escaped quote, reopen: the only way in sh. */
            memcpy(q + o, "'\\''", 4);
            o += 4;
        } else {
            q[o++] = s[i];
        }
    }
    q[o++] = '\'';
    kept = th__keep(q, o);
    free(q);
    return kept;
}

static void th__on_signal(int sig)
{
    static const char msg[] = "harness: killed by a signal, cleaning up\n";

    if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
        /* Nothing useful to do if stderr is gone. */
    }
    th_cleanup();
    /* Die of the same signal, so the caller (ctest, a shell) sees what happened. */
    signal(sig, SIG_DFL);
    raise(sig);
}

static void th__atexit(void)
{
    struct th__str *e;
    int i;

    th_cleanup();
    if (getpid() != th__owner)
        return;
    while (th__strs != NULL) {
        e = th__strs;
        th__strs = e->next;
        free(e);
    }
    for (i = 0; i < TH__MAX_LOGS; i++) {
        free(th__logs[i]);
        th__logs[i] = NULL;
    }
}

void th_init(void)
{
    struct sigaction sa;

    if (th__inited)
        return;
    th__inited = 1;
    th__owner = getpid();
    atexit(th__atexit);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = th__on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* A test piped into `head` dies of SIGPIPE: it must not leave its servers running. */
    sigaction(SIGPIPE, &sa, NULL);
}

const char *th_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    size_t len;

    th_init();
    if (th__dir[0] != '\0')
        return th__dir;
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    len = strlen(base);
    while (len > 1 && base[len - 1] == '/')
        len--;
    if (snprintf(th__dir, sizeof(th__dir), "%.*s/syncth-XXXXXX", (int)len, base) >=
        (int)sizeof(th__dir)) {
        th__dir[0] = '\0';
        th__err("TMPDIR is too long");
        return NULL;
    }
    if (mkdtemp(th__dir) == NULL) {
        th__err("cannot create a temporary folder under %.*s: %s", (int)len, base, strerror(errno));
        th__dir[0] = '\0';
        return NULL;
    }
    if (realpath(th__dir, th__real) == NULL) {
        th__err("realpath(%s): %s", th__dir, strerror(errno));
        rmdir(th__dir);
        th__dir[0] = '\0';
        return NULL;
    }
    th__kept = 0;
    return th__dir;
}

/* Removes path and, if it is a folder, everything in it; never follows symlinks. */
static int th__rm_tree(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    char sub[TH__PATH];
    int rc = 0;

    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    if (S_ISDIR(st.st_mode)) {
        d = opendir(path);
        if (d == NULL) {
            th__err("cannot open folder %s: %s", path, strerror(errno));
            return -1;
        }
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if (snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name) >= (int)sizeof(sub)) {
                th__err("path too long under %s", path);
                rc = -1;
                continue;
            }
            if (th__rm_tree(sub) != 0)
                rc = -1;
        }
        closedir(d);
        if (rc == 0 && rmdir(path) != 0 && errno != ENOENT) {
            th__err("cannot remove %s: %s", path, strerror(errno));
            rc = -1;
        }
        return rc;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        th__err("cannot remove %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int th_rmrf(const char *path)
{
    char real[TH__PATH];
    size_t n = strlen(th__real);

    if (path == NULL || path[0] == '\0') {
        th__err("th_rmrf: empty path refused");
        return -1;
    }
    if (th__real[0] == '\0') {
        th__err("th_rmrf: refusing %s: th_tmpdir() made no folder", path);
        return -1;
    }
    if (realpath(path, real) == NULL) {
        if (errno == ENOENT)
            return 0;
        th__err("th_rmrf: realpath(%s): %s", path, strerror(errno));
        return -1;
    }
    /* Only the temp folder itself or something below it: never a path that merely shares
     * its prefix (/tmp/syncth-abc1 vs /tmp/syncth-abc), never through a symlink outside. */
    if (strncmp(real, th__real, n) != 0 || (real[n] != '\0' && real[n] != '/')) {
        th__err("th_rmrf: refusing %s: not inside %s", path, th__real);
        return -1;
    }
    return th__rm_tree(real);
}

int th_free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd, port;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        th__err("socket: %s", strerror(errno));
        return -1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        th__err("cannot get a free port: %s", strerror(errno));
        close(fd);
        return -1;
    }
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static struct th__proc *th__find(pid_t pid)
{
    int i;

    for (i = 0; i < TH__MAX_PROCS; i++)
        if (th__procs[i].pid == pid)
            return &th__procs[i];
    return NULL;
}

static struct th__proc *th__slot(pid_t pid, int child, const char *name)
{
    struct th__proc *p = th__find(pid);
    const char *base;

    if (p == NULL)
        p = th__find(0);
    if (p == NULL)
        return NULL;
    p->pid = pid;
    p->child = child;
    p->done = 0;
    base = strrchr(name, '/');
    snprintf(p->name, sizeof(p->name), "%s", base != NULL ? base + 1 : name);
    return p;
}

pid_t th_spawn(const char *logpath, char *const argv[])
{
    int fd, pfd[2], e = 0, nullfd;
    ssize_t r;
    pid_t pid;

    th_init();
    if (argv == NULL || argv[0] == NULL) {
        th__err("th_spawn: empty argv");
        return -1;
    }
    if (th__find(0) == NULL) {
        th__err("th_spawn: more than %d processes", TH__MAX_PROCS);
        return -1;
    }
    fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        th__err("th_spawn: cannot open log %s: %s", logpath, strerror(errno));
        return -1;
    }
    /* The child writes errno here if exec fails; on success exec closes it (CLOEXEC) and
     * the parent reads end-of-file. That tells a typo in a path from a program that runs. */
    if (pipe(pfd) != 0) {
        th__err("pipe: %s", strerror(errno));
        close(fd);
        return -1;
    }
    fcntl(pfd[0], F_SETFD, FD_CLOEXEC);
    fcntl(pfd[1], F_SETFD, FD_CLOEXEC);
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        th__err("fork: %s", strerror(errno));
        close(fd);
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        close(pfd[0]);
        nullfd = open("/dev/null", O_RDONLY);
        if (nullfd >= 0 && nullfd != STDIN_FILENO) {
            dup2(nullfd, STDIN_FILENO);
            close(nullfd);
        }
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execvp(argv[0], argv);
        e = errno;
        dprintf(STDERR_FILENO, "harness: cannot execute %s: %s\n", argv[0], strerror(e));
        if (write(pfd[1], &e, sizeof(e)) < 0) {
            /* The parent will see end-of-file and the exit status 127. */
        }
        _exit(127);
    }
    close(fd);
    close(pfd[1]);
    do {
        r = read(pfd[0], &e, sizeof(e));
    } while (r < 0 && errno == EINTR);
    close(pfd[0]);
    if (r == (ssize_t)sizeof(e)) {
        th__err("th_spawn: cannot execute %s: %s", argv[0], strerror(e));
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        return -1;
    }
    th__slot(pid, 1, argv[0]);
    return pid;
}

int th_register_pid(pid_t pid)
{
    th_init();
    if (pid <= 1) {
        th__err("th_register_pid: bad pid %ld", (long)pid);
        return -1;
    }
    if (th__slot(pid, 0, "registered") == NULL) {
        th__err("th_register_pid: more than %d processes", TH__MAX_PROCS);
        return -1;
    }
    return 0;
}

int th_kill(pid_t pid, int sig)
{
    struct th__proc *p = th__find(pid);

    /* kill(0) and kill(-1) would hit our own group or every process we may signal. */
    if (pid <= 1) {
        th__err("th_kill: refusing pid %ld", (long)pid);
        return -1;
    }
    if (p != NULL && p->done)
        return 0;
    if (kill(pid, sig) == 0 || errno == ESRCH)
        return 0;
    th__err("kill(%ld, %d): %s", (long)pid, sig, strerror(errno));
    return -1;
}

/* Returns 1 if /proc says pid is a zombie, 0 otherwise (also when /proc is not there). */
static int th__zombie(pid_t pid)
{
    char path[64], buf[512], *p;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The state follows the command name, which is in parentheses and may contain spaces. */
    p = strrchr(buf, ')');
    return p != NULL && p[1] == ' ' && p[2] == 'Z';
}

/* Returns 1 and the wait status in *status if pid is gone (reaping it if it is our child),
 * 0 if it still runs. */
static int th__poll_exit(pid_t pid, int *status)
{
    struct th__proc *p = th__find(pid);
    pid_t r;
    int st = 0;

    if (p != NULL && p->done) {
        *status = 0;
        return 1;
    }
    r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
        if (p != NULL)
            p->done = 1;
        *status = st;
        return 1;
    }
    if (r == 0 || (r < 0 && errno == EINTR))
        return 0;
    /* Not our child (registered from a pid file, or already reaped): ask the kernel. A
     * zombie nobody reaps (our orphan under an init that does not reap) counts as gone. */
    if ((kill(pid, 0) == 0 || errno == EPERM) && !th__zombie(pid))
        return 0;
    if (p != NULL)
        p->done = 1;
    *status = 0;
    return 1;
}

int th_alive(pid_t pid)
{
    int st;

    if (pid <= 1)
        return 0;
    return th__poll_exit(pid, &st) == 0;
}

int th_wait_exit(pid_t pid, int timeout_ms, int kill_after)
{
    double deadline = th_now() + timeout_ms / 1000.0;
    int st;

    if (pid <= 1) {
        th__err("th_wait_exit: bad pid %ld", (long)pid);
        return -1;
    }
    for (;;) {
        if (th__poll_exit(pid, &st))
            return st;
        if (th_now() >= deadline)
            break;
        th__sleep_ms(10);
    }
    if (!kill_after)
        return -1;
    th_kill(pid, SIGKILL);
    deadline = th_now() + 5.0;
    while (th_now() < deadline) {
        if (th__poll_exit(pid, &st))
            return st;
        th__sleep_ms(10);
    }
    th__err("pid %ld survived SIGKILL for 5 s", (long)pid);
    return -1;
}

int th_wait_port(int port, int timeout_ms)
{
    double deadline = th_now() + timeout_ms / 1000.0;
    struct sockaddr_in sa;
    int fd, ok;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((unsigned short)port);
    for (;;) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) {
            th__err("socket: %s", strerror(errno));
            return -1;
        }
        ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        close(fd);
        if (ok)
            return 0;
        if (th_now() >= deadline)
            return -1;
        th__sleep_ms(TH__POLL_MS);
    }
}

static int th__status(int st)
{
    if (st == -1)
        return -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

int th_run(const char *fmt, ...)
{
    va_list ap;
    char *cmd;
    int st;

    va_start(ap, fmt);
    cmd = th__vfmt(fmt, ap);
    va_end(ap);
    if (cmd == NULL) {
        th__err("th_run: out of memory");
        return -1;
    }
    fflush(NULL);
    st = system(cmd);
    if (st == -1)
        th__err("cannot run: %s: %s", cmd, strerror(errno));
    free(cmd);
    return th__status(st);
}

int th_capture(char **out, const char *fmt, ...)
{
    va_list ap;
    char *cmd, *buf = NULL, *nb;
    size_t len = 0, cap = 0, n;
    FILE *f;
    int st;

    *out = NULL;
    va_start(ap, fmt);
    cmd = th__vfmt(fmt, ap);
    va_end(ap);
    if (cmd == NULL) {
        th__err("th_capture: out of memory");
        return -1;
    }
    fflush(NULL);
    f = popen(cmd, "r");
    if (f == NULL) {
        th__err("cannot run: %s: %s", cmd, strerror(errno));
        free(cmd);
        return -1;
    }
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                th__err("th_capture: out of memory");
                free(buf);
                pclose(f);
                free(cmd);
                return -1;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
    }
    buf[len] = '\0';
    st = pclose(f);
    free(cmd);
    *out = buf;
    return th__status(st);
}

int th_wait_until(int (*pred)(void *), void *ctx, int timeout_ms)
{
    double deadline = th_now() + timeout_ms / 1000.0;

    for (;;) {
        if (pred(ctx))
            return 0;
        if (th_now() >= deadline)
            return pred(ctx) ? 0 : -1;
        th__sleep_ms(TH__POLL_MS);
    }
}

static sqlite3 *th__sql_open(const char *dbpath, int create)
{
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(dbpath, &db, flags, NULL);

    if (rc != SQLITE_OK) {
        th__err("cannot open %s: %s", dbpath, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    /* The daemons write the same files (WAL): wait for their locks instead of failing. */
    sqlite3_busy_timeout(db, 5000);
    return db;
}

int th_sql_exec(const char *dbpath, const char *fmt, ...)
{
    va_list ap;
    sqlite3 *db;
    char *sql, *msg = NULL;
    int rc;

    va_start(ap, fmt);
    sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    if (sql == NULL) {
        th__err("th_sql_exec: out of memory");
        return -1;
    }
    db = th__sql_open(dbpath, 1);
    if (db == NULL) {
        sqlite3_free(sql);
        return -1;
    }
    rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        th__err("%s: %s\n  in: %.300s", dbpath, msg ? msg : sqlite3_errstr(rc), sql);
    sqlite3_free(msg);
    sqlite3_free(sql);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

long long th_sql_int(const char *dbpath, const char *fmt, ...)
{
    va_list ap;
    sqlite3 *db;
    sqlite3_stmt *st = NULL;
    char *sql;
    long long v = TH_SQL_ERR;
    int rc;

    va_start(ap, fmt);
    sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    if (sql == NULL) {
        th__err("th_sql_int: out of memory");
        return TH_SQL_ERR;
    }
    db = th__sql_open(dbpath, 0);
    if (db == NULL) {
        sqlite3_free(sql);
        return TH_SQL_ERR;
    }
    rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE)
        th__err("%s: no row from: %.300s", dbpath, sql);
    else
        th__err("%s: %s\n  in: %.300s", dbpath, sqlite3_errmsg(db), sql);
    sqlite3_finalize(st);
    sqlite3_free(sql);
    sqlite3_close(db);
    return v;
}

const char *th_sql_try(const char *dbpath, const char *sql)
{
    sqlite3 *db = th__sql_open(dbpath, 0);
    if (db == NULL)
        return th_fmt("cannot open %s", dbpath);
    char *msg = NULL;
    const char *out = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        out = th_fmt("%s", msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    sqlite3_close(db);
    return out;
}

struct th__sql_is {
    const char *db, *sql;
    long long want;
};

static int th__sql_is(void *ctx)
{
    const struct th__sql_is *q = ctx;
    return th_sql_int(q->db, "%s", q->sql) == q->want;
}

void th_wait_sql(const char *dbpath, const char *sql, long long want, int timeout_ms,
                 const char *what)
{
    struct th__sql_is q = {dbpath, sql, want};
    TH_CHECK(th_wait_until(th__sql_is, &q, timeout_ms) == 0,
             "%s: `%s` on %s gives %lld, not %lld", what, sql, dbpath,
             th_sql_int(dbpath, "%s", sql), want);
}

int th_read_first_line(const char *path, char *buf, size_t n)
{
    FILE *f;
    size_t len;

    if (n == 0)
        return -1;
    buf[0] = '\0';
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    if (fgets(buf, (int)(n > 4096 * 1024 ? 4096 * 1024 : n), f) == NULL) {
        fclose(f);
        buf[0] = '\0';
        return -1;
    }
    fclose(f);
    len = strcspn(buf, "\r\n");
    buf[len] = '\0';
    return len > 0 ? 0 : -1;
}

void th_log_tail(const char *path, int nlines)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long size, from;
    size_t len, i;
    int seen = 0;

    if (f == NULL) {
        fprintf(stderr, "---- %s: cannot open: %s ----\n", path, strerror(errno));
        return;
    }
    buf = malloc(TH__TAIL_BYTES + 1);
    if (buf == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0) {
        fprintf(stderr, "---- %s: cannot read ----\n", path);
        free(buf);
        fclose(f);
        return;
    }
    from = size > TH__TAIL_BYTES ? size - TH__TAIL_BYTES : 0;
    fseek(f, from, SEEK_SET);
    len = fread(buf, 1, TH__TAIL_BYTES, f);
    fclose(f);
    buf[len] = '\0';
    /* Walk back over nlines newlines; a final newline does not start a line. */
    i = len;
    if (i > 0 && buf[i - 1] == '\n')
        i--;
    while (i > 0) {
        if (buf[i - 1] == '\n' && ++seen == nlines)
            break;
        i--;
    }
    /* A sanitizer report is worth more than the lines after it: start there if it is earlier. */
    {
        static const char *const marks[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                            "runtime error:", "ThreadSanitizer"};
        for (size_t k = 0; k < sizeof marks / sizeof marks[0]; k++) {
            const char *hit = strstr(buf, marks[k]);
            size_t at = hit ? (size_t)(hit - buf) : len;
            if (at < i) {
                while (at > 0 && buf[at - 1] != '\n')
                    at--;
                i = at;
            }
        }
    }
    fprintf(stderr, "---- last %d lines of %s ----\n%s", nlines, path, buf + i);
    if (len > 0 && buf[len - 1] != '\n')
        fputc('\n', stderr);
    fprintf(stderr, "---- end of %s ----\n", path);
    free(buf);
}

int th_register_log(const char *path)
{
    int i, free_slot = -1;

    th_init();
    for (i = 0; i < TH__MAX_LOGS; i++) {
        if (th__logs[i] != NULL && strcmp(th__logs[i], path) == 0)
            return 0;
        if (th__logs[i] == NULL && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0) {
        th__err("th_register_log: more than %d logs", TH__MAX_LOGS);
        return -1;
    }
    th__logs[free_slot] = strdup(path);
    return th__logs[free_slot] != NULL ? 0 : -1;
}

void th_dump_logs(int nlines)
{
    int i;

    for (i = 0; i < TH__MAX_LOGS; i++)
        if (th__logs[i] != NULL)
            th_log_tail(th__logs[i], nlines);
}

void th_cleanup(void)
{
    int i, st, left;
    double deadline;

    if (!th__inited || th__cleaning || getpid() != th__owner)
        return;
    th__cleaning = 1;

    for (i = 0; i < TH__MAX_PROCS; i++) {
        struct th__proc *p = &th__procs[i];
        if (p->pid > 1 && !p->done && th_alive(p->pid))
            kill(p->pid, SIGTERM);
    }
    deadline = th_now() + TH__TERM_GRACE_MS / 1000.0;
    do {
        left = 0;
        for (i = 0; i < TH__MAX_PROCS; i++)
            if (th__procs[i].pid > 1 && !th__procs[i].done && !th__poll_exit(th__procs[i].pid, &st))
                left++;
        if (left > 0)
            th__sleep_ms(20);
    } while (left > 0 && th_now() < deadline);
    if (left > 0) {
        for (i = 0; i < TH__MAX_PROCS; i++) {
            struct th__proc *p = &th__procs[i];
            if (p->pid > 1 && !p->done) {
                th__err("%s (pid %ld) ignored SIGTERM, sending SIGKILL", p->name, (long)p->pid);
                th_wait_exit(p->pid, 0, 1);
            }
        }
    }

    /* After the processes: a client stopping cleanly still talks through its proxy. */
    for (i = 0; i < TH__MAX_PROXIES; i++)
        if (th__proxies[i] != NULL)
            th_proxy_stop(th__proxies[i]);

    if (th__dir[0] != '\0') {
        if (getenv("TH_KEEP") != NULL) {
            if (!th__kept)
                fprintf(stderr, "harness: TH_KEEP is set: kept %s\n", th__dir);
            th__kept = 1;
        } else if (th_rmrf(th__dir) == 0) {
            th__dir[0] = '\0';
            th__real[0] = '\0';
        }
    }
    th__cleaning = 0;
}

_Noreturn void th_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    if (expr != NULL)
        fprintf(stderr, "%s:%d: check failed: %s\n  ", file, line, expr);
    else
        fprintf(stderr, "%s:%d: failed: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    th_dump_logs(40);
    th_cleanup();
    exit(1);
}

/* ---- TCP forwarding proxy -------------------------------------------------------------- */

/* Closes fd so that its peer gets a reset rather than an orderly end-of-file: what a broken
 * network path looks like to a client once it notices. */
static void th__close_reset(int fd)
{
    struct linger lg;

    lg.l_onoff = 1;
    lg.l_linger = 0;
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* Closes both sides of connection slot i (with resets if reset is nonzero) and frees it. */
static void th__pconn_close(th_proxy *p, int i, int reset)
{
    struct th__pconn *c = p->conns[i];
    int s;

    for (s = 0; s < 2; s++) {
        if (reset)
            th__close_reset(c->fd[s]);
        else
            close(c->fd[s]);
    }
    free(c);
    p->conns[i] = NULL;
}

/* Accepts every pending connection and starts its connection to the target. While the proxy
 * is cut, or when every slot is taken, a new connection is closed at once. */
static void th__proxy_accept(th_proxy *p)
{
    struct sockaddr_in sa;
    struct th__pconn *c;
    int cfd, tfd, i, one = 1;

    for (;;) {
        cfd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                th__err("proxy: accept: %s", strerror(errno));
            return;
        }
        for (i = 0; i < TH__PROXY_CONNS && p->conns[i] != NULL; i++) {
        }
        if (p->cut || i == TH__PROXY_CONNS) {
            if (!p->cut)
                th__err("proxy: more than %d connections, closing a new one", TH__PROXY_CONNS);
            th__close_reset(cfd);
            continue;
        }
        c = calloc(1, sizeof(*c));
        tfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c == NULL || tfd < 0) {
            th__err("proxy: %s", c == NULL ? "out of memory" : strerror(errno));
            free(c);
            if (tfd >= 0)
                close(tfd);
            close(cfd);
            continue;
        }
        /* The proxy must not add latency to small packets (MQTT acks) that the ends send at
         * once. */
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(tfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((unsigned short)p->target_port);
        c->fd[0] = cfd;
        c->fd[1] = tfd;
        if (connect(tfd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            c->connecting = 0;
        } else if (errno == EINPROGRESS || errno == EINTR) {
            c->connecting = 1;
        } else {
            /* Target down: the client sees its connection closed, as with a dead server. */
            close(tfd);
            close(cfd);
            free(c);
            continue;
        }
        p->conns[i] = c;
    }
}

/* Moves what can move from fd[i] to fd[1 - i] without blocking, and passes an end-of-file on
 * once everything before it is delivered. Returns 0, or -1 if the connection is broken. */
static int th__pump(struct th__pconn *c, int i)
{
    int o = 1 - i, rounds;
    ssize_t n;

    /* A bounded number of buffers per call keeps one busy connection from starving others. */
    for (rounds = 0; rounds < 16; rounds++) {
        if (c->beg[i] < c->end[i]) {
            n = send(c->fd[o], c->buf[i] + c->beg[i], c->end[i] - c->beg[i], MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
            }
            c->beg[i] += (size_t)n;
            if (c->beg[i] < c->end[i])
                return 0;
            c->beg[i] = c->end[i] = 0;
        }
        if (c->eof[i]) {
            if (!c->shut[o]) {
                shutdown(c->fd[o], SHUT_WR);
                c->shut[o] = 1;
            }
            return 0;
        }
        n = recv(c->fd[i], c->buf[i], TH__PROXY_BUF, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        }
        if (n == 0)
            c->eof[i] = 1;
        c->end[i] = (size_t)n;
    }
    return 0;
}

/* Handles what poll() reported for connection slot k (revents of its client and target). */
static void th__proxy_serve(th_proxy *p, int k, short rev0, short rev1)
{
    struct th__pconn *c = p->conns[k];
    int err = 0, broken = 0;
    socklen_t len = sizeof(err);

    if (c->connecting) {
        if (rev0 != 0) {
            /* The client left (or broke) before the target answered. */
            th__pconn_close(p, k, 0);
            return;
        }
        if (rev1 == 0)
            return;
        if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            th__pconn_close(p, k, 0);
            return;
        }
        c->connecting = 0;
    }
    if ((rev0 | rev1) & (POLLERR | POLLNVAL)) {
        th__pconn_close(p, k, 0);
        return;
    }
    if (th__pump(c, 0) != 0 || th__pump(c, 1) != 0)
        broken = 1;
    /* POLLHUP: that end is closed both ways, so nothing can be written to it any more. What
     * it sent has just been passed on as far as possible; the connection is over. */
    if (broken || ((rev0 | rev1) & POLLHUP) ||
        (c->eof[0] && c->eof[1] && c->beg[0] == c->end[0] && c->beg[1] == c->end[1]))
        th__pconn_close(p, k, 0);
}

/* Applies a pending cut request, if any, and wakes the caller waiting for it. */
static void th__proxy_apply_cut(th_proxy *p)
{
    int i;

    pthread_mutex_lock(&p->lock);
    if (p->done != p->req) {
        p->cut = p->cut_want;
        if (p->cut)
            for (i = 0; i < TH__PROXY_CONNS; i++)
                if (p->conns[i] != NULL)
                    th__pconn_close(p, i, 1);
        p->done = p->req;
        pthread_cond_broadcast(&p->applied);
    }
    pthread_mutex_unlock(&p->lock);
}

static void *th__proxy_main(void *arg)
{
    th_proxy *p = arg;
    struct pollfd fds[2 + 2 * TH__PROXY_CONNS];
    int slot[2 + 2 * TH__PROXY_CONNS]; /* connection slot of fds[j] for j >= 2 */
    char drain[64];
    struct th__pconn *c;
    int nfds, i, j, s, o;

    while (!atomic_load(&p->stop)) {
        th__proxy_apply_cut(p);
        fds[0].fd = p->wake[0];
        fds[0].events = POLLIN;
        fds[1].fd = p->lfd;
        fds[1].events = POLLIN;
        nfds = 2;
        for (i = 0; i < TH__PROXY_CONNS; i++) {
            c = p->conns[i];
            if (c == NULL)
                continue;
            for (s = 0; s < 2; s++) {
                o = 1 - s;
                fds[nfds].fd = c->fd[s];
                fds[nfds].events = 0;
                if (c->connecting) {
                    if (s == 1)
                        fds[nfds].events = POLLOUT;
                } else {
                    if (!c->eof[s] && c->beg[s] == c->end[s])
                        fds[nfds].events |= POLLIN;
                    if (c->beg[o] < c->end[o])
                        fds[nfds].events |= POLLOUT;
                }
                slot[nfds++] = i;
            }
        }
        for (j = 0; j < nfds; j++)
            fds[j].revents = 0;
        if (poll(fds, (nfds_t)nfds, -1) < 0) {
            if (errno != EINTR) {
                th__err("proxy: poll: %s", strerror(errno));
                th__sleep_ms(10);
            }
            continue;
        }
        if (fds[0].revents & POLLIN)
            while (read(p->wake[0], drain, sizeof(drain)) > 0) {
            }
        /* Connections first: accepting may fill slots that this round's fds do not cover. */
        for (j = 2; j + 1 < nfds; j += 2)
            if (p->conns[slot[j]] != NULL && (fds[j].revents || fds[j + 1].revents))
                th__proxy_serve(p, slot[j], fds[j].revents, fds[j + 1].revents);
        if (fds[1].revents & POLLIN)
            th__proxy_accept(p);
    }
    return NULL;
}

/* Wakes the thread out of poll(). Async-signal-safe, so th_cleanup() may use it too. */
static void th__proxy_wake(th_proxy *p)
{
    if (write(p->wake[1], "w", 1) < 0) {
        /* The pipe is full: the thread has wake-ups pending anyway. */
    }
}

th_proxy *th_proxy_start(int listen_port, int target_port)
{
    struct sockaddr_in sa;
    sigset_t all, old;
    th_proxy *p;
    int i, one = 1, rc;

    th_init();
    for (i = 0; i < TH__MAX_PROXIES && th__proxies[i] != NULL; i++) {
    }
    if (i == TH__MAX_PROXIES) {
        th__err("th_proxy_start: more than %d proxies", TH__MAX_PROXIES);
        return NULL;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        th__err("th_proxy_start: out of memory");
        return NULL;
    }
    p->lfd = -1;
    p->wake[0] = p->wake[1] = -1;
    p->target_port = target_port;
    atomic_init(&p->stop, 0);
    if (pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        th__err("th_proxy_start: pipe: %s", strerror(errno));
        goto err;
    }
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->lfd < 0) {
        th__err("th_proxy_start: socket: %s", strerror(errno));
        goto err;
    }
    /* A proxy restarted on the same port must not wait for old connections in TIME_WAIT. */
    setsockopt(p->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((unsigned short)listen_port);
    if (bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(p->lfd, 64) != 0) {
        th__err("th_proxy_start: cannot listen on 127.0.0.1:%d: %s", listen_port, strerror(errno));
        goto err;
    }
    if (pthread_mutex_init(&p->lock, NULL) != 0)
        goto err;
    if (pthread_cond_init(&p->applied, NULL) != 0) {
        pthread_mutex_destroy(&p->lock);
        goto err;
    }
    /* The thread blocks every signal, so the test's handlers (th_cleanup) run on the main
     * thread, never on the one they are about to join. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&p->thread, NULL, th__proxy_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        th__err("th_proxy_start: pthread_create: %s", strerror(rc));
        pthread_cond_destroy(&p->applied);
        pthread_mutex_destroy(&p->lock);
        goto err;
    }
    th__proxies[i] = p;
    return p;

err:
    if (p->lfd >= 0)
        close(p->lfd);
    if (p->wake[0] >= 0) {
        close(p->wake[0]);
        close(p->wake[1]);
    }
    free(p);
    return NULL;
}

void th_proxy_cut(th_proxy *p, int cut)
{
    struct timespec until;
    unsigned mine;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->cut_want = cut != 0;
    mine = ++p->req;
    pthread_mutex_unlock(&p->lock);
    th__proxy_wake(p);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += TH__PROXY_WAIT_S;
    pthread_mutex_lock(&p->lock);
    /* done only grows up to req: "not yet" is done lagging behind mine (wrap-safe). */
    while ((int)(p->done - mine) < 0) {
        if (pthread_cond_timedwait(&p->applied, &p->lock, &until) == ETIMEDOUT) {
            th__err("th_proxy_cut: the proxy thread did not answer in %d s", TH__PROXY_WAIT_S);
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
}

void th_proxy_stop(th_proxy *p)
{
    int i;

    if (p == NULL)
        return;
    for (i = 0; i < TH__MAX_PROXIES; i++)
        if (th__proxies[i] == p)
            th__proxies[i] = NULL;
    atomic_store(&p->stop, 1);
    th__proxy_wake(p);
    pthread_join(p->thread, NULL);
    for (i = 0; i < TH__PROXY_CONNS; i++)
        if (p->conns[i] != NULL)
            th__pconn_close(p, i, 0);
    close(p->lfd);
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_cond_destroy(&p->applied);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

char *th_output(const char *cmd)
{
    char *out = NULL;

    if (th_capture(&out, "%s", cmd) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

double th_stop(pid_t pid, const char *name, const char *log, int must_be_clean)
{
    double t = th_now();
    int st;

    TH_CHECK(th_kill(pid, SIGTERM) == 0, "cannot signal %s", name);
    st = th_wait_exit(pid, 15000, 1);
    if (must_be_clean && !(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        th_log_tail(log, 60);
        if (st < 0)
            TH_FAIL("%s did not stop after SIGTERM and SIGKILL", name);
        else if (WIFSIGNALED(st))
            TH_FAIL("%s died of signal %d after SIGTERM", name, WTERMSIG(st));
        else
            TH_FAIL("%s exited with status %d after SIGTERM", name, WEXITSTATUS(st));
    }
    return th_now() - t;
}

/* ---- throwaway PostgreSQL server --------------------------------------------------------- */

#define TH__PG_START_S 60 /* longest wait for initdb plus the server to accept connections */

static struct {
    pid_t keeper;            /* the process that runs postgres (see th__pg_keeper), or 0 */
    int port;                /* where it listens on 127.0.0.1 */
    uid_t uid;               /* who runs the server: the postgres user when we are root */
    gid_t gid;
    int drop;                /* 1: switch to uid/gid before exec (we are root) */
    char bindir[TH__PATH];   /* initdb, postgres and psql are there */
    char dir[TH__PATH];      /* th_tmpdir()/pg: the cluster, its socket and its logs */
    char conninfo[256];      /* what th_pg_start() returns */
} th__pg;

static volatile sig_atomic_t th__pg_child; /* the keeper's postgres */

static int th__pg_has_bins(const char *dir)
{
    char p[TH__PATH];
    static const char *const need[] = {"initdb", "postgres", "psql"};
    size_t i;

    for (i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, need[i]);
        if (access(p, X_OK) != 0)
            return 0;
    }
    return 1;
}

/* Finds the folder of initdb, postgres and psql (see th_pg_start). Returns 0 or -1. */
static int th__pg_find_bins(void)
{
    const char *env = getenv("SYNC_PG_BINDIR"), *path = getenv("PATH");
    char *out = NULL, *nl;
    glob_t g;
    size_t i;
    int best = -1, ver;

    if (env != NULL && *env != '\0') {
        snprintf(th__pg.bindir, sizeof(th__pg.bindir), "%s", env);
        return th__pg_has_bins(th__pg.bindir) ? 0 : -1;
    }
    if (th_capture(&out, "pg_config --bindir 2>/dev/null") == 0 && out != NULL) {
        if ((nl = strchr(out, '\n')) != NULL)
            *nl = '\0';
        snprintf(th__pg.bindir, sizeof(th__pg.bindir), "%s", out);
        free(out);
        if (th__pg_has_bins(th__pg.bindir))
            return 0;
    } else {
        free(out);
    }
    /* Debian keeps the server binaries out of PATH, one folder per major version. */
    if (glob("/usr/lib/postgresql/*/bin", 0, NULL, &g) == 0) {
        for (i = 0; i < g.gl_pathc; i++) {
            ver = atoi(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"));
            if (ver > best && th__pg_has_bins(g.gl_pathv[i])) {
                best = ver;
                snprintf(th__pg.bindir, sizeof(th__pg.bindir), "%s", g.gl_pathv[i]);
            }
        }
        globfree(&g);
        if (best >= 0)
            return 0;
    }
    while (path != NULL && *path != '\0') {
        const char *end = strchr(path, ':');
        size_t n = end != NULL ? (size_t)(end - path) : strlen(path);
        snprintf(th__pg.bindir, sizeof(th__pg.bindir), "%.*s", (int)n, path);
        if (n > 0 && th__pg_has_bins(th__pg.bindir))
            return 0;
        path = end != NULL ? end + 1 : NULL;
    }
    th__pg.bindir[0] = '\0';
    return -1;
}

/* In a forked child: output to log, the server's user (when root), signals as exec expects
 * them, then exec. Never returns. */
_Noreturn static void th__pg_exec_child(char *const argv[], const char *log)
{
    sigset_t none;
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO)
            close(fd);
    }
    fd = open("/dev/null", O_RDONLY);
    if (fd >= 0) {
        dup2(fd, STDIN_FILENO);
        if (fd > STDERR_FILENO)
            close(fd);
    }
    if (th__pg.drop &&
        (initgroups("postgres", th__pg.gid) != 0 || setgid(th__pg.gid) != 0 ||
         setuid(th__pg.uid) != 0)) {
        dprintf(STDERR_FILENO, "harness: cannot become the postgres user: %s\n",
                strerror(errno));
        _exit(127);
    }
    /* If whoever started it dies, the server shuts down fast instead of living on (set after
     * the user change, which clears it). */
    prctl(PR_SET_PDEATHSIG, SIGINT);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(argv[0], argv);
    dprintf(STDERR_FILENO, "harness: cannot execute %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static void th__pg_forward(int sig)
{
    (void)sig;
    if (th__pg_child > 0)
        kill(th__pg_child, SIGINT);
}

/* Starts postgres under a keeper process and returns the keeper's pid (registered, so
 * th_cleanup() stops it), or -1. PostgreSQL's SIGTERM is a "smart" shutdown that waits for
 * every session to end, and the test's own connections are still open when th_cleanup() runs:
 * the keeper turns any SIGTERM, SIGINT or SIGHUP into a SIGINT (fast shutdown: sessions are
 * ended) and exits with the server. */
static pid_t th__pg_keeper(char *const argv[], const char *log)
{
    sigset_t all, old;
    struct sigaction sa;
    pid_t k, p;
    int st = 0;

    pid_t test = getpid();

    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    fflush(NULL);
    k = fork();
    if (k < 0) {
        th__err("fork: %s", strerror(errno));
        sigprocmask(SIG_SETMASK, &old, NULL);
        return -1;
    }
    if (k == 0) {
        /* If the test dies without stopping us (a sanitizer's abort, SIGKILL), stop the server
         * too; and hold none of the test's output pipes, or ctest would wait for them. */
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
            if (null > STDERR_FILENO)
                close(null);
        }
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = th__pg_forward;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        p = fork();
        if (p == 0)
            th__pg_exec_child(argv, log);
        if (p < 0)
            _exit(127);
        th__pg_child = p;
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (getppid() != test) /* the test died before PR_SET_PDEATHSIG took */
            kill(p, SIGINT);
        while (waitpid(p, &st, 0) < 0 && errno == EINTR) {
        }
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    th__slot(k, 1, "postgres");
    return k;
}

/* Runs a short program (initdb) as the server's user and waits for it. Returns its exit
 * status, or -1. */
static int th__pg_run(char *const argv[], const char *log, int timeout_ms)
{
    pid_t pid;
    int st;

    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        th__err("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0)
        th__pg_exec_child(argv, log);
    th__slot(pid, 1, argv[0]);
    st = th_wait_exit(pid, timeout_ms, 1);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* psql's argv as a shell command prefix (quoted). */
static const char *th__psql(const char *conninfo)
{
    return th_fmt("%s -X -q -A -t -v ON_ERROR_STOP=1 -d %s",
                  th_shq(th_fmt("%s/psql", th__pg.bindir[0] ? th__pg.bindir : "/usr/bin")),
                  th_shq(conninfo));
}

static int th__pg_ready(void *ctx)
{
    (void)ctx;
    if (!th_alive(th__pg.keeper))
        return 1; /* the caller sees it is gone */
    return th_run("%s -c 'SELECT 1' >/dev/null 2>&1",
                  th__psql(th_fmt("host=127.0.0.1 port=%d dbname=postgres user=postgres "
                                  "connect_timeout=5",
                                  th__pg.port))) == 0;
}

int th_pg_port(void)
{
    return th__pg.keeper > 0 ? th__pg.port : 0;
}

const char *th_pg_start(void)
{
    const char *tmp, *data, *log, *ci = getenv("CI");
    struct passwd *pw;
    char *argv[24];
    int attempt, n;

    th_init();
    if (th__pg.keeper > 0)
        return th__pg.conninfo;
    if (th__pg_find_bins() != 0) {
        const char *why = "the PostgreSQL server binaries (initdb, postgres, psql) are not "
                          "installed: scripts/install-deps.sh postgresql, or set "
                          "SYNC_PG_BINDIR";
        if (ci != NULL && (strcmp(ci, "true") == 0 || strcmp(ci, "1") == 0))
            TH_FAIL("%s (CI=%s: a PostgreSQL test may not be skipped)", why, ci);
        fprintf(stderr, "SKIP: %s\n", why);
        exit(TH_SKIP);
    }
    tmp = th_tmpdir();
    TH_CHECK(tmp != NULL, "no temp folder");
    snprintf(th__pg.dir, sizeof(th__pg.dir), "%s/pg", tmp);
    TH_CHECK(mkdir(th__pg.dir, 0700) == 0, "mkdir %s: %s", th__pg.dir, strerror(errno));
    th__pg.drop = geteuid() == 0;
    if (th__pg.drop) {
        /* PostgreSQL refuses to run as root: the server is the postgres user's, who must be
         * able to reach its folder (traverse only: the rest of the temp folder stays closed). */
        pw = getpwnam("postgres");
        TH_CHECK(pw != NULL, "running as root, and there is no 'postgres' user to run the "
                             "PostgreSQL server as (Debian's postgresql package creates it)");
        th__pg.uid = pw->pw_uid;
        th__pg.gid = pw->pw_gid;
        TH_CHECK(chmod(tmp, 0711) == 0 && chown(th__pg.dir, th__pg.uid, th__pg.gid) == 0,
                 "cannot open %s to the postgres user: %s", th__pg.dir, strerror(errno));
    }
    data = th_fmt("%s/data", th__pg.dir);
    log = th_fmt("%s/initdb.log", th__pg.dir);
    th_register_log(log);
    n = 0;
    argv[n++] = (char *)th_fmt("%s/initdb", th__pg.bindir);
    argv[n++] = "-D";
    argv[n++] = (char *)data;
    argv[n++] = "-U";
    argv[n++] = "postgres";
    argv[n++] = "-A";
    argv[n++] = "trust";
    argv[n++] = "-E";
    argv[n++] = "UTF8";
    argv[n++] = "--locale=C";
    argv[n++] = "--no-sync"; /* a throwaway cluster; the server itself keeps fsync on */
    argv[n] = NULL;
    TH_CHECK(th__pg_run(argv, log, TH__PG_START_S * 1000) == 0, "initdb failed (see %s)", log);
    log = th_fmt("%s/postgres.log", th__pg.dir);
    th_register_log(log);
    /* The free port may be taken before the server binds it: then try another. */
    for (attempt = 0; attempt < 3; attempt++) {
        th__pg.port = th_free_port();
        TH_CHECK(th__pg.port > 0, "no free port");
        n = 0;
        argv[n++] = (char *)th_fmt("%s/postgres", th__pg.bindir);
        argv[n++] = "-D";
        argv[n++] = (char *)data;
        argv[n++] = "-p";
        argv[n++] = (char *)th_fmt("%d", th__pg.port);
        argv[n++] = "-k";
        argv[n++] = th__pg.dir;
        argv[n++] = "-c";
        argv[n++] = "listen_addresses=127.0.0.1";
        argv[n++] = "-c";
        argv[n++] = "max_connections=50";
        argv[n++] = "-c";
        argv[n++] = "shared_buffers=32MB";
        argv[n] = NULL;
        th__pg.keeper = th__pg_keeper(argv, log);
        TH_CHECK(th__pg.keeper > 0, "cannot start postgres");
        TH_CHECK(th_wait_until(th__pg_ready, NULL, TH__PG_START_S * 1000) == 0,
                 "PostgreSQL did not accept connections on port %d within %d s", th__pg.port,
                 TH__PG_START_S);
        if (th_alive(th__pg.keeper))
            break;
        th_wait_exit(th__pg.keeper, 0, 0);
        th__pg.keeper = 0;
        th__err("postgres exited at start (port %d taken?); trying another port", th__pg.port);
    }
    TH_CHECK(th__pg.keeper > 0, "postgres does not start (see %s)", log);
    TH_CHECK(th_run("%s -c 'CREATE ROLE synccloud LOGIN' -c 'CREATE DATABASE synctest OWNER "
                    "synccloud' >>%s 2>&1",
                    th__psql(th_fmt("host=127.0.0.1 port=%d dbname=postgres user=postgres",
                                    th__pg.port)),
                    th_shq(log)) == 0,
             "cannot create the test role and database (see %s)", log);
    snprintf(th__pg.conninfo, sizeof(th__pg.conninfo),
             "host=127.0.0.1 port=%d dbname=synctest user=synccloud", th__pg.port);
    return th__pg.conninfo;
}

void th_pg_stop(void)
{
    int st;

    if (th__pg.keeper <= 0)
        return;
    th_kill(th__pg.keeper, SIGTERM);
    st = th_wait_exit(th__pg.keeper, 30000, 1);
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        th__err("postgres stopped with status %d", st);
    th__pg.keeper = 0;
}

/* Runs SQL through psql; *out (may be NULL) receives its output. Returns psql's status. */
static int th__pg_sql(char **out, const char *conninfo, const char *fmt, va_list ap)
{
    char *sql = th__vfmt(fmt, ap), *o = NULL;
    int rc;

    if (sql == NULL) {
        th__err("out of memory");
        return -1;
    }
    if (th__pg.bindir[0] == '\0')
        th__pg_find_bins();
    /* One -c string is one transaction (unless it is a statement that cannot run in one, such
     * as CREATE DATABASE, given alone); stderr is kept for the message. */
    rc = th_capture(&o, "%s -c %s 2>&1", th__psql(conninfo), th_shq(sql));
    if (rc != 0)
        th__err("psql: %s\n  in: %.300s", o != NULL ? o : "(no output)", sql);
    free(sql);
    if (out != NULL)
        *out = o;
    else
        free(o);
    return rc;
}

int th_pg_exec(const char *conninfo, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = th__pg_sql(NULL, conninfo, fmt, ap);
    va_end(ap);
    return rc == 0 ? 0 : -1;
}

long long th_pg_int(const char *conninfo, const char *fmt, ...)
{
    va_list ap;
    char *out = NULL, *end;
    long long v = TH_SQL_ERR;
    int rc;

    va_start(ap, fmt);
    rc = th__pg_sql(&out, conninfo, fmt, ap);
    va_end(ap);
    if (rc == 0 && out != NULL && out[0] != '\0') {
        /* -A -t: the first field of the first row, a NULL as an empty line. */
        v = out[0] == '\n' ? 0 : strtoll(out, &end, 10);
        if (out[0] != '\n' && *end != '\n' && *end != '|' && *end != '\0') {
            th__err("psql: not an integer: %.100s", out);
            v = TH_SQL_ERR;
        }
    } else if (rc == 0) {
        th__err("psql: no row");
    }
    free(out);
    return v;
}

/* ---- commands ---------------------------------------------------------------------------- */

const char *th_checksum_cmd(char *const argv[], int n, const char *errlog)
{
    char cmd[8192];
    size_t len = 0;
    int i, w;

    for (i = 0; i < n; i++) {
        w = snprintf(cmd + len, sizeof(cmd) - len, "%s ", th_shq(argv[i]));
        TH_CHECK(w > 0 && (size_t)w < sizeof(cmd) - len, "command line too long");
        len += (size_t)w;
    }
    return th_fmt("%s--checksum 2>>%s", cmd, th_shq(errlog));
}
