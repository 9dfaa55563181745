/* link.c - the administrator's broker connection (see link.h). */
#include "link.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sync/conf.h"
#include "sync/err.h"
#include "sync/topic.h"

/* The correlation data of syncctl's one request per connection. */
static const uint8_t corr[8] = {'s', 'y', 'n', 'c', 'c', 't', 'l', '1'};

struct ctl_link {
    const ctl_config *cfg;
    sync_mqtt *m;
    char resp[SYNC_TOPIC_MAX]; /* our answer topic */
    char reqt[SYNC_TOPIC_MAX]; /* synccloud's request topic */
    uint8_t *req;              /* the request to send, or NULL */
    size_t req_len;
    int sent;        /* the request was handed to the broker */
    uint8_t *answer; /* the answer, or NULL */
    size_t answer_len;
    double ready_at; /* first connected and subscribed, or 0 */
};

double ctl_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int ctl_link_open(const ctl_ctx *ctx, const char *const *filters, size_t nfilters, ctl_link **out,
                  char *err, size_t errlen)
{
    const ctl_config *c = &ctx->cfg;
    *out = NULL;
    if (!c->tenant)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "set the tenant (--tenant or `tenant`)");
    if (!sync_id_valid(c->tenant, strlen(c->tenant)))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "Invalid tenant value (%s): 1-64 of A-Z a-z 0-9 _ . -", c->tenant);
    if (strstr(c->broker, "BROKER-HOST"))
        return sync_seterr(err, errlen, SYNC_ERR_INVAL,
                           "set the broker to reach synccloud through (--broker or `broker`)");
    ctl_link *l = calloc(1, sizeof *l);
    if (!l)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    l->cfg = c;
    char password[256] = "";
    if (c->admin_password_file && sync_conf_read_secret(c->admin_password_file, password,
                                                        sizeof password, err, errlen) != SYNC_OK) {
        free(l);
        return SYNC_ERR_INVAL;
    }
    char client_id[64];
    snprintf(client_id, sizeof client_id, "syncctl-%ld", (long)getpid());
    snprintf(l->resp, sizeof l->resp, "sync/%s/admin/resp/%s", c->tenant, client_id);
    snprintf(l->reqt, sizeof l->reqt, "sync/%s/admin/req", c->tenant);
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
    int rc = sync_mqtt_new(&mo, &l->m, err, errlen);
    memset(password, 0, sizeof password);
    if (rc != SYNC_OK) {
        free(l);
        return rc;
    }
    rc = sync_mqtt_subscribe(l->m, l->resp, 1);
    for (size_t i = 0; rc == SYNC_OK && i < nfilters; i++)
        rc = sync_mqtt_subscribe(l->m, filters[i], 1);
    if (rc == SYNC_OK)
        rc = sync_mqtt_start(l->m, err, errlen);
    else
        sync_seterr(err, errlen, rc, "cannot subscribe: %s", sync_strerror(rc));
    if (rc != SYNC_OK) {
        ctl_link_free(l);
        return rc;
    }
    *out = l;
    return SYNC_OK;
}

int ctl_link_request(ctl_link *l, const void *req, size_t len)
{
    if (l->req)
        return SYNC_ERR_STATE;
    l->req = malloc(len ? len : 1);
    if (!l->req)
        return SYNC_ERR_NOMEM;
    memcpy(l->req, req, len);
    l->req_len = len;
    return SYNC_OK;
}

sync_mqtt_msg *ctl_link_poll(ctl_link *l, int timeout_ms)
{
    sync_mqtt_msg *list = sync_mqtt_poll(l->m, timeout_ms), *keep = NULL, **tail = &keep;
    while (list) {
        sync_mqtt_msg *x = list;
        list = x->next;
        x->next = NULL;
        if (strcmp(x->topic, l->resp) == 0) {
            /* Ours if it carries our correlation data; the first one counts. */
            if (!l->answer && x->corr_len == sizeof corr &&
                memcmp(x->corr, corr, sizeof corr) == 0 &&
                (l->answer = malloc(x->len ? x->len : 1))) {
                memcpy(l->answer, x->payload, x->len);
                l->answer_len = x->len;
            }
            sync_mqtt_msg_free(x);
            continue;
        }
        *tail = x;
        tail = &x->next;
    }
    /* Connected means every SUBACK came: the answer topic is subscribed, so ask now. */
    if (sync_mqtt_connected(l->m)) {
        if (l->ready_at == 0)
            l->ready_at = ctl_mono();
        if (l->req && !l->sent &&
            sync_mqtt_publish_rr(l->m, l->reqt, l->req, l->req_len, 1, l->resp, corr,
                                 sizeof corr) == SYNC_OK)
            l->sent = 1;
    }
    return keep;
}

double ctl_link_ready_at(const ctl_link *l)
{
    return l->ready_at;
}

int ctl_link_sent(const ctl_link *l)
{
    return l->sent;
}

const uint8_t *ctl_link_answer(const ctl_link *l, size_t *len)
{
    if (len)
        *len = l->answer_len;
    return l->answer;
}

void ctl_link_why(const ctl_link *l, char *err, size_t errlen)
{
    const ctl_config *c = l->cfg;
    if (l->ready_at > 0)
        sync_seterr(err, errlen, SYNC_ERR_TIMEOUT,
                    "no answer from synccloud within %ld s: is it running for tenant '%s', and "
                    "may user '%s' publish on %s (the broker's ACL)?",
                    c->timeout, c->tenant, c->admin_user, l->reqt);
    else
        sync_seterr(err, errlen, SYNC_ERR_TIMEOUT,
                    "could not reach the broker within %ld s (tenant '%s', user '%s', topic %s): "
                    "check --broker, the credentials and the CA",
                    c->timeout, c->tenant, c->admin_user, l->reqt);
}

void ctl_link_free(ctl_link *l)
{
    if (!l)
        return;
    sync_mqtt_free(l->m);
    /* Paho marks its background threads stopped just before they return, and OpenSSL frees
     * their per-thread state only when they have ended. syncctl exits right after this: give
     * them a moment, or that state (and, under LeakSanitizer, the exit status) is lost. */
    struct timespec pause = {0, 50 * 1000 * 1000};
    nanosleep(&pause, NULL);
    free(l->req);
    free(l->answer);
    free(l);
}
