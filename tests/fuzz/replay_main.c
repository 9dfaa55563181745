/* replay_main.c - the fuzz targets as a plain program, for builds without libFuzzer (gcc, and
 * the ASan build of CI): every file of the given corpus directories goes once through the
 * target's entry point, so a crash input kept in the corpus (crash-*) fails the `fuzz_corpus`
 * test until the bug is fixed.
 *
 *     fuzz_corpus record=DIR apply=DIR ...
 *
 * The entry points are fuzz_record.c and fuzz_apply.c compiled with LLVMFuzzerTestOneInput
 * (and LLVMFuzzerInitialize) renamed, so both live in this one program. Files are replayed in
 * name order; each name is printed before it runs, so the failing one is the last printed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int fuzz_record_one(const uint8_t *data, size_t size);
int fuzz_apply_init(int *argc, char ***argv);
int fuzz_apply_one(const uint8_t *data, size_t size);

static const struct target {
    const char *name;
    int (*init)(int *argc, char ***argv);
    int (*one)(const uint8_t *data, size_t size);
} targets[] = {
    {"record", NULL, fuzz_record_one},
    {"apply", fuzz_apply_init, fuzz_apply_one},
};

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads a whole file into an allocation of exactly its size (so ASan sees its end). */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat sb;
    if (!f || fstat(fileno(f), &sb) != 0) {
        if (f)
            fclose(f);
        return NULL;
    }
    *len = (size_t)sb.st_size;
    uint8_t *p = malloc(*len ? *len : 1);
    if (p && *len && fread(p, 1, *len, f) != *len) {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

static int replay_dir(const struct target *t, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "fuzz_corpus: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn)
                return -1;
            names = nn;
        }
        names[n] = strdup(e->d_name);
        if (!names[n])
            return -1;
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, by_name);
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        size_t len = 0;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        fprintf(stderr, "fuzz_corpus: %s %s\n", t->name, path);
        uint8_t *data = slurp(path, &len);
        if (!data) {
            fprintf(stderr, "fuzz_corpus: cannot read %s\n", path);
            return -1;
        }
        t->one(data, len);
        free(data);
        free(names[i]);
        count++;
    }
    free(names);
    return count;
}

int main(int argc, char **argv)
{
    int total = 0, inited[sizeof targets / sizeof targets[0]] = {0};
    if (argc < 2) {
        fprintf(stderr, "usage: fuzz_corpus record=DIR apply=DIR ...\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        const struct target *t = NULL;
        for (size_t k = 0; eq && k < sizeof targets / sizeof targets[0]; k++)
            if (strlen(targets[k].name) == (size_t)(eq - argv[i]) &&
                strncmp(argv[i], targets[k].name, (size_t)(eq - argv[i])) == 0)
                t = &targets[k];
        if (!t) {
            fprintf(stderr, "fuzz_corpus: expected record=DIR or apply=DIR, got %s\n", argv[i]);
            return 2;
        }
        if (t->init && !inited[t - targets]++)
            t->init(&argc, &argv);
        int n = replay_dir(t, eq + 1);
        if (n < 0)
            return 1;
        printf("fuzz_corpus: %d %s inputs replayed from %s\n", n, t->name, eq + 1);
        total += n;
    }
    printf("fuzz_corpus: %d inputs, no invariant failed\n", total);
    return 0;
}
