/* fuzz_fixture.h - the fixed world of the apply fuzzer, shared with the seed generator so the
 * seeds speak to the same cloud: the schema, the tenant, the devices, and the input format.
 *
 * Input format of fuzz_apply (docs in tests/fuzz/README.md):
 *     input  = variant frame (SEP frame)*
 *     frame  = ctl payload
 * variant picks the cloud's configuration for the whole input (conflict policy of every table,
 * tight limits, fewer outputs); each frame is one message arriving from a device, or one
 * maintenance step. SEP is 4 bytes that never start a CBOR item (0xfc..0xff are reserved or
 * "break"), so a payload rarely contains it by chance.
 */
#ifndef FUZZ_FIXTURE_H
#define FUZZ_FIXTURE_H

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define FUZZ_TENANT "acme"
#define FUZZ_SCHEMA_VERSION 7u

/* Frame separator. */
static const unsigned char fuzz_sep[4] = {0xfc, 0xfd, 0xfe, 0xff};

/* variant byte: bits 0-2 the policy of every table, bit 3 tight limits, bit 4 quiet outputs. */
#define FUZZ_VAR_POLICY(v) ((v)&7u)
#define FUZZ_VAR_TIGHT 0x08u /* max_records 4, max_value 16, max_batch_bytes 1024 */
#define FUZZ_VAR_QUIET 0x10u /* events "batches", no retained rows */
#define FUZZ_VARIANTS 32u
static const char *const fuzz_policies[8] = {
    "lww",    "server-wins",   "priority",        "merge",
    "manual", "lww resurrect", "merge resurrect", "priority resurrect"};

/* ctl byte: bits 0-2 the device, bits 3-5 the action, bit 6 group, bit 7 rollback. */
#define FUZZ_CTL_DEVICE(c) ((c)&7u)
#define FUZZ_CTL_ACTION(c) (((c) >> 3) & 7u)
#define FUZZ_ACT_BATCH 0u /* any action but 6: the payload is a batch on .../dev/DEVICE/up */
#define FUZZ_ACT_PULL 6u  /* the payload is a catch-up request on .../dev/DEVICE/pull */
#define FUZZ_CTL_COMPACT                                                                           \
    0x38u /* exactly this ctl and no payload: compact every tombstone                              \
             (rare on purpose: the store is reopened after such an                                 \
             input); any other action 7 frame is a batch, like 0..5 */
#define FUZZ_CTL_GROUP                                                                             \
    0x40u /* batch: the next batch joins this transaction; pull: no                                \
             Response Topic given */
#define FUZZ_CTL_ROLLBACK                                                                          \
    0x80u /* batch: the transaction ends with ROLLBACK, as after a failed                          \
             commit */
#define FUZZ_MAX_FRAMES 64

/* Devices by ctl index. Roles: mgr and pi are managers, clerk a clerk (priority policy);
 * pi owns table forms; the last id is 64 bytes, the longest allowed. */
static const char *const fuzz_devices[8] = {
    "dev-a",   "dev-b",
    "mgr",     "clerk",
    "pi",      "z",
    "Dev.C_9", "d123456789012345678901234567890123456789012345678901234567890123"};

/* The wide table: 63 columns (the most a table may have), 63-byte table and column names. */
#define FUZZ_WIDE "wide_table_wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww"
#define FUZZ_LONGCOL "long_column_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define FUZZ_WIDE_NCOLS 63

/* Type of column i (1..61) of the wide table, named cNN. */
static inline const char *fuzz_wide_type(int i)
{
    static const char *const t[4] = {"integer", "real", "text", "blob"};
    return t[i % 4];
}

/* Writes the schema file text into buf; returns 0, or -1 if n is too small. */
static inline int fuzz_schema_text(char *buf, size_t n)
{
    size_t at = 0;
    int w = snprintf(buf, n,
                     "version %u\n"
                     "table items\n"
                     "column id integer key\n"
                     "column name text\n"
                     "column qty integer\n"
                     "column price real\n"
                     "column note text\n"
                     "column data blob\n"
                     "table notes\n"
                     "column k text key\n"
                     "column body text notnull\n"
                     "column n integer\n"
                     "table blobs\n"
                     "column k blob key\n"
                     "column v blob\n"
                     "column r real notnull\n"
                     "table forms owner pi\n"
                     "column id integer key\n"
                     "column v text\n"
                     "table " FUZZ_WIDE "\n"
                     "column id integer key\n",
                     FUZZ_SCHEMA_VERSION);
    if (w < 0 || (size_t)w >= n)
        return -1;
    at = (size_t)w;
    for (int i = 1; i <= 61; i++) {
        w = snprintf(buf + at, n - at, "column c%02d %s\n", i, fuzz_wide_type(i));
        if (w < 0 || (size_t)w >= n - at)
            return -1;
        at += (size_t)w;
    }
    w = snprintf(buf + at, n - at, "column " FUZZ_LONGCOL " text\n");
    return w < 0 || (size_t)w >= n - at ? -1 : 0;
}

#endif
