/* access.c - which tables each device receives and may write (see access.h). */
#include "access.h"

#include <string.h>

#include "sync/hlc.h"

/* 1 if the comma-separated list holds name (or is "*"). */
static int list_has(const char *list, const char *name)
{
    if (strcmp(list, "*") == 0)
        return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p += len + (e ? 1 : 0);
    }
    return 0;
}

static int names(const cloud_grant *g, const char *device, const char *role)
{
    if (strcmp(g->who, "*") == 0 || strcmp(g->who, device) == 0)
        return 1;
    return role && strncmp(g->who, "role:", 5) == 0 && strcmp(g->who + 5, role) == 0;
}

int cloud_access_allows(const cloud_config *c, const sync_schema *s, const char *device,
                        const sync_table *t, int write)
{
    (void)s;
    if (write && t->owner[0] && strcmp(t->owner, device) != 0)
        return 0;
    const char *role = cloud_config_role(c, device);
    int lines = 0;
    for (int i = 0; i < c->ngrants; i++) {
        const cloud_grant *g = &c->grants[i];
        if (g->write != write)
            continue;
        lines = 1;
        if (names(g, device, role) && list_has(g->tables, t->name))
            return 1;
    }
    return !lines;
}

void cloud_access_mask(const cloud_config *c, const sync_schema *s, const char *device, int write,
                       uint8_t *mask)
{
    for (int i = 0; i < sync_schema_ntables(s); i++)
        mask[i] = (uint8_t)cloud_access_allows(c, s, device, sync_schema_table(s, i), write);
}

void cloud_access_policy(const cloud_config *c, const sync_schema *s, const char *device,
                         sync_json *j)
{
    sync_json_begin(j);
    sync_json_key(j, "device");
    sync_json_cstr(j, device);
    for (int w = 0; w < 2; w++) {
        sync_json_key(j, w ? "write" : "receive");
        sync_json_raw(j, "[");
        int first = 1;
        for (int i = 0; i < sync_schema_ntables(s); i++) {
            const sync_table *t = sync_schema_table(s, i);
            if (!cloud_access_allows(c, s, device, t, w))
                continue;
            if (!first)
                sync_json_raw(j, ",");
            first = 0;
            sync_json_str(j, t->name, strlen(t->name));
        }
        sync_json_raw(j, "]");
    }
    sync_json_key(j, "ts");
    sync_json_u64(j, sync_wall_ms());
    sync_json_end(j);
}
