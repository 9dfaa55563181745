/* args.c - syncctl's configuration keys and the command-line parsing every command shares.
 *
 * Global options work as in the daemons (sync/conf.h): `key value` lines in the file given with
 * -c, and the same keys as --flags, which win over the file. A command's own options and
 * positional arguments are taken out of argv first, so they exist on the command line only.
 */
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "sync/conf.h"
#include "sync/err.h"
#include "sync/log.h"
#include "sync/topic.h"

const char ctl_global_help[] =
    "Global options (each is also a KEY VALUE line of the config file, with '_' for '-'):\n"
    "  -c, --config FILE       read KEY VALUE lines from FILE (flags override it)\n"
    "  --dir DIR               CA, registry and device files (default " CTL_DEFAULT_DIR ")\n"
    "  --password-file FILE    Mosquitto password file kept in step with the registry\n"
    "                          (default DIR/passwd; other users' lines are kept as they are)\n"
    "  --acl-file FILE         Mosquitto ACL file written from the registry (default DIR/acl)\n"
    "  --acl-extra FILE        appended verbatim to the ACL file (viewers, other services)\n"
    "  --cloud-config FILE     synccloud's config file: with receive lines (selective sync),\n"
    "                          each device of its tenant may read only the deltas and rows of\n"
    "                          the tables it receives (and no events, which carry all tables)\n"
    "  --cloud-user NAME       synccloud's broker user, granted readwrite on sync/#\n"
    "                          (default synccloud)\n"
    "  --broker-pid-file FILE  pid file of the broker, sent SIGHUP after its files change\n"
    "  --broker-pid PID        pid of the broker (instead of --broker-pid-file)\n"
    "  --broker URI            broker shown in the syncedge config printed by device add\n"
    "  --broker-group GROUP    the group Mosquitto runs as (e.g. mosquitto): a password file\n"
    "                          syncctl creates gets it and mode 0640, so the broker reads it\n"
    "                          (an existing file keeps its owner, group and mode)\n"
    "  --crl-days N            days until the CRL's nextUpdate (default 30); the broker refuses\n"
    "                          every certificate once the CRL is past it: run `syncctl crl\n"
    "                          generate` more often than that\n"
    "Talking to synccloud and reading device states (status, stats, conflicts, resync),\n"
    "through the broker given with --broker:\n"
    "  --tenant T              the tenant whose synccloud answers\n"
    "  --admin-user NAME       broker user name of the administrator (default admin)\n"
    "  --admin-password-file F its broker password (first line; the file must be 0600)\n"
    "  --cafile FILE           CA of the broker's certificate (ssl:// brokers)\n"
    "  --admin-cert FILE       client certificate, for brokers that require one\n"
    "  --admin-key FILE        its private key\n"
    "  --tls-insecure BOOL     skip the broker host name check (testing only)\n"
    "  --timeout SEC           how long to wait for the broker and synccloud's answer\n"
    "                          (default 10)\n"
    "  --log-level LEVEL       debug, info, notice, warning (default) or error; at notice\n"
    "                          every change is logged (an audit trail, with syslog)\n"
    "  --log-dest DEST         stderr (default) or syslog\n"
    "  -v, --verbose           same as --log-level debug\n"
    "  -h, --help              this help\n"
    "  --version               print the version\n";

#define OPT(k, t, f, lo, hi)                                                                       \
    {                                                                                              \
        k, t, offsetof(ctl_config, f), lo, hi                                                      \
    }
static const sync_opt ctl_opts[] = {
    OPT("dir", SYNC_OPT_STR, dir, 0, 0),
    OPT("password_file", SYNC_OPT_STR, password_file, 0, 0),
    OPT("acl_file", SYNC_OPT_STR, acl_file, 0, 0),
    OPT("acl_extra", SYNC_OPT_STR, acl_extra, 0, 0),
    OPT("cloud_config", SYNC_OPT_STR, cloud_config, 0, 0),
    OPT("cloud_user", SYNC_OPT_STR, cloud_user, 0, 0),
    OPT("broker_pid_file", SYNC_OPT_STR, broker_pid_file, 0, 0),
    /* Never 1: a SIGHUP to init is not a broker reload. */
    OPT("broker_pid", SYNC_OPT_LONG, broker_pid, 2, INT_MAX),
    OPT("broker", SYNC_OPT_STR, broker, 0, 0),
    OPT("broker_group", SYNC_OPT_STR, broker_group, 0, 0),
    OPT("crl_days", SYNC_OPT_LONG, crl_days, 1, 3650),
    OPT("tenant", SYNC_OPT_STR, tenant, 0, 0),
    OPT("admin_user", SYNC_OPT_STR, admin_user, 0, 0),
    OPT("admin_password_file", SYNC_OPT_STR, admin_password_file, 0, 0),
    OPT("cafile", SYNC_OPT_STR, cafile, 0, 0),
    OPT("admin_cert", SYNC_OPT_STR, admin_cert, 0, 0),
    OPT("admin_key", SYNC_OPT_STR, admin_key, 0, 0),
    OPT("tls_insecure", SYNC_OPT_BOOL, tls_insecure, 0, 0),
    OPT("timeout", SYNC_OPT_LONG, timeout, 1, 3600),
    OPT("log_level", SYNC_OPT_LOGLEVEL, log_level, 0, 0),
    OPT("log_dest", SYNC_OPT_LOGDEST, log_syslog, 0, 0),
};
#undef OPT
#define NOPTS (sizeof ctl_opts / sizeof ctl_opts[0])

void ctl_config_init(ctl_config *c)
{
    memset(c, 0, sizeof *c);
    c->crl_days = 30;
    c->timeout = 10;
    c->broker_gid = -1;
    /* Results go to stdout; the log holds the audit trail of changes (notice), which on a
     * terminal would only repeat them: shown from log_level notice, or kept with syslog. */
    c->log_level = SYNC_LOG_WARNING;
}

void ctl_config_free(ctl_config *c)
{
    sync_conf_free(ctl_opts, NOPTS, c);
}

static int config_set(void *ctx, const char *key, const char *value, char *err, size_t errlen)
{
    return sync_conf_set(ctl_opts, NOPTS, ctx, "syncctl", key, value, err, errlen);
}

/* Sets *field to DIR/name when the user left it unset. */
static int default_path(char **field, const char *dir, const char *name, char *err, size_t errlen)
{
    if (*field)
        return SYNC_OK;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "Invalid dir value (%s): too long", dir);
    return sync_conf_str(field, path, err, errlen);
}

static int config_finish(ctl_config *c, char *err, size_t errlen)
{
    int rc = SYNC_OK;
    if (!c->dir)
        rc = sync_conf_str(&c->dir, CTL_DEFAULT_DIR, err, errlen);
    if (rc == SYNC_OK && c->dir[0] == '\0')
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "Invalid dir value (): empty");
    if (rc == SYNC_OK)
        rc = default_path(&c->password_file, c->dir, "passwd", err, errlen);
    if (rc == SYNC_OK)
        rc = default_path(&c->acl_file, c->dir, "acl", err, errlen);
    if (rc == SYNC_OK && !c->cloud_user)
        rc = sync_conf_str(&c->cloud_user, "synccloud", err, errlen);
    if (rc == SYNC_OK && !c->admin_user)
        rc = sync_conf_str(&c->admin_user, "admin", err, errlen);
    if (rc == SYNC_OK && !c->broker)
        rc = sync_conf_str(&c->broker, "ssl://BROKER-HOST:8883", err, errlen);
    if (rc != SYNC_OK)
        return rc;
    if (c->broker_group) {
        struct group *g = getgrnam(c->broker_group);
        if (!g)
            return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                               "Invalid broker_group value (%s): no such group", c->broker_group);
        c->broker_gid = (long)g->gr_gid;
    }
    /* The name goes into the ACL file as `user NAME`: a space or newline would change it. */
    if (!sync_id_valid(c->cloud_user, strlen(c->cloud_user)))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid cloud_user value (%s): 1-64 of A-Z a-z 0-9 _ . -",
                           c->cloud_user);
    return SYNC_OK;
}

const char *ctl_path(const ctl_ctx *ctx, const char *name, char *buf, size_t n)
{
    if (snprintf(buf, n, "%s/%s", ctx->cfg.dir, name) >= (int)n)
        buf[0] = '\0';
    return buf;
}

/* The command option named by the n bytes at name ('-' and '_' alike), or NULL. */
static ctl_opt *find_opt(ctl_opt *opts, size_t nopts, const char *name, size_t n)
{
    for (size_t i = 0; i < nopts; i++) {
        const char *k = opts[i].key;
        if (strlen(k) != n)
            continue;
        size_t j = 0;
        while (j < n && (k[j] == name[j] || (k[j] == '_' && name[j] == '-')))
            j++;
        if (j == n)
            return &opts[i];
    }
    return NULL;
}

/* Global options that take no value; every other --name takes one. */
static int global_flag(const char *name, size_t n)
{
    static const char *const flags[] = {"help", "version", "verbose"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (strlen(flags[i]) == n && strncmp(flags[i], name, n) == 0)
            return 1;
    return 0;
}

/* Prints the first line of the command's usage (its synopsis) after an error. */
static int usage_error(const ctl_ctx *ctx, const char *fmt, const char *arg)
{
    fprintf(stderr, "Error: ");
    fprintf(stderr, fmt, arg);
    const char *u = ctx->cmd->usage;
    const char *nl = strchr(u, '\n');
    fprintf(stderr, "\n%.*s\n(see syncctl %s%s%s --help)\n", nl ? (int)(nl - u) : (int)strlen(u), u,
            ctx->cmd->group, ctx->cmd->verb ? " " : "", ctx->cmd->verb ? ctx->cmd->verb : "");
    return 2;
}

int ctl_args(ctl_ctx *ctx, int argc, char **argv, ctl_opt *opts, size_t nopts, const char **pos,
             int minpos, int maxpos, int *npos)
{
    char err[1024];
    /* What sync_conf_parse_args gets: argv[0] and the global options, in their order. */
    char **pass = calloc((size_t)argc + 1, sizeof *pass);
    if (!pass) {
        fprintf(stderr, "syncctl: out of memory\n");
        return 2;
    }
    int npass = 0, np = 0, only_pos = 0, status = -1;
    pass[npass++] = argv[0];
    for (size_t i = 0; i < nopts; i++)
        opts[i].value = NULL;
    for (int i = 1; i < argc && status < 0; i++) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1; /* the rest is positional, even "-x" (a device id may start so) */
            continue;
        }
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (np >= maxpos)
                status = usage_error(ctx, "unexpected argument '%s'", a);
            else
                pos[np++] = a;
            continue;
        }
        if (a[1] != '-') {
            pass[npass++] = argv[i]; /* -c FILE, -v, -h; anything else is refused there */
            if (strcmp(a, "-c") == 0 && i + 1 < argc)
                pass[npass++] = argv[++i];
            continue;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        ctl_opt *o = find_opt(opts, nopts, name, n);
        if (!o) {
            pass[npass++] = argv[i];
            if (!eq && !global_flag(name, n) && i + 1 < argc)
                pass[npass++] = argv[++i];
            continue;
        }
        if (o->flag && eq)
            status = usage_error(ctx, "%s takes no value", a);
        else if (o->flag)
            o->value = "1";
        else if (eq)
            o->value = eq + 1;
        else if (i + 1 < argc)
            o->value = argv[++i];
        else
            status = usage_error(ctx, "%s needs a value", a);
    }
    if (status >= 0) {
        free(pass);
        return status;
    }
    sync_args sa = {.flags = ""};
    int rc = sync_conf_parse_args(npass, pass, &sa, config_set, &ctx->cfg, err, sizeof err);
    free(pass);
    if (rc != SYNC_OK) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    if (sa.help) {
        fputs(ctx->cmd->usage, stdout);
        fputs("\n", stdout);
        fputs(ctl_global_help, stdout);
        return 0;
    }
    if (sa.version) {
        printf("syncctl %s\n", CTL_VERSION);
        return 0;
    }
    if (np < minpos)
        return usage_error(ctx, "%s", np == 0 ? "arguments missing" : "too few arguments");
    if (config_finish(&ctx->cfg, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    sync_log_setup("syncctl", (sync_log_level)ctx->cfg.log_level, ctx->cfg.log_syslog);
    if (npos)
        *npos = np;
    return -1;
}

int ctl_fail(const ctl_ctx *ctx, int status, const char *msg)
{
    fprintf(stderr, "syncctl: %s\n", msg);
    if (ctx->cfg.log_syslog)
        sync_error("%s: %s", ctx->cmd->group, msg);
    return status;
}

int ctl_opt_long(const ctl_opt *o, long min, long max, long *out)
{
    char err[256];
    if (!o->value)
        return 0;
    if (sync_conf_long(o->key, o->value, min, max, out, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "Error: %s\n", err);
        return 2;
    }
    return 0;
}
