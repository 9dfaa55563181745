/* cmd_admin.c - commands answered by a running synccloud: `conflicts list`, `conflicts
 * resolve` and `resync`. They send one CBOR request on sync/TENANT/admin/req through the
 * broker (MQTT 5 request/response, docs/protocol.md "Administration"; answer.h) and print the
 * answer, as text or with --json as JSON.
 */
#include <cbor.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "answer.h"
#include "link.h"
#include "states.h"
#include "ctl.h"
#include "out.h"
#include "sync/cbor.h"
#include "sync/err.h"
#include "sync/topic.h"

/* A cell of the conflicts table: the item as compact JSON (strings without their quotes), cut
 * to width. ctl_cell() makes it safe for the terminal: the values are what devices wrote. */
static void cell(cbor_item_t *it, int width, int last)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return;
    if (it)
        ctl_cbor_json(f, it);
    else
        fputs("-", f);
    fclose(f);
    char *s = buf;
    if (it && cbor_isa_string(it) && len >= 2) {
        s++;
        s[len - 2] = '\0';
    }
    ctl_cell(stdout, s, last ? 0 : width);
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
    cbor_item_t *root = ctl_ask(ctx, &req);
    if (!root)
        return 1;
    cbor_item_t *list = ctl_cbor_get(root, "conflicts");
    if (opts[2].value) {
        if (list)
            ctl_cbor_json(stdout, list);
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
            cell(ctl_cbor_get(c, "id"), 6, 0);
            cbor_item_t *at = ctl_cbor_get(c, "at");
            char when[32] = "-";
            if (at && cbor_isa_uint(at)) {
                time_t t = (time_t)(cbor_get_int(at) / 1000);
                struct tm tm;
                gmtime_r(&t, &tm);
                strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
            }
            printf("%-20s ", when);
            cell(ctl_cbor_get(c, "table"), 10, 0);
            cell(ctl_cbor_get(c, "key"), 14, 0);
            cell(ctl_cbor_get(c, "device"), 12, 0);
            cell(ctl_cbor_get(c, "policy"), 8, 0);
            cbor_item_t *res = ctl_cbor_get(c, "resolved_at");
            if (res && cbor_isa_uint(res) && cbor_get_int(res) > 0)
                printf("%-13s ", "resolved");
            else
                cell(ctl_cbor_get(c, "outcome"), 13, 0);
            cbor_item_t *op = ctl_cbor_get(c, "op");
            if (op && cbor_isa_string(op) && cbor_string_length(op) == 6 &&
                memcmp(cbor_string_handle(op), "delete", 6) == 0)
                printf("%-28s ", "(delete)");
            else
                cell(ctl_cbor_get(c, "client"), 28, 0);
            cell(ctl_cbor_get(c, "server"), 0, 1);
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

/* Length of the column name that starts s and is followed by '=', or 0. Column names are SQL
 * identifiers (the schema file's rule): a letter or '_', then letters, digits and '_'. */
static size_t assignment_at(const char *s)
{
    size_t n = 0;
    if (!isalpha((unsigned char)s[0]) && s[0] != '_')
        return 0;
    while (isalnum((unsigned char)s[n]) || s[n] == '_')
        n++;
    return s[n] == '=' ? n : 0;
}

/* Splits `--take COL=VALUE[,COL=VALUE...]` (in place) into sets[]. A comma starts the next
 * assignment only where "NAME=" follows it, so "note=a,b" sets note to "a,b"; a value that
 * holds ",NAME=" must be given with --set. Returns SYNC_OK or SYNC_ERR_TOOBIG. */
static int split_take(char *take, const char **sets, int *nsets, int max)
{
    char *p = take;
    for (;;) {
        if (*nsets >= max)
            return SYNC_ERR_TOOBIG;
        sets[(*nsets)++] = p;
        char *c = p + assignment_at(p);
        while ((c = strchr(c, ',')) && !assignment_at(c + 1))
            c++;
        if (!c)
            return SYNC_OK;
        *c = '\0';
        p = c + 1;
    }
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
    if (*end || id == 0 || pos[0][0] == '-')
        return ctl_fail(ctx, 2,
                        "the conflict ID is a positive number (see syncctl conflicts list)");
    const char *take = opts[0].value ? opts[0].value : nsets ? "values" : NULL;
    /* The issue's `--take VALUE`: --take COL=VALUE[,COL=VALUE...] is a --set for each. */
    char *assigned = NULL;
    if (take && strchr(take, '=')) {
        if (!assignment_at(take))
            return ctl_fail(ctx, 2, "--take COLUMN=VALUE needs a column name before '='");
        assigned = strdup(take);
        if (!assigned)
            return ctl_fail(ctx, 1, "out of memory");
        if (split_take(assigned, sets, &nsets, MAXSET) != SYNC_OK) {
            free(assigned);
            return ctl_fail(ctx, 2, "more than 64 column values");
        }
        take = "values";
    } else if (take && (strcmp(take, "server") != 0 && strcmp(take, "client") != 0 &&
                        strcmp(take, "values") != 0)) {
        take = NULL;
    }
    if (!take)
        return ctl_fail(ctx, 2,
                        "say what the row becomes: --take server, --take client, "
                        "--take COLUMN=VALUE[,COLUMN=VALUE...], or --set COLUMN=VALUE "
                        "(repeatable)");
    if ((strcmp(take, "values") == 0) != (nsets > 0)) {
        free(assigned);
        return ctl_fail(ctx, 2, "--set goes with --take values, --take COLUMN=VALUE or no --take");
    }
    if (opts[1].value && !sync_id_valid(opts[1].value, strlen(opts[1].value))) {
        free(assigned);
        return ctl_fail(ctx, 2, "--by takes a name of 1-64 of A-Z a-z 0-9 _ . -");
    }
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
                free(assigned);
                return ctl_fail(ctx, 2, "--set takes COLUMN=VALUE (or COLUMN alone for null)");
            }
    }
    free(assigned);
    cbor_item_t *root = ctl_ask(ctx, &req);
    if (!root)
        return 1;
    cbor_item_t *v = ctl_cbor_get(root, "version");
    if (opts[2].value) {
        ctl_cbor_json(stdout, root);
        putchar('\n');
    } else {
        printf("conflict #%llu resolved (%s); the row is now version %" PRIu64
               " and goes to every replica\n",
               id, take, v && cbor_isa_uint(v) ? cbor_get_int(v) : 0);
    }
    cbor_decref(&root);
    return 0;
}

/* --follow: the device's state messages until its rebuild is over. The rebuild is over when a
 * state that showed a catch-up is followed by one without, or when the count of rebuilds the
 * device reports (`rebuilds`) moved and no catch-up runs: a small table is rebuilt between two
 * state messages (they come at most every 2 s) and never shows one. The link was
 * subscribed to the device's state before the request went out, so no live state is missed;
 * `early` holds the messages that came with the answer. */
static int follow_resync(ctl_ctx *ctx, ctl_link *l, sync_mqtt_msg *early, const char *device,
                         double wait_s, double t0)
{
    int tty = isatty(STDOUT_FILENO), seen_pull = 0, done = 0;
    double printed = 0;
    uint64_t base = CTL_NONE; /* the rebuild count of the first state seen */
    sync_mqtt_msg *list = early;
    for (;;) {
        for (sync_mqtt_msg *m = list, *n; m; m = n) {
            n = m->next;
            ctl_devstate st;
            char why[256];
            if (!done && ctl_devstate_read((const char *)m->payload, m->len, &st, why,
                                           sizeof why) == SYNC_OK) {
                if (st.has_pull && st.pull_done != CTL_NONE && st.pull_total != CTL_NONE) {
                    seen_pull = 1;
                    char table[CTL_STATE_NAME_MAX + 1];
                    ctl_safe(table, sizeof table, st.pull_table, strlen(st.pull_table));
                    if (tty || ctl_mono() - printed >= 1.0) {
                        printf("%s%s: %" PRIu64 "/%" PRIu64 " rows (%.0f rows/s)%s", tty ? "\r" : "",
                               table, st.pull_done, st.pull_total,
                               st.pull_rate == st.pull_rate ? st.pull_rate : 0.0, tty ? "" : "\n");
                        fflush(stdout);
                        printed = ctl_mono();
                    }
                } else if (!st.has_pull &&
                           (seen_pull || (base != CTL_NONE && st.rebuilds != CTL_NONE &&
                                          st.rebuilds != base))) {
                    done = 1;
                }
                if (base == CTL_NONE)
                    base = st.rebuilds;
            }
            sync_mqtt_msg_free(m);
        }
        if (done || ctl_mono() - t0 >= wait_s)
            break;
        list = ctl_link_poll(l, 200);
    }
    if (tty && seen_pull)
        putchar('\n');
    if (!done)
        return ctl_fail(ctx, 1, "the rebuild did not finish within --wait (is the device online?)");
    printf("%s rebuilt its tables from the cloud in %.1f s\n", device, ctl_mono() - t0);
    return 0;
}

int ctl_cmd_resync(ctl_ctx *ctx, int argc, char **argv)
{
    ctl_opt opts[] = {{"by", 0, NULL}, {"json", 1, NULL}, {"follow", 1, NULL}, {"wait", 0, NULL}};
    const char *pos[1];
    int npos = 0;
    int status = ctl_args(ctx, argc, argv, opts, 4, pos, 1, 1, &npos);
    if (status >= 0)
        return status;
    const char *device = pos[0];
    if (!sync_id_valid(device, strlen(device)))
        return ctl_fail(ctx, 2, "DEVICE is a device id: 1-64 of A-Z a-z 0-9 _ . -");
    const char *who = opts[0].value ? opts[0].value : getenv("USER");
    if (opts[0].value && !sync_id_valid(who, strlen(who)))
        return ctl_fail(ctx, 2, "--by takes a name of 1-64 of A-Z a-z 0-9 _ . -");
    double wait_s = 600;
    if (opts[3].value) {
        char *end;
        wait_s = strtod(opts[3].value, &end);
        if (*end || !(wait_s > 0 && wait_s <= 86400))
            return ctl_fail(ctx, 2, "--wait takes seconds, more than 0");
    }
    sync_cbuf req;
    sync_cbuf_init(&req, 0);
    sync_cbor_put_map(&req, 3);
    sync_cbor_put_cstr(&req, "op");
    sync_cbor_put_cstr(&req, "resync");
    sync_cbor_put_cstr(&req, "device");
    sync_cbor_put_cstr(&req, device);
    sync_cbor_put_cstr(&req, "by");
    sync_cbor_put_cstr(&req, who && sync_id_valid(who, strlen(who)) ? who : "admin");
    cbor_item_t *root = NULL;
    ctl_link *l = NULL;
    sync_mqtt_msg *early = NULL, **tail = &early;
    double t0 = ctl_mono();
    if (!opts[2].value) {
        root = ctl_ask(ctx, &req);
    } else {
        /* Subscribed to the device's state before asking, so its first live state after the
         * rebuild cannot slip by. */
        char err[512] = "out of memory", filter[SYNC_TOPIC_MAX];
        snprintf(filter, sizeof filter, "sync/%s/dev/%s/state", ctx->cfg.tenant, device);
        const char *filters[] = {filter};
        int rc = req.err ? req.err : ctl_link_open(ctx, filters, 1, &l, err, sizeof err);
        if (rc == SYNC_OK && ctl_link_request(l, req.data, req.len) != SYNC_OK)
            rc = SYNC_ERR_NOMEM;
        sync_cbuf_free(&req);
        if (rc != SYNC_OK) {
            ctl_link_free(l);
            return ctl_fail(ctx, rc == SYNC_ERR_INVAL ? 2 : 1, err);
        }
        double until = ctl_mono() + (double)ctx->cfg.timeout;
        size_t n = 0;
        const uint8_t *a = NULL;
        while (!(a = ctl_link_answer(l, &n)) && ctl_mono() < until) {
            *tail = ctl_link_poll(l, 100);
            while (*tail)
                tail = &(*tail)->next;
        }
        if (a) {
            root = ctl_answer_decode(ctx, a, n);
        } else {
            ctl_link_why(l, err, sizeof err);
            ctl_fail(ctx, 1, err);
        }
    }
    if (!root) {
        while (early) {
            sync_mqtt_msg *x = early->next;
            sync_mqtt_msg_free(early);
            early = x;
        }
        ctl_link_free(l);
        return 1;
    }
    if (opts[1].value) {
        ctl_cbor_json(stdout, root);
        putchar('\n');
    } else {
        uint64_t id = 0;
        char cmd[48] = "";
        if (ctl_cbor_uint(ctl_cbor_get(root, "id"), &id))
            snprintf(cmd, sizeof cmd, " (command #%" PRIu64 ")", id);
        printf("resync of %s requested%s: it rebuilds its replicated tables from the cloud "
               "once it gets the command (when it connects, if offline), keeping its unsent "
               "changes; see the PULL column of `syncctl status`\n",
               device, cmd);
    }
    cbor_decref(&root);
    if (!opts[2].value)
        return 0;
    fflush(stdout);
    status = follow_resync(ctx, l, early, device, wait_s, t0);
    ctl_link_free(l);
    return status;
}
