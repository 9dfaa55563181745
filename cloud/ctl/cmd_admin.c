/* cmd_admin.c - commands answered by a running synccloud: `conflicts list` and `conflicts
 * resolve`. They send one CBOR request on sync/TENANT/admin/req through the broker (MQTT 5
 * request/response, docs/protocol.md "Administration") and print the answer, as a table or
 * with --json as JSON.
 */
#include <cbor.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "sync/cbor.h"
#include "sync/conf.h"
#include "sync/err.h"
#include "sync/log.h"
#include "sync/mqtt.h"
#include "sync/topic.h"

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sends req and waits for the answer. On success *answer (caller frees) holds its bytes. */
static int call(const ctl_ctx *ctx, const sync_cbuf *req, uint8_t **answer, size_t *alen,
                char *err, size_t errlen)
{
    const ctl_config *c = &ctx->cfg;
    if (!c->tenant)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "set the tenant (--tenant or `tenant`)");
    if (strstr(c->broker, "BROKER-HOST"))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "set the broker to reach synccloud through (--broker or `broker`)");
    char password[256] = "";
    if (c->admin_password_file &&
        sync_conf_read_secret(c->admin_password_file, password, sizeof password, err, errlen) !=
            SYNC_OK)
        return SYNC_ERR_INVAL;
    char client_id[64], resp[SYNC_TOPIC_MAX], reqt[SYNC_TOPIC_MAX];
    snprintf(client_id, sizeof client_id, "syncctl-%ld", (long)getpid());
    snprintf(resp, sizeof resp, "sync/%s/admin/resp/%s", c->tenant, client_id);
    snprintf(reqt, sizeof reqt, "sync/%s/admin/req", c->tenant);
    sync_mqtt_opts mo;
    sync_mqtt_opts_default(&mo);
    mo.uri = c->broker;
    mo.client_id = client_id;
    mo.username = c->admin_user;
    mo.password = password[0] ? password : NULL;
    mo.cafile = c->cafile;
    mo.certfile = c->admin_cert;
    mo.keyfile = c->admin_key;
    mo.tls_insecure = c->tls_insecure;
    mo.retry_min = 1;
    mo.retry_max = 2;
    sync_mqtt *m = NULL;
    int rc = sync_mqtt_new(&mo, &m, err, errlen);
    memset(password, 0, sizeof password);
    if (rc != SYNC_OK)
        return rc;
    sync_mqtt_subscribe(m, resp, 1);
    sync_mqtt_start(m, err, errlen);
    const uint8_t corr[8] = {'s', 'y', 'n', 'c', 'c', 't', 'l', '1'};
    double until = mono_now() + (double)c->timeout;
    int sent = 0;
    rc = SYNC_ERR_TIMEOUT;
    *answer = NULL;
    while (mono_now() < until && rc == SYNC_ERR_TIMEOUT) {
        sync_mqtt_msg *list = sync_mqtt_poll(m, 100);
        for (sync_mqtt_msg *x = list; x; x = x->next) {
            if (rc == SYNC_ERR_TIMEOUT && strcmp(x->topic, resp) == 0 &&
                x->corr_len == sizeof corr && memcmp(x->corr, corr, sizeof corr) == 0 &&
                (*answer = malloc(x->len ? x->len : 1))) {
                memcpy(*answer, x->payload, x->len);
                *alen = x->len;
                rc = SYNC_OK;
            }
        }
        while (list) {
            sync_mqtt_msg *n = list->next;
            sync_mqtt_msg_free(list);
            list = n;
        }
        /* Subscribed (sync_mqtt_connected means the subscription is confirmed): ask once. */
        if (!sent && sync_mqtt_connected(m) &&
            sync_mqtt_publish_rr(m, reqt, req->data, req->len, 1, resp, corr, sizeof corr) ==
                SYNC_OK)
            sent = 1;
    }
    if (rc == SYNC_ERR_TIMEOUT)
        sync_seterr(err, errlen, rc,
                    sent ? "no answer from synccloud within %ld s: is it running for tenant '%s',"
                           " and may user '%s' publish on %s (the broker's ACL)?"
                         : "could not reach the broker within %ld s (tenant '%s', user '%s', "
                           "topic %s): check --broker, the credentials and the CA",
                    c->timeout, c->tenant, c->admin_user, reqt);
    sync_mqtt_free(m);
    return rc;
}

/* ---- printing answers ---- */

static void json_string(FILE *f, const unsigned char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = s[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* Writes item as JSON (blobs as "x'HEX'", as in the events). */
static void json_item(FILE *f, cbor_item_t *it, int depth)
{
    if (depth > 32) {
        fputs("null", f);
        return;
    }
    switch (cbor_typeof(it)) {
    case CBOR_TYPE_UINT:
        fprintf(f, "%" PRIu64, cbor_get_int(it));
        break;
    case CBOR_TYPE_NEGINT:
        fprintf(f, "-%" PRIu64, cbor_get_int(it) + 1);
        break;
    case CBOR_TYPE_STRING:
        json_string(f, cbor_string_handle(it), cbor_string_length(it));
        break;
    case CBOR_TYPE_BYTESTRING:
        fputs("\"x'", f);
        for (size_t i = 0; i < cbor_bytestring_length(it); i++)
            fprintf(f, "%02X", cbor_bytestring_handle(it)[i]);
        fputs("'\"", f);
        break;
    case CBOR_TYPE_ARRAY:
        fputc('[', f);
        for (size_t i = 0; i < cbor_array_size(it); i++) {
            if (i)
                fputc(',', f);
            json_item(f, cbor_array_handle(it)[i], depth + 1);
        }
        fputc(']', f);
        break;
    case CBOR_TYPE_MAP: {
        struct cbor_pair *p = cbor_map_handle(it);
        fputc('{', f);
        for (size_t i = 0; i < cbor_map_size(it); i++) {
            if (i)
                fputc(',', f);
            if (cbor_isa_string(p[i].key))
                json_string(f, cbor_string_handle(p[i].key), cbor_string_length(p[i].key));
            else
                fputs("\"?\"", f);
            fputc(':', f);
            json_item(f, p[i].value, depth + 1);
        }
        fputc('}', f);
        break;
    }
    case CBOR_TYPE_FLOAT_CTRL:
        if (cbor_float_ctrl_is_ctrl(it)) {
            uint8_t v = cbor_ctrl_value(it);
            fputs(v == CBOR_CTRL_TRUE ? "true" : v == CBOR_CTRL_FALSE ? "false" : "null", f);
        } else {
            fprintf(f, "%.17g", cbor_float_get_float(it));
        }
        break;
    default:
        fputs("null", f);
    }
}

/* The value of text key k in map m, or NULL. */
static cbor_item_t *get(cbor_item_t *m, const char *k)
{
    if (!m || !cbor_isa_map(m))
        return NULL;
    struct cbor_pair *p = cbor_map_handle(m);
    size_t n = strlen(k);
    for (size_t i = 0; i < cbor_map_size(m); i++)
        if (cbor_isa_string(p[i].key) && cbor_string_length(p[i].key) == n &&
            memcmp(cbor_string_handle(p[i].key), k, n) == 0)
            return p[i].value;
    return NULL;
}

/* Decodes the answer; on {"ok": false} prints its error and returns NULL. */
static cbor_item_t *answer_root(const ctl_ctx *ctx, const uint8_t *a, size_t n)
{
    struct cbor_load_result res;
    cbor_item_t *root = cbor_load(a, n, &res);
    if (!root || res.error.code != CBOR_ERR_NONE) {
        if (root)
            cbor_decref(&root);
        ctl_fail(ctx, 1, "synccloud's answer is not valid CBOR");
        return NULL;
    }
    cbor_item_t *ok = get(root, "ok");
    if (!ok || !cbor_is_bool(ok) || !cbor_get_bool(ok)) {
        cbor_item_t *e = get(root, "error");
        char msg[600];
        snprintf(msg, sizeof msg, "synccloud refused: %.*s",
                 e && cbor_isa_string(e) ? (int)cbor_string_length(e) : 7,
                 e && cbor_isa_string(e) ? (const char *)cbor_string_handle(e) : "no reason");
        ctl_fail(ctx, 1, msg);
        cbor_decref(&root);
        return NULL;
    }
    return root;
}

/* Sends req (freed here), waits for the answer and decodes it. Returns the answer's root (the
 * caller frees it with cbor_decref), or NULL after printing why there is none. */
static cbor_item_t *ask(const ctl_ctx *ctx, sync_cbuf *req)
{
    char err[512] = "out of memory";
    uint8_t *a = NULL;
    size_t n = 0;
    int rc = req->err ? req->err : call(ctx, req, &a, &n, err, sizeof err);
    sync_cbuf_free(req);
    if (rc != SYNC_OK) {
        ctl_fail(ctx, 1, err);
        return NULL;
    }
    cbor_item_t *root = answer_root(ctx, a, n);
    free(a);
    return root;
}

/* A cell of the conflicts table: the item as compact JSON, cut to width. */
static void cell(cbor_item_t *it, int width, int last)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return;
    if (it)
        json_item(f, it, 0);
    else
        fputs("-", f);
    fclose(f);
    /* Strings read better without their quotes. */
    const char *s = buf;
    size_t n = len;
    if (it && cbor_isa_string(it) && n >= 2) {
        s++;
        n -= 2;
    }
    if (last)
        printf("%.*s\n", (int)n, s);
    else if ((int)n > width)
        printf("%.*s~ ", width - 1, s);
    else
        printf("%-*.*s ", width, (int)n, s);
    free(buf);
}

int ctl_cmd_conflicts_list(ctl_ctx *ctx, int argc, char **argv)
{
    ctl_opt opts[] = {{"all", 1, NULL}, {"limit", 0, NULL}, {"json", 1, NULL}};
    int status = ctl_args(ctx, argc, argv, opts, 3, NULL, 0, 0, NULL);
    if (status >= 0)
        return status;
    long limit = 100;
    if ((status = ctl_opt_long(&opts[1], 1, 10000, &limit)) != 0)
        return status;
    sync_cbuf req;
    sync_cbuf_init(&req, 0);
    sync_cbor_put_map(&req, 3);
    sync_cbor_put_cstr(&req, "op");
    sync_cbor_put_cstr(&req, "conflicts");
    sync_cbor_put_cstr(&req, "pending");
    sync_cbor_put_bool(&req, !opts[0].value);
    sync_cbor_put_cstr(&req, "limit");
    sync_cbor_put_uint(&req, (uint64_t)limit);
    cbor_item_t *root = ask(ctx, &req);
    if (!root)
        return 1;
    cbor_item_t *list = get(root, "conflicts");
    if (opts[2].value) {
        if (list)
            json_item(stdout, list, 0);
        else
            fputs("[]", stdout);
        putchar('\n');
    } else if (!list || !cbor_isa_array(list) || cbor_array_size(list) == 0) {
        printf("no %sconflicts\n", opts[0].value ? "" : "pending ");
    } else {
        printf("%-6s %-20s %-10s %-14s %-12s %-8s %-13s %-28s %s\n", "ID", "WHEN (UTC)", "TABLE",
               "KEY", "WRITER", "POLICY", "OUTCOME", "WRITER'S CHANGE", "SERVER ROW THEN");
        for (size_t i = 0; i < cbor_array_size(list); i++) {
            cbor_item_t *c = cbor_array_handle(list)[i];
            cell(get(c, "id"), 6, 0);
            cbor_item_t *at = get(c, "at");
            char when[32] = "-";
            if (at && cbor_isa_uint(at)) {
                time_t t = (time_t)(cbor_get_int(at) / 1000);
                struct tm tm;
                gmtime_r(&t, &tm);
                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
            }
            printf("%-20s ", when);
            cell(get(c, "table"), 10, 0);
            cell(get(c, "key"), 14, 0);
            cell(get(c, "device"), 12, 0);
            cell(get(c, "policy"), 8, 0);
            cbor_item_t *res = get(c, "resolved_at");
            if (res && cbor_isa_uint(res) && cbor_get_int(res) > 0)
                printf("%-13s ", "resolved");
            else
                cell(get(c, "outcome"), 13, 0);
            cbor_item_t *op = get(c, "op");
            if (op && cbor_isa_string(op) && cbor_string_length(op) == 6 &&
                memcmp(cbor_string_handle(op), "delete", 6) == 0)
                printf("%-28s ", "(delete)");
            else
                cell(get(c, "client"), 28, 0);
            cell(get(c, "server"), 0, 1);
        }
    }
    cbor_decref(&root);
    return 0;
}

/* Appends "col=value" as a text value (synccloud converts it to the column's type) or, for a
 * bare "col", a null. */
static int put_set(sync_cbuf *b, const char *s)
{
    const char *eq = strchr(s, '=');
    size_t n = eq ? (size_t)(eq - s) : strlen(s);
    if (n == 0)
        return SYNC_ERR_INVAL;
    sync_cbor_put_text(b, s, n);
    return eq ? sync_cbor_put_cstr(b, eq + 1) : sync_cbor_put_null(b);
}

int ctl_cmd_conflicts_resolve(ctl_ctx *ctx, int argc, char **argv)
{
    enum { MAXSET = 64 };
    ctl_opt opts[] = {{"take", 0, NULL}, {"by", 0, NULL}, {"json", 1, NULL}};
    const char *pos[1 + MAXSET];
    int npos = 0;
    /* --set COL=VALUE may repeat: take those out before the common parsing. */
    const char *sets[MAXSET];
    int nsets = 0;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest)
        return ctl_fail(ctx, 1, "out of memory");
    int nrest = 0;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "--set") == 0) && i + 1 < argc && nsets < MAXSET) {
            sets[nsets++] = argv[++i];
        } else if (strncmp(argv[i], "--set=", 6) == 0 && nsets < MAXSET) {
            sets[nsets++] = argv[i] + 6;
        } else {
            rest[nrest++] = argv[i];
        }
    }
    int status = ctl_args(ctx, nrest, rest, opts, 3, pos, 1, 1, &npos);
    free(rest);
    if (status >= 0)
        return status;
    char *end;
    unsigned long long id = strtoull(pos[0], &end, 10);
    if (*end || id == 0)
        return ctl_fail(ctx, 2, "the conflict ID is a positive number (see syncctl conflicts list)");
    const char *take = opts[0].value ? opts[0].value : nsets ? "values" : NULL;
    if (!take || (strcmp(take, "server") != 0 && strcmp(take, "client") != 0 &&
                  strcmp(take, "values") != 0))
        return ctl_fail(ctx, 2, "say what the row becomes: --take server, --take client, or "
                                "--set COLUMN=VALUE (repeatable)");
    if ((strcmp(take, "values") == 0) != (nsets > 0))
        return ctl_fail(ctx, 2, "--set goes with --take values (or no --take) only");
    sync_cbuf req;
    sync_cbuf_init(&req, 0);
    sync_cbor_put_map(&req, nsets ? 5 : 4);
    sync_cbor_put_cstr(&req, "op");
    sync_cbor_put_cstr(&req, "resolve");
    sync_cbor_put_cstr(&req, "id");
    sync_cbor_put_uint(&req, id);
    sync_cbor_put_cstr(&req, "take");
    sync_cbor_put_cstr(&req, take);
    sync_cbor_put_cstr(&req, "by");
    const char *who = opts[1].value ? opts[1].value : getenv("USER");
    sync_cbor_put_cstr(&req, who && sync_id_valid(who, strlen(who)) ? who : "admin");
    if (nsets) {
        sync_cbor_put_cstr(&req, "values");
        sync_cbor_put_map(&req, (size_t)nsets);
        for (int i = 0; i < nsets; i++)
            if (put_set(&req, sets[i]) != SYNC_OK) {
                sync_cbuf_free(&req);
                return ctl_fail(ctx, 2, "--set takes COLUMN=VALUE (or COLUMN alone for null)");
            }
    }
    cbor_item_t *root = ask(ctx, &req);
    if (!root)
        return 1;
    cbor_item_t *v = get(root, "version");
    if (opts[2].value) {
        json_item(stdout, root, 0);
        putchar('\n');
    } else {
        printf("conflict #%llu resolved (%s); the row is now version %" PRIu64
               " and goes to every replica\n",
               id, take, v && cbor_isa_uint(v) ? cbor_get_int(v) : 0);
    }
    cbor_decref(&root);
    return 0;
}
