/* jsonread.c - the bounded JSON reader (see jsonread.h).
 *
 * Recursive descent over the text, at most CTL_JSON_MAX_DEPTH calls deep. Values live in
 * fixed-size blocks of nodes (so pointers to them stay valid while more are added), strings in
 * one pool sized from the input: a decoded string plus its NUL is never longer than its quoted
 * source, so the pool never grows and never overflows.
 */
#include "jsonread.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/err.h"

#define BLOCK_NODES 128

struct ctl_json {
    ctl_json_type type;
    int boolean;     /* CTL_JSON_BOOL */
    int is_uint;     /* CTL_JSON_NUMBER written as an integer that fits uint64_t */
    uint64_t u;      /* its value when is_uint */
    double num;      /* CTL_JSON_NUMBER */
    const char *str; /* CTL_JSON_STRING: decoded, NUL-terminated, in the pool */
    size_t slen;     /* its length */
    const char *key; /* member of an object: its key, in the pool; else NULL */
    size_t klen;     /* its length */
    ctl_json *child; /* arrays and objects: the first element or member */
    ctl_json *next;  /* the next element or member of the parent */
    size_t count;    /* arrays and objects: elements or members */
};

struct block {
    struct block *next;
    size_t used;
    ctl_json nodes[BLOCK_NODES];
};

struct ctl_json_doc {
    ctl_json *root;
    struct block *blocks; /* newest first */
    size_t nodes;         /* nodes handed out */
    char *pool;           /* decoded strings */
    size_t pool_len;
};

/* The parser's position and where its errors go. */
typedef struct parser {
    const char *s;
    size_t len, pos;
    ctl_json_doc *doc;
    char *err;
    size_t errlen;
    int rc;
} parser;

static int fail(parser *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(parser *p, int code, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->rc = code;
    return sync_seterr(p->err, p->errlen, code, "JSON: %s at byte %zu", msg, p->pos);
}

static ctl_json *new_node(parser *p)
{
    ctl_json_doc *d = p->doc;
    if (d->nodes >= CTL_JSON_MAX_NODES) {
        fail(p, SYNC_ERR_TOOBIG, "more than %d values", CTL_JSON_MAX_NODES);
        return NULL;
    }
    if (!d->blocks || d->blocks->used == BLOCK_NODES) {
        struct block *b = malloc(sizeof *b);
        if (!b) {
            fail(p, SYNC_ERR_NOMEM, "out of memory");
            return NULL;
        }
        b->next = d->blocks;
        b->used = 0;
        d->blocks = b;
    }
    ctl_json *n = &d->blocks->nodes[d->blocks->used++];
    memset(n, 0, sizeof *n);
    d->nodes++;
    return n;
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

/* Describes the byte at the current position for an error message. */
static const char *here(const parser *p, char *buf, size_t n)
{
    if (p->pos >= p->len)
        return "the end of the text";
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c >= 0x21 && c < 0x7f)
        snprintf(buf, n, "'%c'", c);
    else
        snprintf(buf, n, "byte 0x%02x", c);
    return buf;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parses a string at the opening quote into the pool. */
static int parse_string(parser *p, const char **out, size_t *outlen)
{
    ctl_json_doc *d = p->doc;
    char *o = d->pool + d->pool_len;
    size_t n = 0;
    p->pos++; /* the opening quote */
    for (;;) {
        if (p->pos >= p->len)
            return fail(p, SYNC_ERR_DECODE, "unterminated string");
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20)
            return fail(p, SYNC_ERR_DECODE, "control character 0x%02x in a string", c);
        if (c != '\\') {
            o[n++] = (char)c;
            p->pos++;
            continue;
        }
        if (p->pos + 1 >= p->len)
            return fail(p, SYNC_ERR_DECODE, "unterminated string");
        char e = p->s[p->pos + 1];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e != '\0' && simple) {
            static const char map[] = "\"\\/\b\f\n\r\t";
            o[n++] = map[simple - "\"\\/bfnrt"];
            p->pos += 2;
            continue;
        }
        if (e != 'u')
            return fail(p, SYNC_ERR_DECODE, "unknown escape in a string");
        unsigned cp;
        if (p->pos + 6 > p->len || hex4(p->s + p->pos + 2, &cp) != 0)
            return fail(p, SYNC_ERR_DECODE, "\\u needs 4 hex digits");
        p->pos += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            unsigned lo;
            if (p->pos + 6 <= p->len && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u' &&
                hex4(p->s + p->pos + 2, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p->pos += 6;
            } else {
                cp = 0xFFFD;
            }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            cp = 0xFFFD;
        }
        n += put_utf8(o + n, cp);
    }
    o[n] = '\0';
    d->pool_len += n + 1;
    *out = o;
    *outlen = n;
    return SYNC_OK;
}

static int digits(parser *p)
{
    size_t start = p->pos;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
        p->pos++;
    return p->pos > start;
}

static int parse_number(parser *p, ctl_json *v)
{
    size_t start = p->pos;
    int integer = 1;
    if (p->s[p->pos] == '-')
        p->pos++;
    if (p->pos < p->len && p->s[p->pos] == '0') {
        p->pos++;
        if (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            return fail(p, SYNC_ERR_DECODE, "leading zero in a number");
    } else if (!digits(p)) {
        return fail(p, SYNC_ERR_DECODE, "a number needs digits");
    }
    if (p->pos < p->len && p->s[p->pos] == '.') {
        integer = 0;
        p->pos++;
        if (!digits(p))
            return fail(p, SYNC_ERR_DECODE, "digits must follow the decimal point");
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        integer = 0;
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
            p->pos++;
        if (!digits(p))
            return fail(p, SYNC_ERR_DECODE, "digits must follow the exponent");
    }
    size_t n = p->pos - start;
    if (n > CTL_JSON_MAX_NUMBER)
        return fail(p, SYNC_ERR_TOOBIG, "a number longer than %d characters", CTL_JSON_MAX_NUMBER);
    char buf[CTL_JSON_MAX_NUMBER + 1];
    memcpy(buf, p->s + start, n);
    buf[n] = '\0';
    v->type = CTL_JSON_NUMBER;
    v->num = strtod(buf, NULL); /* overflow gives +-HUGE_VAL: still a number */
    if (integer && buf[0] != '-') {
        errno = 0;
        unsigned long long u = strtoull(buf, NULL, 10);
        if (errno == 0) {
            v->is_uint = 1;
            v->u = (uint64_t)u;
        }
    }
    return SYNC_OK;
}

static int literal(parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return 0;
    p->pos += n;
    return 1;
}

static int parse_value(parser *p, ctl_json *v, int depth);

/* An array or object at its opening bracket. */
static int parse_container(parser *p, ctl_json *v, int depth)
{
    int obj = p->s[p->pos] == '{';
    char close = obj ? '}' : ']', where[24];
    if (depth >= CTL_JSON_MAX_DEPTH)
        return fail(p, SYNC_ERR_TOOBIG, "nested deeper than %d", CTL_JSON_MAX_DEPTH);
    v->type = obj ? CTL_JSON_OBJECT : CTL_JSON_ARRAY;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return SYNC_OK;
    }
    ctl_json *last = NULL;
    for (;;) {
        ctl_json *item = new_node(p);
        if (!item)
            return p->rc;
        skip_ws(p);
        if (obj) {
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return fail(p, SYNC_ERR_DECODE, "expected a member name, found %s",
                            here(p, where, sizeof where));
            if (parse_string(p, &item->key, &item->klen) != SYNC_OK)
                return p->rc;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':')
                return fail(p, SYNC_ERR_DECODE, "expected ':', found %s",
                            here(p, where, sizeof where));
            p->pos++;
        }
        if (parse_value(p, item, depth + 1) != SYNC_OK)
            return p->rc;
        if (last)
            last->next = item;
        else
            v->child = item;
        last = item;
        v->count++;
        skip_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == close) {
            p->pos++;
            return SYNC_OK;
        }
        return fail(p, SYNC_ERR_DECODE, "expected ',' or '%c', found %s", close,
                    here(p, where, sizeof where));
    }
}

static int parse_value(parser *p, ctl_json *v, int depth)
{
    char where[24];
    skip_ws(p);
    if (p->pos >= p->len)
        return fail(p, SYNC_ERR_DECODE, "expected a value, found the end of the text");
    char c = p->s[p->pos];
    if (c == '{' || c == '[')
        return parse_container(p, v, depth);
    if (c == '"') {
        v->type = CTL_JSON_STRING;
        return parse_string(p, &v->str, &v->slen);
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return parse_number(p, v);
    if (literal(p, "true") || literal(p, "false")) {
        v->type = CTL_JSON_BOOL;
        v->boolean = c == 't';
        return SYNC_OK;
    }
    if (literal(p, "null")) {
        v->type = CTL_JSON_NULL;
        return SYNC_OK;
    }
    return fail(p, SYNC_ERR_DECODE, "expected a value, found %s", here(p, where, sizeof where));
}

int ctl_json_parse(const char *text, size_t len, ctl_json_doc **out, char *err, size_t errlen)
{
    *out = NULL;
    if (len > CTL_JSON_MAX_INPUT)
        return sync_seterr(err, errlen, SYNC_ERR_TOOBIG,
                           "JSON: %zu bytes, more than the %d "
                           "accepted",
                           len, CTL_JSON_MAX_INPUT);
    ctl_json_doc *d = calloc(1, sizeof *d);
    if (d)
        d->pool = malloc(len + 1);
    if (!d || !d->pool) {
        free(d);
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    }
    parser p = {text ? text : "", text ? len : 0, 0, d, err, errlen, SYNC_OK};
    d->root = new_node(&p);
    if (d->root && parse_value(&p, d->root, 0) == SYNC_OK) {
        skip_ws(&p);
        if (p.pos < p.len) {
            char where[24];
            fail(&p, SYNC_ERR_DECODE, "unexpected %s after the value",
                 here(&p, where, sizeof where));
        }
    }
    if (p.rc != SYNC_OK) {
        ctl_json_free(d);
        return p.rc;
    }
    *out = d;
    return SYNC_OK;
}

void ctl_json_free(ctl_json_doc *d)
{
    if (!d)
        return;
    while (d->blocks) {
        struct block *n = d->blocks->next;
        free(d->blocks);
        d->blocks = n;
    }
    free(d->pool);
    free(d);
}

const ctl_json *ctl_json_root(const ctl_json_doc *d)
{
    return d ? d->root : NULL;
}

ctl_json_type ctl_json_typeof(const ctl_json *v)
{
    return v ? v->type : CTL_JSON_NULL;
}

const ctl_json *ctl_json_get(const ctl_json *obj, const char *key)
{
    if (!obj || obj->type != CTL_JSON_OBJECT)
        return NULL;
    size_t n = strlen(key);
    for (const ctl_json *m = obj->child; m; m = m->next)
        if (m->klen == n && memcmp(m->key, key, n) == 0)
            return m;
    return NULL;
}

const ctl_json *ctl_json_first(const ctl_json *v)
{
    return v && (v->type == CTL_JSON_ARRAY || v->type == CTL_JSON_OBJECT) ? v->child : NULL;
}

const ctl_json *ctl_json_next(const ctl_json *v)
{
    return v ? v->next : NULL;
}

size_t ctl_json_count(const ctl_json *v)
{
    return v && (v->type == CTL_JSON_ARRAY || v->type == CTL_JSON_OBJECT) ? v->count : 0;
}

const char *ctl_json_key(const ctl_json *v, size_t *len)
{
    if (!v || !v->key)
        return NULL;
    if (len)
        *len = v->klen;
    return v->key;
}

int ctl_json_bool(const ctl_json *v, int *out)
{
    if (!v || v->type != CTL_JSON_BOOL)
        return 0;
    *out = v->boolean;
    return 1;
}

int ctl_json_number(const ctl_json *v, double *out)
{
    if (!v || v->type != CTL_JSON_NUMBER)
        return 0;
    *out = v->num;
    return 1;
}

int ctl_json_uint(const ctl_json *v, uint64_t *out)
{
    if (!v || v->type != CTL_JSON_NUMBER)
        return 0;
    if (v->is_uint) {
        *out = v->u;
        return 1;
    }
    /* 1e3 or 12.0: integral and below 2^53, where every integer is exact (2^53 itself may
     * be 2^53 + 1 rounded). */
    if (v->num >= 0 && v->num < 9007199254740992.0 && floor(v->num) == v->num) {
        *out = (uint64_t)v->num;
        return 1;
    }
    return 0;
}

const char *ctl_json_string(const ctl_json *v, size_t *len)
{
    if (!v || v->type != CTL_JSON_STRING)
        return NULL;
    if (len)
        *len = v->slen;
    return v->str;
}
