/* jsonread.c - the bounded JSON reader (see sync/jsonread.h).
 *
 * Recursive descent over the text, at most SYNC_JSON_MAX_DEPTH calls deep. Values live in
 * fixed-size blocks of nodes (so pointers to them stay valid while more are added), strings in
 * one pool sized from the input: a decoded string plus its NUL is never longer than its quoted
 * source, so the pool never grows and never overflows.
 */
#include "sync/jsonread.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/err.h"

#define BLOCK_NODES 128

struct sync_jval {
    sync_jtype type;
    int boolean;      /* SYNC_JBOOL */
    int is_uint;      /* SYNC_JNUMBER written as an integer that fits uint64_t */
    uint64_t u;       /* its value when is_uint */
    int is_int;       /* SYNC_JNUMBER written as an integer that fits int64_t */
    int64_t i;        /* its value when is_int */
    double num;       /* SYNC_JNUMBER */
    const char *str;  /* SYNC_JSTRING: decoded, NUL-terminated, in the pool */
    size_t slen;      /* its length */
    const char *key;  /* member of an object: its key, in the pool; else NULL */
    size_t klen;      /* its length */
    sync_jval *child; /* arrays and objects: the first element or member */
    sync_jval *next;  /* the next element or member of the parent */
    size_t count;     /* arrays and objects: elements or members */
};

struct block {
    struct block *next;
    size_t used;
    sync_jval nodes[BLOCK_NODES];
};

struct sync_jdoc {
    sync_jval *root;
    struct block *blocks; /* newest first */
    size_t nodes;         /* nodes handed out */
    char *pool;           /* decoded strings */
    size_t pool_len;
    size_t replaced; /* lone surrogates read as U+FFFD */
};

/* The parser's position and where its errors go. */
typedef struct parser {
    const char *s;
    size_t len, pos;
    sync_jdoc *doc;
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

static sync_jval *new_node(parser *p)
{
    sync_jdoc *d = p->doc;
    if (d->nodes >= SYNC_JSON_MAX_NODES) {
        fail(p, SYNC_ERR_TOOBIG, "more than %d values", SYNC_JSON_MAX_NODES);
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
    sync_jval *n = &d->blocks->nodes[d->blocks->used++];
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
    sync_jdoc *d = p->doc;
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
                d->replaced++;
            }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            cp = 0xFFFD;
            d->replaced++;
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

static int parse_number(parser *p, sync_jval *v)
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
    if (n > SYNC_JSON_MAX_NUMBER)
        return fail(p, SYNC_ERR_TOOBIG, "a number longer than %d characters", SYNC_JSON_MAX_NUMBER);
    char buf[SYNC_JSON_MAX_NUMBER + 1];
    memcpy(buf, p->s + start, n);
    buf[n] = '\0';
    v->type = SYNC_JNUMBER;
    v->num = strtod(buf, NULL); /* overflow gives +-HUGE_VAL: still a number */
    if (integer && buf[0] != '-') {
        errno = 0;
        unsigned long long u = strtoull(buf, NULL, 10);
        if (errno == 0) {
            v->is_uint = 1;
            v->u = (uint64_t)u;
        }
    }
    if (integer) {
        errno = 0;
        long long i = strtoll(buf, NULL, 10);
        if (errno == 0) {
            v->is_int = 1;
            v->i = (int64_t)i;
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

static int parse_value(parser *p, sync_jval *v, int depth);

/* An array or object at its opening bracket. */
static int parse_container(parser *p, sync_jval *v, int depth)
{
    int obj = p->s[p->pos] == '{';
    char close = obj ? '}' : ']', where[24];
    if (depth >= SYNC_JSON_MAX_DEPTH)
        return fail(p, SYNC_ERR_TOOBIG, "nested deeper than %d", SYNC_JSON_MAX_DEPTH);
    v->type = obj ? SYNC_JOBJECT : SYNC_JARRAY;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return SYNC_OK;
    }
    sync_jval *last = NULL;
    for (;;) {
        sync_jval *item = new_node(p);
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

static int parse_value(parser *p, sync_jval *v, int depth)
{
    char where[24];
    skip_ws(p);
    if (p->pos >= p->len)
        return fail(p, SYNC_ERR_DECODE, "expected a value, found the end of the text");
    char c = p->s[p->pos];
    if (c == '{' || c == '[')
        return parse_container(p, v, depth);
    if (c == '"') {
        v->type = SYNC_JSTRING;
        return parse_string(p, &v->str, &v->slen);
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return parse_number(p, v);
    if (literal(p, "true") || literal(p, "false")) {
        v->type = SYNC_JBOOL;
        v->boolean = c == 't';
        return SYNC_OK;
    }
    if (literal(p, "null")) {
        v->type = SYNC_JNULL;
        return SYNC_OK;
    }
    return fail(p, SYNC_ERR_DECODE, "expected a value, found %s", here(p, where, sizeof where));
}

int sync_jdoc_parse(const char *text, size_t len, sync_jdoc **out, char *err, size_t errlen)
{
    *out = NULL;
    if (len > SYNC_JSON_MAX_INPUT)
        return sync_seterr(err, errlen, SYNC_ERR_TOOBIG,
                           "JSON: %zu bytes, more than the %d "
                           "accepted",
                           len, SYNC_JSON_MAX_INPUT);
    sync_jdoc *d = calloc(1, sizeof *d);
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
        sync_jdoc_free(d);
        return p.rc;
    }
    *out = d;
    return SYNC_OK;
}

void sync_jdoc_free(sync_jdoc *d)
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

size_t sync_jdoc_replaced(const sync_jdoc *d)
{
    return d ? d->replaced : 0;
}

const sync_jval *sync_jdoc_root(const sync_jdoc *d)
{
    return d ? d->root : NULL;
}

sync_jtype sync_jval_type(const sync_jval *v)
{
    return v ? v->type : SYNC_JNULL;
}

const sync_jval *sync_jval_get(const sync_jval *obj, const char *key)
{
    if (!obj || obj->type != SYNC_JOBJECT)
        return NULL;
    size_t n = strlen(key);
    for (const sync_jval *m = obj->child; m; m = m->next)
        if (m->klen == n && memcmp(m->key, key, n) == 0)
            return m;
    return NULL;
}

const sync_jval *sync_jval_first(const sync_jval *v)
{
    return v && (v->type == SYNC_JARRAY || v->type == SYNC_JOBJECT) ? v->child : NULL;
}

const sync_jval *sync_jval_next(const sync_jval *v)
{
    return v ? v->next : NULL;
}

size_t sync_jval_count(const sync_jval *v)
{
    return v && (v->type == SYNC_JARRAY || v->type == SYNC_JOBJECT) ? v->count : 0;
}

const char *sync_jval_key(const sync_jval *v, size_t *len)
{
    if (!v || !v->key)
        return NULL;
    if (len)
        *len = v->klen;
    return v->key;
}

int sync_jval_bool(const sync_jval *v, int *out)
{
    if (!v || v->type != SYNC_JBOOL)
        return 0;
    *out = v->boolean;
    return 1;
}

int sync_jval_double(const sync_jval *v, double *out)
{
    if (!v || v->type != SYNC_JNUMBER)
        return 0;
    *out = v->num;
    return 1;
}

int sync_jval_uint(const sync_jval *v, uint64_t *out)
{
    if (!v || v->type != SYNC_JNUMBER)
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

int sync_jval_int(const sync_jval *v, int64_t *out)
{
    if (!v || v->type != SYNC_JNUMBER || !v->is_int)
        return 0;
    *out = v->i;
    return 1;
}

const char *sync_jval_str(const sync_jval *v, size_t *len)
{
    if (!v || v->type != SYNC_JSTRING)
        return NULL;
    if (len)
        *len = v->slen;
    return v->str;
}
