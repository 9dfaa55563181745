/* log.h - leveled logging to stderr or syslog, configured once per process.
 *
 * The level and destination are part of the process's configuration (set by main() before
 * threads start); sync_log itself is safe to call from any thread.
 */
#ifndef SYNC_LOG_H
#define SYNC_LOG_H

typedef enum sync_log_level {
    SYNC_LOG_DEBUG = 0,
    SYNC_LOG_INFO = 1,
    SYNC_LOG_NOTICE = 2,
    SYNC_LOG_WARNING = 3,
    SYNC_LOG_ERR = 4,
} sync_log_level;

/* Sets the program name shown in each line, the minimum level, and whether lines go to
 * syslog (daemon facility) instead of stderr. May be called again to change them. */
void sync_log_setup(const char *ident, sync_log_level min, int use_syslog);

/* Parses "debug|info|notice|warning|error"; returns 0 on success, -1 if unknown. */
int sync_log_parse_level(const char *s, sync_log_level *out);

/* Nonzero if a message of this level would be written (to skip costly formatting). */
int sync_log_enabled(sync_log_level lvl);

void sync_log(sync_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sync_debug(...) sync_log(SYNC_LOG_DEBUG, __VA_ARGS__)
#define sync_info(...) sync_log(SYNC_LOG_INFO, __VA_ARGS__)
#define sync_notice(...) sync_log(SYNC_LOG_NOTICE, __VA_ARGS__)
#define sync_warn(...) sync_log(SYNC_LOG_WARNING, __VA_ARGS__)
#define sync_error(...) sync_log(SYNC_LOG_ERR, __VA_ARGS__)

#endif
