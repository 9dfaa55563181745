/* answer.c - asking synccloud and reading its answers (see answer.h). */
#include "answer.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "link.h"
#include "sync/err.h"

void ctl_write_json_string(FILE *f, const unsigned char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = s[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

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
        /* -1 - n: printed from n + 1, which would wrap for the smallest value. */
        if (cbor_get_int(it) == UINT64_MAX)
            fputs("-18446744073709551616", f);
        else
            fprintf(f, "-%" PRIu64, cbor_get_int(it) + 1);
        break;
    case CBOR_TYPE_STRING:
        if (cbor_string_is_definite(it))
            ctl_write_json_string(f, cbor_string_handle(it), cbor_string_length(it));
        else
            fputs("null", f);
        break;
    case CBOR_TYPE_BYTESTRING:
        fputs("\"x'", f);
        if (cbor_bytestring_is_definite(it))
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
            if (cbor_isa_string(p[i].key) && cbor_string_is_definite(p[i].key))
                ctl_write_json_string(f, cbor_string_handle(p[i].key),
                                      cbor_string_length(p[i].key));
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
            double d = cbor_float_get_float(it);
            if (d != d || d - d != 0) /* NaN and infinities are no JSON numbers */
                fputs("null", f);
            else
                fprintf(f, "%.17g", d);
        }
        break;
    default:
        fputs("null", f);
    }
}

void ctl_cbor_json(FILE *f, cbor_item_t *it)
{
    json_item(f, it, 0);
}

cbor_item_t *ctl_cbor_get(cbor_item_t *m, const char *k)
{
    if (!m || !cbor_isa_map(m))
        return NULL;
    struct cbor_pair *p = cbor_map_handle(m);
    size_t n = strlen(k);
    for (size_t i = 0; i < cbor_map_size(m); i++)
        if (cbor_isa_string(p[i].key) && cbor_string_is_definite(p[i].key) &&
            cbor_string_length(p[i].key) == n && memcmp(cbor_string_handle(p[i].key), k, n) == 0)
            return p[i].value;
    return NULL;
}

int ctl_cbor_uint(cbor_item_t *it, uint64_t *out)
{
    if (!it || !cbor_isa_uint(it))
        return 0;
    *out = cbor_get_int(it);
    return 1;
}

cbor_item_t *ctl_answer_decode(const ctl_ctx *ctx, const uint8_t *a, size_t n)
{
    struct cbor_load_result res;
    cbor_item_t *root = cbor_load(a, n, &res);
    if (!root || res.error.code != CBOR_ERR_NONE) {
        if (root)
            cbor_decref(&root);
        ctl_fail(ctx, 1, "synccloud's answer is not valid CBOR");
        return NULL;
    }
    cbor_item_t *ok = ctl_cbor_get(root, "ok");
    if (!ok || !cbor_is_bool(ok) || !cbor_get_bool(ok)) {
        cbor_item_t *e = ctl_cbor_get(root, "error");
        int text = e && cbor_isa_string(e) && cbor_string_is_definite(e);
        char msg[600];
        /* The reason is synccloud's text: printed without its control characters. */
        size_t len = text ? cbor_string_length(e) : 0;
        char reason[400];
        size_t o = 0;
        for (size_t i = 0; i < len && o + 1 < sizeof reason; i++) {
            unsigned char ch = cbor_string_handle(e)[i];
            reason[o++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
        }
        reason[o] = '\0';
        snprintf(msg, sizeof msg, "synccloud refused: %s", text ? reason : "no reason");
        ctl_fail(ctx, 1, msg);
        cbor_decref(&root);
        return NULL;
    }
    return root;
}

cbor_item_t *ctl_ask(const ctl_ctx *ctx, sync_cbuf *req)
{
    char err[512] = "out of memory";
    ctl_link *l = NULL;
    int rc = req->err ? req->err : ctl_link_open(ctx, NULL, 0, &l, err, sizeof err);
    if (rc == SYNC_OK && ctl_link_request(l, req->data, req->len) != SYNC_OK)
        rc = SYNC_ERR_NOMEM;
    sync_cbuf_free(req);
    if (rc != SYNC_OK) {
        ctl_link_free(l);
        ctl_fail(ctx, rc == SYNC_ERR_INVAL ? 2 : 1, err);
        return NULL;
    }
    double until = ctl_mono() + (double)ctx->cfg.timeout;
    size_t n = 0;
    const uint8_t *a = NULL;
    while (!(a = ctl_link_answer(l, &n)) && ctl_mono() < until) {
        sync_mqtt_msg *list = ctl_link_poll(l, 100);
        while (list) {
            sync_mqtt_msg *x = list->next;
            sync_mqtt_msg_free(list);
            list = x;
        }
    }
    cbor_item_t *root = NULL;
    if (a) {
        root = ctl_answer_decode(ctx, a, n);
    } else {
        ctl_link_why(l, err, sizeof err);
        ctl_fail(ctx, 1, err);
    }
    ctl_link_free(l);
    return root;
}
