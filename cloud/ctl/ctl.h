/* ctl.h - syncctl's commands, its configuration, and the argument parsing they share.
 *
 * syncctl is one program with subcommands: `syncctl GROUP VERB [ARGS] [OPTIONS]` (`device add`)
 * or `syncctl NAME [ARGS] [OPTIONS]` for one-word commands. main.c holds the table of commands;
 * each command is a function
 *
 *     int ctl_cmd_xxx(ctl_ctx *ctx, int argc, char **argv);
 *
 * called with argv[0] = the command's name ("device add") and then every other argument of
 * the command line (its positional arguments, its own options, and the global options, in the
 * order given). It first calls ctl_args() with the options it takes, and returns the process
 * exit status: 0 done, 1 the operation failed (message printed), 2 bad usage or configuration.
 *
 * Adding a command: write its function (a new cmd_*.c file for a new area), declare it below,
 * and add one line to the table in main.c with its usage text. New config keys go into the
 * option table of args.c and the ctl_config struct.
 */
#ifndef CTL_CTL_H
#define CTL_CTL_H

#include <stddef.h>

#define CTL_VERSION "0.1.0"
#define CTL_DEFAULT_DIR "/var/lib/syncedge-ctl"

/* syncctl's configuration: the keys of syncctl.conf, each also a global --flag. Paths left
 * unset by the user get their defaults inside dir (ctl_args fills them). */
typedef struct ctl_config {
    char *dir;             /* PKI and registry folder (default CTL_DEFAULT_DIR) */
    char *password_file;   /* Mosquitto password file (default DIR/passwd) */
    char *acl_file;        /* Mosquitto ACL file (default DIR/acl) */
    char *acl_extra;       /* file appended verbatim to the ACL file, or NULL */
    char *cloud_config;    /* synccloud's config: its receive lines narrow devices' reads */
    char *cloud_user;      /* broker user of synccloud (default synccloud) */
    char *broker_pid_file; /* the broker's pid file, for the SIGHUP reload, or NULL */
    long broker_pid;       /* the broker's pid (0: use broker_pid_file) */
    char *broker;          /* broker URI printed in the syncedge config snippet */
    char *broker_group;    /* group the broker runs as: given to new password/ACL/CRL files */
    long broker_gid;       /* broker_group's id, or -1 (filled by ctl_args) */
    long crl_days;         /* days until the CRL's nextUpdate (default 30) */
    /* Talking to synccloud and reading the retained states and statistics (status, stats,
     * conflicts, resync) through the broker. */
    char *tenant;              /* the tenant whose synccloud answers */
    char *admin_user;          /* broker user name of the administrator (default admin) */
    char *admin_password_file; /* file holding its broker password (mode 0600), or NULL */
    char *cafile;              /* CA of the broker's TLS certificate */
    char *admin_cert, *admin_key; /* client certificate and key for mutual TLS, or NULL */
    int tls_insecure;          /* skip the broker host name check (testing only) */
    long timeout;              /* seconds to wait for synccloud's answer (default 10) */
    int log_level;         /* a sync_log_level */
    int log_syslog;        /* 1: log to syslog instead of stderr */
} ctl_config;

typedef struct ctl_command ctl_command;

/* What a command gets: the configuration (filled by ctl_args) and its own table entry. */
typedef struct ctl_ctx {
    ctl_config cfg;
    const ctl_command *cmd;
} ctl_ctx;

typedef int (*ctl_cmd_fn)(ctl_ctx *ctx, int argc, char **argv);

/* One line of the command table in main.c. */
struct ctl_command {
    const char *group;   /* first word: "device", or the whole name of a one-word command */
    const char *verb;    /* second word: "add"; NULL for a one-word command */
    ctl_cmd_fn run;      /* the command */
    const char *summary; /* one line for `syncctl --help` */
    const char *usage;   /* the command's --help text */
};

/* One option of a command, beside the global ones. Only the command line sets these (a config
 * file holds global keys only), so `days` in syncctl.conf cannot change what `ca init` does. */
typedef struct ctl_opt {
    const char *key;   /* "key_type", given as --key-type or --key_type */
    int flag;          /* 1: takes no value (--json); 0: takes one (--days 30) */
    const char *value; /* out: the value (pointing into argv), "1" for a flag; NULL if absent */
} ctl_opt;

/* Parses a command's argv (argv[0] is its name): positional arguments into pos[0..maxpos),
 * the command's own options into opts, everything else as global options and config file
 * (-c FILE) into ctx->cfg; fills the defaults and sets up logging. Returns -1 when the command
 * should go on (*npos then holds the count of positional arguments), or the exit status to
 * return at once: 0 after --help (the usage was printed), 2 after a usage or configuration
 * error (printed). */
int ctl_args(ctl_ctx *ctx, int argc, char **argv, ctl_opt *opts, size_t nopts, const char **pos,
             int minpos, int maxpos, int *npos);

/* Parses a command option's value as a number within [min, max]. Returns 0, or 2 after
 * printing "Invalid KEY value". A NULL value leaves *out unchanged. */
int ctl_opt_long(const ctl_opt *o, long min, long max, long *out);

/* Writes "DIR/name" into buf (size n) and returns buf; a path too long for buf comes out
 * truncated to "" so that opening it fails rather than touching another file. */
const char *ctl_path(const ctl_ctx *ctx, const char *name, char *buf, size_t n);

/* Prints "syncctl: msg" on stderr (and logs it too when logging goes to syslog, so the audit
 * trail has the failures). Returns status, so that `return ctl_fail(ctx, 1, err);` ends a
 * command. */
int ctl_fail(const ctl_ctx *ctx, int status, const char *msg);

void ctl_config_init(ctl_config *c);
void ctl_config_free(ctl_config *c);

/* The global options part of every --help text. */
extern const char ctl_global_help[];

/* ---- the commands (see main.c for the table and each one's usage) ---- */
int ctl_cmd_ca_init(ctl_ctx *ctx, int argc, char **argv);
int ctl_cmd_device_add(ctl_ctx *ctx, int argc, char **argv);
int ctl_cmd_device_list(ctl_ctx *ctx, int argc, char **argv);
int ctl_cmd_device_show(ctl_ctx *ctx, int argc, char **argv);
int ctl_cmd_device_suspend(ctl_ctx *ctx, int argc, char **argv);
int ctl_cmd_device_resume(ctl_ctx *ctx, int argc, char **argv);
int ctl_cmd_device_remove(ctl_ctx *ctx, int argc, char **argv);
int ctl_cmd_acl_generate(ctl_ctx *ctx, int argc, char **argv);
int ctl_cmd_crl_generate(ctl_ctx *ctx, int argc, char **argv);
int ctl_cmd_broker_reload(ctl_ctx *ctx, int argc, char **argv);
int ctl_cmd_conflicts_list(ctl_ctx *ctx, int argc, char **argv);
int ctl_cmd_conflicts_resolve(ctl_ctx *ctx, int argc, char **argv);
int ctl_cmd_resync(ctl_ctx *ctx, int argc, char **argv);
int ctl_cmd_status(ctl_ctx *ctx, int argc, char **argv);
int ctl_cmd_stats(ctl_ctx *ctx, int argc, char **argv);

#endif
