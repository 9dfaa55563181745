/* access.c - which tables and partitions each device receives and may write (see access.h). */
#include "access.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/hlc.h"
#include "sync/log.h"

static int names(const cloud_grant *g, const char *device, const char *role)
{
    if (strcmp(g->who, "*") == 0 || strcmp(g->who, device) == 0)
        return 1;
    return role && strncmp(g->who, "role:", 5) == 0 && strcmp(g->who + 5, role) == 0;
}

int cloud_access_part_col(const cloud_config *c, const sync_table *t)
{
    const char *col = cloud_config_partition(c, t->name);
    return col ? sync_table_col(t, col, strlen(col)) : -1;
}

/* One value of a `TABLE=…` entry, resolved for device and typed as column `col`: 1 and *out,
 * or 0 when it gives nothing (an attribute the device lacks, or one not of the column's type). */
static int resolve(const cloud_config *c, const sync_table *t, int col, const char *device,
                   const char *v, size_t n, sync_value *out)
{
    if (n > 0 && v[0] == '$') {
        if (n == 7 && memcmp(v, "$device", 7) == 0) {
            v = device;
        } else {
            char name[SYNC_MAX_ID + 1];
            if (n - 1 > SYNC_MAX_ID)
                return 0;
            memcpy(name, v + 1, n - 1);
            name[n - 1] = '\0';
            v = cloud_config_attr(c, device, name);
            if (!v)
                return 0;
        }
        n = strlen(v);
    }
    if (t->cols[col].type == SYNC_INT) {
        long long x;
        if (!cloud_config_int(v, n, &x))
            return 0;
        *out = (sync_value){.type = SYNC_INT, .u.i = x};
        return 1;
    }
    *out = (sync_value){.type = SYNC_TEXT, .u.b = {(const uint8_t *)v, n}};
    return 1;
}

static void add_part(cloud_reach *r, const sync_table *t, const char *device, const sync_value *v)
{
    if (cloud_reach_has(r, v))
        return;
    if (r->nparts == CLOUD_MAX_PARTS) {
        sync_warn("device %s is given more than %d partitions of '%s'; the rest are left out",
                  device, CLOUD_MAX_PARTS, t->name);
        return;
    }
    r->parts[r->nparts++] = *v;
}

void cloud_access_reach(const cloud_config *c, const sync_table *t, const char *device, int write,
                        cloud_reach *out)
{
    out->whole = 0;
    out->nparts = 0;
    if (write && t->owner[0] && strcmp(t->owner, device) != 0)
        return;
    const char *role = cloud_config_role(c, device);
    int col = cloud_access_part_col(c, t);
    size_t tn = strlen(t->name);
    int lines = 0;
    for (int i = 0; i < c->ngrants && !out->whole; i++) {
        const cloud_grant *g = &c->grants[i];
        if (g->write != write)
            continue;
        lines = 1;
        if (!names(g, device, role))
            continue;
        if (strcmp(g->tables, "*") == 0) {
            out->whole = 1;
            break;
        }
        for (const char *p = g->tables; *p && !out->whole;) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            const char *eq = memchr(p, '=', len);
            size_t plen = eq ? (size_t)(eq - p) : len;
            if (plen == tn && memcmp(p, t->name, tn) == 0) {
                if (!eq || col < 0) {
                    out->whole = 1;
                } else {
                    for (const char *v = eq + 1; v < p + len;) {
                        const char *bar = memchr(v, '|', (size_t)(p + len - v));
                        size_t vn = bar ? (size_t)(bar - v) : (size_t)(p + len - v);
                        sync_value pv;
                        if (resolve(c, t, col, device, v, vn, &pv))
                            add_part(out, t, device, &pv);
                        v += vn + 1;
                    }
                }
            }
            p += len + (e ? 1 : 0);
        }
    }
    if (!lines)
        out->whole = 1;
    if (out->whole)
        out->nparts = 0;
}

int cloud_reach_has(const cloud_reach *r, const sync_value *v)
{
    if (r->whole)
        return 1;
    if (!v || v->type == SYNC_NULL)
        return 0;
    for (int i = 0; i < r->nparts; i++)
        if (sync_value_equal(&r->parts[i], v))
            return 1;
    return 0;
}

void cloud_part_text(char *buf, size_t n, const sync_value *v)
{
    if (v->type == SYNC_INT)
        snprintf(buf, n, "%lld", (long long)v->u.i);
    else
        snprintf(buf, n, "'%.*s'", (int)(v->u.b.n > 64 ? 64 : v->u.b.n), (const char *)v->u.b.p);
}

static void json_values(sync_json *j, const cloud_reach *r)
{
    sync_json_raw(j, "[");
    for (int i = 0; i < r->nparts; i++) {
        if (i)
            sync_json_raw(j, ",");
        if (r->parts[i].type == SYNC_INT)
            sync_json_i64(j, r->parts[i].u.i);
        else
            sync_json_str(j, (const char *)r->parts[i].u.b.p, r->parts[i].u.b.n);
    }
    sync_json_raw(j, "]");
}

void cloud_access_policy(const cloud_config *c, const sync_schema *s, const char *device,
                         sync_json *j)
{
    int n = sync_schema_ntables(s);
    cloud_reach *r = malloc(2 * (size_t)n * sizeof *r);
    sync_json_begin(j);
    sync_json_key(j, "device");
    sync_json_cstr(j, device);
    if (!r) {
        sync_json_key(j, "error");
        sync_json_cstr(j, "out of memory");
        sync_json_end(j);
        return;
    }
    for (int i = 0; i < n; i++)
        for (int w = 0; w < 2; w++)
            cloud_access_reach(c, sync_schema_table(s, i), device, w, &r[2 * i + w]);
    int parted = 0;
    for (int w = 0; w < 2; w++) {
        sync_json_key(j, w ? "write" : "receive");
        sync_json_raw(j, "[");
        int first = 1;
        for (int i = 0; i < n; i++) {
            const cloud_reach *x = &r[2 * i + w];
            if (!x->whole && x->nparts == 0)
                continue;
            if (!first)
                sync_json_raw(j, ",");
            first = 0;
            const sync_table *t = sync_schema_table(s, i);
            sync_json_str(j, t->name, strlen(t->name));
            parted |= !x->whole;
        }
        sync_json_raw(j, "]");
    }
    if (parted) {
        sync_json_key(j, "partitions");
        sync_json_raw(j, "{");
        int first = 1;
        for (int i = 0; i < n; i++) {
            const sync_table *t = sync_schema_table(s, i);
            const cloud_reach *rr = &r[2 * i], *wr = &r[2 * i + 1];
            int col = cloud_access_part_col(c, t);
            if (col < 0 || ((rr->whole || rr->nparts == 0) && (wr->whole || wr->nparts == 0)))
                continue;
            if (!first)
                sync_json_raw(j, ",");
            first = 0;
            sync_json_str(j, t->name, strlen(t->name));
            sync_json_raw(j, ":");
            sync_json_begin(j);
            sync_json_key(j, "column");
            sync_json_cstr(j, t->cols[col].name);
            if (!rr->whole && rr->nparts > 0) {
                sync_json_key(j, "receive");
                json_values(j, rr);
            }
            if (!wr->whole && wr->nparts > 0) {
                sync_json_key(j, "write");
                json_values(j, wr);
            }
            sync_json_end(j);
        }
        sync_json_raw(j, "}");
    }
    free(r);
    sync_json_key(j, "ts");
    sync_json_u64(j, sync_wall_ms());
    sync_json_end(j);
}
