/* unitcheck.h - the checks of the unit tests, and their private temporary folder.
 *
 * Each CHECK counts one check and, when it fails, says at the caller's file:line what was
 * wrong; a test program prints the counts at the end and fails when `failures` is not 0.
 * Header-only, static: every test program has its own counters and folder.
 */
#ifndef UNITCHECK_H
#define UNITCHECK_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sync/err.h"

static int checks, failures;

/* CHECK(cond): cond is true. */
#define CHECK(cond) check_at((cond) != 0, #cond, __FILE__, __LINE__)

static inline int check_at(int ok, const char *what, const char *file, int line)
{
    checks++;
    if (!ok) {
        failures++;
        fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
    }
    return ok;
}

/* CHECK_RC(expr, want, err): like CHECK(expr == want), and also prints the message in err. */
#define CHECK_RC(expr, want, err) check_rc_at((expr), (want), (err), #expr, __FILE__, __LINE__)

static inline int check_rc_at(int got, int want, const char *err, const char *what,
                              const char *file, int line)
{
    checks++;
    if (got != want) {
        failures++;
        fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s); message: %s\n", file, line,
                what, got, sync_strerror(got), want, sync_strerror(want), err ? err : "");
        return 0;
    }
    return 1;
}

/* CHECK_STR(got, want): the strings are equal (both printed on one line otherwise). */
#define CHECK_STR(got, want) check_str_at((got), (want), #got, __FILE__, __LINE__)

static inline int check_str_at(const char *got, const char *want, const char *what,
                               const char *file, int line)
{
    checks++;
    if (!got || strcmp(got, want) != 0) {
        failures++;
        fprintf(stderr, "%s:%d: %s is \"%s\", expected \"%s\"\n", file, line, what,
                got ? got : "(null)", want);
        return 0;
    }
    return 1;
}

/* CHECK_TEXT(got, want): the texts are equal (both printed in full, line by line, otherwise). */
#define CHECK_TEXT(got, want) check_text_at((got), (want), #got, __FILE__, __LINE__)

static inline int check_text_at(const char *got, const char *want, const char *what,
                                const char *file, int line)
{
    checks++;
    if (!got || strcmp(got, want) != 0) {
        failures++;
        fprintf(stderr, "%s:%d: %s differs.\n--- got:\n%s--- expected:\n%s---\n", file, line, what,
                got ? got : "(null)\n", want);
        return 0;
    }
    return 1;
}

/* CHECK_HAS(msg, needle): msg contains needle. */
#define CHECK_HAS(msg, needle) check_has_at((msg), (needle), #msg, __FILE__, __LINE__)

static inline int check_has_at(const char *msg, const char *needle, const char *what,
                               const char *file, int line)
{
    checks++;
    if (!msg || !strstr(msg, needle)) {
        failures++;
        fprintf(stderr, "%s:%d: %s (\"%s\") does not contain \"%s\"\n", file, line, what,
                msg ? msg : "(null)", needle);
        return 0;
    }
    return 1;
}

/* ---- a private temporary folder ---- */

static char tmpdir[512];

/* Makes tmpdir, named after the test program, under $SYNC_TEST_TMP, $TMPDIR or /tmp; returns 0
 * or -1 (with the reason printed). */
static inline int tmp_setup(const char *prog)
{
    const char *base = getenv("SYNC_TEST_TMP");

    if (!base || !*base)
        base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/%s.XXXXXX", base, prog);
    if (!mkdtemp(tmpdir)) {
        perror(tmpdir);
        return -1;
    }
    return 0;
}

/* Removes every entry of tmpdir (files, and empty folders the tests made) and tmpdir itself. */
static inline void tmp_cleanup(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[1024];

    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        if (unlink(p) != 0)
            rmdir(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

/* Writes the path of entry `name` in tmpdir into out (at least 1024 bytes); returns out. */
static inline char *tpath(char *out, const char *name)
{
    snprintf(out, 1024, "%s/%s", tmpdir, name);
    return out;
}

#endif
