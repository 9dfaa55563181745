/* test_access.c - synccloud's selective-sync rules (cloud/access.c, cloud/config.c): the
 * `partition`, `attr`, `receive` and `write` lines, their checks against the schema, what each
 * device gets of each table, and the policy message it is sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unitcheck.h"

#include "cloud/access.h"
#include "cloud/config.h"
#include "sync/err.h"
#include "sync/json.h"
#include "sync/schema.h"

static const char schema_text[] = "version 1\n"
                                  "table items\ncolumn id integer key\ncolumn name text\n"
                                  "table sales\ncolumn id integer key\n"
                                  "column store_id integer notnull\ncolumn amount integer\n"
                                  "column region text notnull\ncolumn note text\n"
                                  "column price real notnull\n"
                                  "table notes\ncolumn k text key\ncolumn body text\n";

static sync_schema *schema;

/* A config from "key value" lines (NULL-terminated); rc of the first failure, or of the check
 * against the schema. */
static int config(cloud_config *c, const char *const *lines, char *err, size_t errlen)
{
    cloud_config_init(c);
    for (int i = 0; lines[i]; i++) {
        const char *sp = strchr(lines[i], ' ');
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)(sp - lines[i]), lines[i]);
        int rc = cloud_config_set(c, key, sp + 1, err, errlen);
        if (rc != SYNC_OK)
            return rc;
    }
    return cloud_config_check_schema(c, schema, err, errlen);
}

static const sync_table *table(const char *name)
{
    return sync_schema_find(schema, name, strlen(name));
}

static void test_reach(void)
{
    static const char *const lines[] = {
        "partition sales store_id",
        "attr till-12 store 12",
        "attr till-13 store 13",
        "role till-12 clerk",
        "role till-13 clerk",
        "role boss manager",
        "receive role:clerk items,sales=$store",
        "write role:clerk sales=$store|99",
        "receive role:manager *",
        "receive 42 sales=$device",
        "receive odd sales=$store",
        NULL};
    cloud_config c;
    char err[256] = "";
    CHECK_RC(config(&c, lines, err, sizeof err), SYNC_OK, err);
    const sync_table *sales = table("sales"), *items = table("items"), *notes = table("notes");
    CHECK(cloud_access_part_col(&c, sales) == 1 && cloud_access_part_col(&c, items) == -1);
    cloud_reach r;
    cloud_access_reach(&c, sales, "till-12", 0, &r);
    CHECK(!r.whole && r.nparts == 1 && r.parts[0].type == SYNC_INT && r.parts[0].u.i == 12);
    sync_value v12 = {.type = SYNC_INT, .u.i = 12}, v13 = {.type = SYNC_INT, .u.i = 13};
    CHECK(cloud_reach_has(&r, &v12) && !cloud_reach_has(&r, &v13) && !cloud_reach_has(&r, NULL));
    cloud_access_reach(&c, sales, "till-12", 1, &r);
    CHECK(!r.whole && r.nparts == 2 && cloud_reach_has(&r, &v12));
    cloud_access_reach(&c, items, "till-12", 0, &r);
    CHECK(r.whole);
    cloud_access_reach(&c, items, "till-12", 1, &r);
    CHECK(!r.whole && r.nparts == 0); /* write lines exist, none names items */
    cloud_access_reach(&c, notes, "till-12", 0, &r);
    CHECK(!r.whole && r.nparts == 0);
    cloud_access_reach(&c, sales, "boss", 0, &r);
    CHECK(r.whole && cloud_reach_has(&r, &v13) && cloud_reach_has(&r, NULL));
    /* $device, read as the column's type; a device without the attribute gets nothing. */
    cloud_access_reach(&c, sales, "42", 0, &r);
    sync_value v42 = {.type = SYNC_INT, .u.i = 42};
    CHECK(!r.whole && r.nparts == 1 && cloud_reach_has(&r, &v42));
    cloud_access_reach(&c, sales, "odd", 0, &r);
    CHECK(!r.whole && r.nparts == 0);

    /* The policy message. */
    char buf[2048];
    sync_json j;
    sync_json_init(&j, buf, sizeof buf);
    cloud_access_policy(&c, schema, "till-12", &j);
    CHECK(sync_json_ok(&j));
    CHECK(strstr(buf, "\"receive\":[\"items\",\"sales\"]") != NULL);
    CHECK(strstr(buf, "\"write\":[\"sales\"]") != NULL);
    CHECK(strstr(buf, "\"partitions\":{\"sales\":{\"column\":\"store_id\",\"receive\":[12],"
                      "\"write\":[12,99]}}") != NULL);
    sync_json_init(&j, buf, sizeof buf);
    cloud_access_policy(&c, schema, "boss", &j);
    CHECK(sync_json_ok(&j) && strstr(buf, "partitions") == NULL);
    cloud_config_free(&c);

    /* A text partition column: values are text; $device is the id itself. */
    static const char *const tl[] = {"partition sales region", "attr t1 region north",
                                     "receive t1 sales=$region|south", "receive t2 sales=$device",
                                     NULL};
    CHECK_RC(config(&c, tl, err, sizeof err), SYNC_OK, err);
    cloud_access_reach(&c, sales, "t1", 0, &r);
    sync_value north = {.type = SYNC_TEXT, .u.b = {(const uint8_t *)"north", 5}};
    sync_value south = {.type = SYNC_TEXT, .u.b = {(const uint8_t *)"south", 5}};
    CHECK(r.nparts == 2 && cloud_reach_has(&r, &north) && cloud_reach_has(&r, &south));
    sync_json_init(&j, buf, sizeof buf);
    cloud_access_policy(&c, schema, "t1", &j);
    CHECK(strstr(buf, "\"receive\":[\"north\",\"south\"]") != NULL);
    cloud_access_reach(&c, sales, "t2", 0, &r);
    sync_value t2 = {.type = SYNC_TEXT, .u.b = {(const uint8_t *)"t2", 2}};
    CHECK(r.nparts == 1 && cloud_reach_has(&r, &t2));
    cloud_config_free(&c);
}

/* Each bad line is refused with a message that names the problem. */
static void test_refusals(void)
{
    static const struct {
        const char *lines[4];
        const char *says;
    } bad[] = {
        {{"partition sales", NULL}, "expected 'TABLE COLUMN'"},
        {{"partition sales store_id", "partition sales region", NULL}, "already has"},
        {{"partition nope store_id", NULL}, "no table 'nope'"},
        {{"partition sales nope", NULL}, "no column 'nope'"},
        {{"partition sales amount", NULL}, "notnull"},
        {{"partition sales id", NULL}, "not the key"},
        {{"partition sales price", NULL}, "integer or text"},
        {{"receive x sales=12", NULL}, "no partition line"},
        {{"partition sales store_id", "receive x sales=twelve", NULL}, "not an integer"},
        {{"partition sales store_id", "receive x sales=99999999999999999999", NULL},
         "not an integer"},
        {{"receive x sales=", NULL}, "needs values"},
        {{"receive x sales=1||2", NULL}, "needs values"},
        {{"attr x store", NULL}, "DEVICE NAME VALUE"},
        {{"attr x store 1|2", NULL}, "without '|'"},
        {{"attr x store 1", "attr x store 2", NULL}, "already has"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cloud_config c;
        char err[256] = "";
        int rc = config(&c, bad[i].lines, err, sizeof err);
        CHECK(rc != SYNC_OK);
        if (!strstr(err, bad[i].says)) {
            fprintf(stderr, "case %zu: '%s' does not say '%s'\n", i, err, bad[i].says);
            CHECK(0);
        }
        cloud_config_free(&c);
    }
}

int main(void)
{
    char err[256], path[1024];
    if (tmp_setup("test_access") != 0)
        return 1;
    FILE *f = fopen(tpath(path, "schema.conf"), "w");
    if (!f || fputs(schema_text, f) < 0 || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    CHECK_RC(sync_schema_load(path, &schema, err, sizeof err), SYNC_OK, err);
    if (schema) {
        test_reach();
        test_refusals();
        sync_schema_free(schema);
    }
    tmp_cleanup();
    if (failures != 0) {
        fprintf(stderr, "test_access: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("test_access: all %d checks passed\n", checks);
    return 0;
}
