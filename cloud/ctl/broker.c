/* broker.c - SIGHUP to the broker (see broker.h). */
#include "broker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "sync/err.h"

/* Reads the first line of a pid file as a pid > 1. */
static int read_pid(const char *path, long *pid, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot read the broker pid file %s: %s", path,
                           strerror(errno));
    char line[64] = "";
    char *end;
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    long v = ok ? strtol(line, &end, 10) : 0;
    if (!ok || end == line || (*end != '\0' && *end != '\n') || v < 2)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "%s does not hold a pid", path);
    *pid = v;
    return SYNC_OK;
}

/* 1 if /proc says pid runs a program named mosquitto, 0 if it runs something else, -1 when
 * /proc cannot tell (no /proc, or the process is gone: kill() reports that). */
static int is_mosquitto(long pid)
{
    char path[64], comm[64] = "";
    snprintf(path, sizeof path, "/proc/%ld/comm", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int ok = fgets(comm, sizeof comm, f) != NULL;
    fclose(f);
    if (!ok)
        return -1;
    comm[strcspn(comm, "\n")] = '\0';
    return strcmp(comm, "mosquitto") == 0;
}

int ctl_broker_reload(long pid, const char *pid_file, long *sent_to, char *err, size_t errlen)
{
    *sent_to = 0;
    if (pid <= 0 && !pid_file)
        return sync_seterr(err, errlen, SYNC_ERR_STATE,
                           "no broker_pid_file or broker_pid configured");
    if (pid <= 0) {
        int rc = read_pid(pid_file, &pid, err, errlen);
        if (rc != SYNC_OK)
            return rc;
    }
    if (is_mosquitto(pid) == 0)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "process %ld is not mosquitto: not sending it SIGHUP (stale pid "
                           "file?)",
                           pid);
    if (kill((pid_t)pid, SIGHUP) != 0)
        return sync_seterr(err, errlen, SYNC_ERR_IO,
                           "cannot send SIGHUP to the broker (pid %ld): %s", pid, strerror(errno));
    *sent_to = pid;
    return SYNC_OK;
}
