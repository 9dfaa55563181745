/* files.h - how syncctl writes files: secrets created with their final mode from the first
 * byte, generated files replaced crash-safely, and one lock so two runs do not interleave.
 *
 * Modes are exact whatever the umask: a file is created with the mode (which the umask can
 * only narrow) and set to exactly that mode with fchmod before anything is written to it.
 */
#ifndef CTL_FILES_H
#define CTL_FILES_H

#include <stddef.h>
#include <sys/types.h>

/* Creates path (it must not exist: O_CREAT|O_EXCL, symlinks not followed) with exactly mode,
 * writes len bytes of data and fsyncs it. On error nothing is left behind (a partly written
 * file is removed) and SYNC_ERR_IO is returned with a message naming the file, never the data;
 * an existing file gives SYNC_ERR_STATE. */
int ctl_file_create(const char *path, const void *data, size_t len, mode_t mode, char *err,
                    size_t errlen);

/* Replaces path with data so that a crash leaves either the old or the new content: writes
 * path.new (created afresh, a stale one removed first), fsyncs it, renames it over path and
 * fsyncs the folder. A new file gets exactly mode, and group unless it is (gid_t)-1; an
 * existing one keeps its owner, group and permission bits (those the broker needs to read
 * it), except that world-writable is dropped. Returns SYNC_OK or SYNC_ERR_IO with a message. */
int ctl_file_replace(const char *path, const void *data, size_t len, mode_t mode, gid_t group,
                     char *err, size_t errlen);

/* Reads a whole file into *data (NUL-terminated, *len without the NUL; the caller frees it).
 * A missing file gives SYNC_ERR_STATE (with *data NULL), other failures SYNC_ERR_IO. */
int ctl_file_read(const char *path, char **data, size_t *len, char *err, size_t errlen);

/* Creates the folder if it does not exist, with exactly mode. An existing folder is left as it
 * is. Returns SYNC_OK or SYNC_ERR_IO. */
int ctl_mkdir(const char *path, mode_t mode, char *err, size_t errlen);

/* Takes an exclusive lock on DIR/.lock, waiting for another syncctl that holds it. Returns the
 * lock's file descriptor (>= 0; close it to release), or SYNC_ERR_IO with a message. */
int ctl_lock(const char *dir, char *err, size_t errlen);

/* Overwrites n bytes with zeros in a way the compiler may not drop (for keys and passwords). */
void ctl_wipe(void *p, size_t n);

#endif
