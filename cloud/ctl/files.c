/* files.c - exclusive creation with exact modes, crash-safe replacement, locking (files.h). */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sync/err.h"

void ctl_wipe(void *p, size_t n)
{
    /* A volatile pointer: the stores are observable, so they stay even right before free(). */
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Opens a new file for writing with exactly mode (see files.h); -1 with errno on failure. */
static int open_new(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    /* The umask may have narrowed the mode; make it exact before the first byte is written. */
    if (fchmod(fd, mode) != 0) {
        int e = errno;
        close(fd);
        unlink(path);
        errno = e;
        return -1;
    }
    return fd;
}

int ctl_file_create(const char *path, const void *data, size_t len, mode_t mode, char *err,
                    size_t errlen)
{
    int fd = open_new(path, mode);
    if (fd < 0)
        return sync_seterr(err, errlen, errno == EEXIST ? SYNC_ERR_STATE : SYNC_ERR_IO,
                           "cannot create %s: %s", path, strerror(errno));
    if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(path);
        return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(path);
        return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    return SYNC_OK;
}

/* fsyncs the folder holding path, so a rename in it survives a crash. */
static int sync_parent(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int ctl_file_replace(const char *path, const void *data, size_t len, mode_t mode, gid_t group,
                     char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.new", path) >= (int)sizeof tmp)
        return sync_seterr(err, errlen, SYNC_ERR_IO, "path too long: %s", path);
    struct stat old;
    int have_old = stat(path, &old) == 0;
    if (have_old) {
        mode = old.st_mode & 0775; /* never world-writable, no set-id bits */
    } else if (group != (gid_t)-1) {
        old.st_uid = geteuid(); /* a new file: ours, with the broker's group */
        old.st_gid = group;
        have_old = 1;
    }
    /* A .new left by a crash is ours and incomplete: start afresh. */
    if (unlink(tmp) != 0 && errno != ENOENT)
        return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot remove %s: %s", tmp, strerror(errno));
    int fd = open_new(tmp, mode & 0600); /* owner only until owner and group are right */
    if (fd < 0)
        return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    /* The broker may read this file as another user or group: keep whatever the old file had.
     * Without the privilege to give it away the file stays ours, which we say. */
    if (have_old && (old.st_uid != geteuid() || old.st_gid != getegid()) &&
        fchown(fd, old.st_uid, old.st_gid) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return sync_seterr(err, errlen, SYNC_ERR_IO,
                           "cannot give %s the owner and group of %s (%s): run syncctl as that "
                           "user or as root",
                           tmp, path, strerror(e));
    }
    if (fchmod(fd, mode) != 0 || write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot write %s: %s", tmp, strerror(e));
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot replace %s: %s", path, strerror(e));
    }
    if (sync_parent(path) != 0)
        return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot fsync the folder of %s: %s", path,
                           strerror(errno));
    return SYNC_OK;
}

int ctl_file_read(const char *path, char **data, size_t *len, char *err, size_t errlen)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return sync_seterr(err, errlen, errno == ENOENT ? SYNC_ERR_STATE : SYNC_ERR_IO,
                           "cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory reading %s", path);
    if (bad) {
        free(buf);
        return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot read %s", path);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return SYNC_OK;
}

int ctl_mkdir(const char *path, mode_t mode, char *err, size_t errlen)
{
    if (mkdir(path, mode) == 0) {
        if (chmod(path, mode) != 0) /* exact, whatever the umask; nothing is in it yet */
            return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot chmod %s: %s", path,
                               strerror(errno));
        return SYNC_OK;
    }
    struct stat st;
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return SYNC_OK;
    return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot create the folder %s: %s", path,
                       strerror(errno == EEXIST ? ENOTDIR : errno));
}

int ctl_lock(const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/.lock", dir) >= (int)sizeof path)
        return sync_seterr(err, errlen, SYNC_ERR_IO, "path too long: %s", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == ENOENT)
        return sync_seterr(err, errlen, SYNC_ERR_IO,
                           "no folder %s: run `syncctl ca init` first (or give --dir)", dir);
    if (fd < 0)
        return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX) != 0) {
        if (errno == EINTR)
            continue;
        int e = errno;
        close(fd);
        return sync_seterr(err, errlen, SYNC_ERR_IO, "cannot lock %s: %s", path, strerror(e));
    }
    return fd;
}
