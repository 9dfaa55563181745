/* log.c - leveled logging to stderr or syslog (see sync/log.h). */
#include "sync/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* Process configuration, written by main() before any thread starts. */
static struct {
    char ident[32];
    sync_log_level min;
    int use_syslog;
} log_cfg = {"sync", SYNC_LOG_INFO, 0};

static const char *const level_names[] = {"debug", "info", "notice", "warning", "error"};

void sync_log_setup(const char *ident, sync_log_level min, int use_syslog)
{
    snprintf(log_cfg.ident, sizeof log_cfg.ident, "%s", ident ? ident : "sync");
    log_cfg.min = min;
    if (use_syslog && !log_cfg.use_syslog)
        openlog(log_cfg.ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
    else if (!use_syslog && log_cfg.use_syslog)
        closelog();
    log_cfg.use_syslog = use_syslog;
}

int sync_log_parse_level(const char *s, sync_log_level *out)
{
    for (int i = 0; i < 5; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (sync_log_level)i;
            return 0;
        }
    }
    if (strcmp(s, "warn") == 0 || strcmp(s, "err") == 0) {
        *out = s[0] == 'w' ? SYNC_LOG_WARNING : SYNC_LOG_ERR;
        return 0;
    }
    return -1;
}

int sync_log_enabled(sync_log_level lvl)
{
    return lvl >= log_cfg.min;
}

void sync_log(sync_log_level lvl, const char *fmt, ...)
{
    if (lvl < log_cfg.min)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_cfg.use_syslog) {
        static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERR};
        syslog(prio[lvl], "%s", msg);
        return;
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    /* One fprintf per line: stdio locks the stream, so lines from threads do not interleave. */
    fprintf(stderr, "%s.%03ldZ %s[%ld]: %s: %s\n", when, ts.tv_nsec / 1000000L, log_cfg.ident,
            (long)getpid(), level_names[lvl], msg);
}
