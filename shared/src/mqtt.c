/* mqtt.c - one MQTT 5 connection over Paho MQTTAsync, queued for a single owner thread
 * (see sync/mqtt.h).
 *
 * Threads: Paho calls on_* below from its own threads; they only copy data and update counters
 * under m->mu. Everything that may block, calls into Paho or creates/destroys Paho objects runs
 * on the owner's thread (sync_mqtt_poll, sync_mqtt_publish, sync_mqtt_free). Reconnecting is done
 * by the owner too, from sync_mqtt_poll, with exponential backoff and jitter, so no retry storm
 * follows a broker restart when many devices lose it at once.
 *
 * Paho 1.3.12 (and upstream as of 2025: eclipse-paho/paho.mqtt.c #1621, #1622, #1401) mishandles
 * a QoS 1/2 PUBLISH whose first write fails with a socket error (peer reset, e.g. the broker
 * killed with -9 while we publish): MQTTAsync_processCommand calls the failure callback, then
 * frees the command's topic and payload (MQTTAsync_freeCommand) although
 * MQTTProtocol_startPublish already appended a message sharing those two buffers to the client's
 * outboundMsgs. On the next CONNACK with sessionPresent 1, MQTTProtocol_retries resends it:
 * strlen() and writev() of freed memory (a crash, or garbage on the wire: "Protocol error" at
 * the broker). With sessionPresent 0, on MQTTAsync_destroy or on a PUBACK, Paho frees the two
 * buffers again (its heap tracking skips a pointer it no longer knows, unless the memory has been
 * reused meanwhile: then it frees someone else's block).
 *
 * So such a client is "poisoned" (on_pub_fail_qos recognises the failure) and never used again:
 * never reconnected, never destroyed. The next attempt uses a fresh client (struct link) on the
 * same broker session (the broker keeps our subscriptions and queued messages); the poisoned one
 * stays, disconnected and inert, in Paho's client list with what it held (its unacknowledged
 * publishes are dropped, as the broker may drop QoS 1 messages anyway: the edge resends unacked
 * batches, replicas catch up). That is a bounded leak per such failure, logged. Destroying it
 * instead would free the stale pointers again, and would leak its queued publishes anyway
 * (1.3.12's MQTTAsync_destroy clears their topic and payload pointers before freeing queued
 * commands, MQTTAsync_NULLPublishCommands). A healthy client is reconnected as before: Paho then
 * sends its queued publishes and resends the unacknowledged ones, whose buffers are valid.
 *
 * Callbacks get their struct link as context, never the sync_mqtt: a retired client's late
 * events are ignored, and sync_mqtt_free clears link->m (under links_mu) before freeing m, so a
 * callback of a client left to Paho can never reach freed memory.
 */
#include "sync/mqtt.h"

#include <MQTTAsync.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <string.h>
#include <time.h>

#include "sync/err.h"
#include "sync/log.h"

typedef enum conn_state {
    ST_IDLE,        /* not started, or waiting for the next attempt */
    ST_CONNECTING,  /* MQTTAsync_connect issued */
    ST_SUBSCRIBING, /* connected, waiting for SUBACKs */
    ST_READY,       /* connected and subscribed */
} conn_state;

struct sub {
    char *filter;
    int qos;
};

/* One Paho client; m->cur is replaced only when it is poisoned (see the top). */
struct link {
    sync_mqtt *m; /* owner; NULL once sync_mqtt_free has begun (written under links_mu) */
    MQTTAsync client;
    int poisoned; /* Paho lost a publish's buffers (see top): never connect nor destroy it
                   * (under links_mu, so it is recorded even while the owner is being freed) */
    long pending; /* publishes taken by Paho and not completed (under m->mu) */
    /* Owner thread: */
    struct link *next; /* in m->leaked */
};

/* Guards link->m and link->poisoned; taken before m->mu, never while holding it. */
static pthread_mutex_t links_mu = PTHREAD_MUTEX_INITIALIZER;

static int link_poisoned(struct link *l)
{
    pthread_mutex_lock(&links_mu);
    int r = l->poisoned;
    pthread_mutex_unlock(&links_mu);
    return r;
}

struct sync_mqtt {
    struct link *cur;    /* the client in use (owner thread writes it, under mu) */
    struct link *leaked; /* poisoned clients left to Paho (owner thread) */
    int nleaked;
    pthread_mutex_t mu; /* guards everything below that Paho's threads touch */
    pthread_cond_t cv;
    sync_mqtt_msg *head, *tail; /* arrived messages, oldest first */
    int woken;                  /* something happened since the last poll */
    conn_state state;
    int subs_left;        /* SUBACKs still awaited in ST_SUBSCRIBING */
    int lost;             /* connection lost / attempt failed: owner schedules a retry */
    char last_error[256]; /* why the last attempt failed, for one log line */
    unsigned long connects;
    int session_present; /* from the last CONNACK */
    int need_subscribe;  /* connected: the owner sends the SUBSCRIBEs */
    int blocked;         /* a publish was refused for a full window: wake the owner on PUBACK */
    unsigned long delivered;
    int disconnect_done;

    /* Owner-thread state. */
    int started;
    int failures;                /* consecutive failed attempts, for the backoff */
    int logged_down;             /* "disconnected" already logged for this outage */
    unsigned long seen_connects; /* connects already logged */
    double next_attempt;         /* monotonic seconds */
    unsigned rng;                /* jitter */

    struct sub *subs;
    int nsubs;
    char *uri;
    char *client_id, *username, *password, *cafile, *certfile, *keyfile;
    char *will_topic;
    void *will_payload;
    size_t will_len;
    int will_retain;
    int tls_insecure, clean_start, keepalive, max_inflight, retry_min, retry_max;
    uint32_t session_expiry;
};

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sync_mqtt_opts_default(sync_mqtt_opts *o)
{
    memset(o, 0, sizeof *o);
    o->keepalive = 30;
    o->max_inflight = 64;
    o->retry_min = 1;
    o->retry_max = 30;
    o->clean_start = 1;
}

static void signal_locked(sync_mqtt *m)
{
    m->woken = 1;
    pthread_cond_broadcast(&m->cv);
}

/* ---- Paho callbacks (Paho's threads) ---- */

/* Returns l's owner with m->mu held, or NULL if the owner is being freed. */
static sync_mqtt *owner_lock(struct link *l)
{
    pthread_mutex_lock(&links_mu);
    sync_mqtt *m = l->m;
    if (m)
        pthread_mutex_lock(&m->mu);
    pthread_mutex_unlock(&links_mu);
    return m;
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *msg)
{
    struct link *l = ctx;
    size_t tl = topic_len > 0 ? (size_t)topic_len : strlen(topic);
    sync_mqtt_msg *q = calloc(1, sizeof *q);
    char *t = malloc(tl + 1);
    uint8_t *p = msg->payloadlen > 0 ? malloc((size_t)msg->payloadlen) : NULL;
    if (!q || !t || (msg->payloadlen > 0 && !p)) {
        free(q);
        free(t);
        free(p);
        /* Returning 0 makes Paho offer the message again later instead of losing it. */
        return 0;
    }
    memcpy(t, topic, tl);
    t[tl] = '\0';
    if (p)
        memcpy(p, msg->payload, (size_t)msg->payloadlen);
    q->topic = t;
    q->payload = p;
    q->len = (size_t)(msg->payloadlen > 0 ? msg->payloadlen : 0);
    q->retained = msg->retained;
    MQTTProperty *rt =
        MQTTProperties_getProperty(&msg->properties, MQTTPROPERTY_CODE_RESPONSE_TOPIC);
    MQTTProperty *cd =
        MQTTProperties_getProperty(&msg->properties, MQTTPROPERTY_CODE_CORRELATION_DATA);
    if (rt && rt->value.data.len > 0) {
        q->response_topic = malloc((size_t)rt->value.data.len + 1);
        if (q->response_topic) {
            memcpy(q->response_topic, rt->value.data.data, (size_t)rt->value.data.len);
            q->response_topic[rt->value.data.len] = '\0';
        }
    }
    if (cd && cd->value.data.len > 0) {
        q->corr = malloc((size_t)cd->value.data.len);
        if (q->corr) {
            memcpy(q->corr, cd->value.data.data, (size_t)cd->value.data.len);
            q->corr_len = (size_t)cd->value.data.len;
        }
    }
    MQTTAsync_freeMessage(&msg);
    MQTTAsync_free(topic);
    sync_mqtt *m = owner_lock(l);
    if (!m) {
        sync_mqtt_msg_free(q);
        return 1;
    }
    if (m->tail)
        m->tail->next = q;
    else
        m->head = q;
    m->tail = q;
    signal_locked(m);
    pthread_mutex_unlock(&m->mu);
    return 1;
}

static void on_connection_lost(void *ctx, char *cause)
{
    struct link *l = ctx;
    sync_mqtt *m = owner_lock(l);
    if (!m)
        return;
    if (l == m->cur && m->state != ST_IDLE) { /* IDLE: already handled (on_pub_fail_qos) */
        snprintf(m->last_error, sizeof m->last_error, "connection lost%s%s", cause ? ": " : "",
                 cause ? cause : "");
        m->state = ST_IDLE;
        m->need_subscribe = 0;
        m->lost = 1;
        signal_locked(m);
    }
    pthread_mutex_unlock(&m->mu);
}

/* One SUBACK (or a failed SUBSCRIBE) of l's connection. Any thread; m->mu not held. */
static void on_sub_done(struct link *l, int ok, const char *why)
{
    sync_mqtt *m = owner_lock(l);
    if (!m)
        return;
    int counted = 0;
    if (l == m->cur && m->state == ST_SUBSCRIBING) {
        counted = 1;
        if (!ok)
            snprintf(m->last_error, sizeof m->last_error, "subscribe refused: %s", why);
        if (--m->subs_left <= 0) {
            m->state = ST_READY;
            m->connects++;
            signal_locked(m);
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (counted && !ok)
        sync_warn("mqtt: a subscription was refused by the broker (%s); check the ACL", why);
}

static void on_sub_ok(void *ctx, MQTTAsync_successData5 *r)
{
    int ok = !r || r->reasonCode < 0x80;
    on_sub_done(ctx, ok, ok ? "" : MQTTReasonCode_toString(r->reasonCode));
}

static void on_sub_fail(void *ctx, MQTTAsync_failureData5 *r)
{
    on_sub_done(ctx, 0,
                r && r->message      ? r->message
                : r && r->reasonCode ? MQTTReasonCode_toString(r->reasonCode)
                : r                  ? MQTTAsync_strerror(r->code)
                                     : "unknown");
}

static void on_connect_ok(void *ctx, MQTTAsync_successData5 *r)
{
    struct link *l = ctx;
    sync_mqtt *m = owner_lock(l);
    if (!m)
        return;
    if (l == m->cur) {
        m->session_present = r ? r->alt.connect.sessionPresent : 0;
        m->subs_left = m->nsubs;
        m->state = m->nsubs ? ST_SUBSCRIBING : ST_READY;
        /* The owner subscribes (from sync_mqtt_poll): no Paho calls on Paho's threads. */
        m->need_subscribe = m->nsubs > 0;
        if (!m->nsubs)
            m->connects++;
        signal_locked(m);
    }
    pthread_mutex_unlock(&m->mu);
}

static void on_connect_fail(void *ctx, MQTTAsync_failureData5 *r)
{
    struct link *l = ctx;
    sync_mqtt *m = owner_lock(l);
    if (!m)
        return;
    if (l == m->cur) {
        if (r && r->reasonCode)
            snprintf(m->last_error, sizeof m->last_error, "connect refused: %s",
                     MQTTReasonCode_toString(r->reasonCode));
        else
            snprintf(m->last_error, sizeof m->last_error, "connect failed: %s",
                     r && r->message ? r->message : MQTTAsync_strerror(r ? r->code : -1));
        m->state = ST_IDLE;
        m->lost = 1;
        signal_locked(m);
    }
    pthread_mutex_unlock(&m->mu);
}

/* A publish of l completed (PUBACK, or failed). m->mu held. */
static void pub_done_locked(sync_mqtt *m, struct link *l)
{
    l->pending--;
    if (m->blocked && l == m->cur) {
        m->blocked = 0;
        signal_locked(m);
    }
}

static void on_pub_ok(void *ctx, MQTTAsync_successData5 *r)
{
    (void)r;
    struct link *l = ctx;
    sync_mqtt *m = owner_lock(l);
    if (!m)
        return;
    m->delivered++;
    pub_done_locked(m, l);
    pthread_mutex_unlock(&m->mu);
}

/* Failure of a QoS 0 publish: Paho keeps no state for it. */
static void on_pub_fail(void *ctx, MQTTAsync_failureData5 *r)
{
    (void)r;
    struct link *l = ctx;
    sync_mqtt *m = owner_lock(l);
    if (!m)
        return;
    pub_done_locked(m, l);
    pthread_mutex_unlock(&m->mu);
}

/* Failure of a QoS 1/2 publish. Paho 1.3.12 reports one with token 0 and code
 * MQTTASYNC_FAILURE (its SOCKET_ERROR) only from MQTTAsync_processCommand, when the first write
 * of the PUBLISH failed: then the client's outboundMsgs holds that message with the topic and
 * payload Paho frees right after this callback returns (see the top of this file). Other
 * failures carry the message's token: a PUBACK with an error reason code, or
 * MQTTASYNC_OPERATION_INCOMPLETE from MQTTAsync_destroy. */
static void on_pub_fail_qos(void *ctx, MQTTAsync_failureData5 *r)
{
    struct link *l = ctx;
    int poisoned = !r || r->token == 0 || r->code == MQTTASYNC_FAILURE;
    if (poisoned) {
        /* publish() refuses it from now on. */
        pthread_mutex_lock(&links_mu);
        l->poisoned = 1;
        pthread_mutex_unlock(&links_mu);
    }
    sync_mqtt *m = owner_lock(l);
    if (!m)
        return;
    if (poisoned && l == m->cur && m->state != ST_IDLE) {
        /* Paho closes the connection too (connection_lost follows): reconnect with a new client
         * without depending on that. */
        snprintf(m->last_error, sizeof m->last_error, "connection lost: a write failed");
        m->state = ST_IDLE;
        m->need_subscribe = 0;
        m->lost = 1;
        signal_locked(m);
    }
    pub_done_locked(m, l);
    pthread_mutex_unlock(&m->mu);
}

static void on_disconnected(void *ctx, MQTTAsync_successData5 *r)
{
    (void)r;
    struct link *l = ctx;
    sync_mqtt *m = owner_lock(l);
    if (!m)
        return;
    m->disconnect_done = 1;
    signal_locked(m);
    pthread_mutex_unlock(&m->mu);
}

static void on_disconnect_fail(void *ctx, MQTTAsync_failureData5 *r)
{
    (void)r;
    on_disconnected(ctx, NULL);
}

static int ssl_error(const char *str, size_t len, void *u)
{
    (void)u;
    sync_debug("mqtt: tls: %.*s", (int)len, str);
    return 0;
}

/* ---- owner thread ---- */

static char *dup_or_null(const char *s, int *fail)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *fail = 1;
    return d;
}

/* Creates a Paho client for m (not connected). On error returns NULL with the reason in why. */
/* Paho's trace level defaults to "minimum": it then formats a line for every packet sent or
 * received (a vsnprintf under a process-wide mutex) into an in-memory ring that nothing reads
 * unless tracing is on. That was about a sixth of synccloud's instructions (callgrind: 655 M of
 * 4.1 G for 20,000 changes). Only errors are kept, unless the user asked for Paho's trace with
 * MQTT_C_CLIENT_TRACE. A process-wide library setting, made once. */
static pthread_once_t paho_trace_once = PTHREAD_ONCE_INIT;

static void paho_trace_quiet(void)
{
    const char *t = getenv("MQTT_C_CLIENT_TRACE");
    if (!t || !*t)
        MQTTAsync_setTraceLevel(MQTTASYNC_TRACE_ERROR);
}

static struct link *link_new(sync_mqtt *m, char *why, size_t whylen)
{
    pthread_once(&paho_trace_once, paho_trace_quiet);
    struct link *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    l->m = m;
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer5;
    co.sendWhileDisconnected = 0;
    int rc = MQTTAsync_createWithOptions(&l->client, m->uri, m->client_id,
                                         MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
    if (rc != MQTTASYNC_SUCCESS) {
        snprintf(why, whylen, "%s", MQTTAsync_strerror(rc));
        free(l);
        return NULL;
    }
    rc = MQTTAsync_setCallbacks(l->client, l, on_connection_lost, on_message, NULL);
    if (rc != MQTTASYNC_SUCCESS) {
        snprintf(why, whylen, "%s", MQTTAsync_strerror(rc));
        MQTTAsync_destroy(&l->client);
        free(l);
        return NULL;
    }
    return l;
}

/* Leaves a poisoned client to Paho for good (owner thread, no lock held): see the top. */
static void link_abandon(sync_mqtt *m, struct link *l)
{
    pthread_mutex_lock(&m->mu);
    long dropped = l->pending;
    pthread_mutex_unlock(&m->mu);
    l->next = m->leaked;
    m->leaked = l;
    m->nleaked++;
    sync_warn("mqtt: a publish failed while being written and Paho lost track of its buffers "
              "(paho.mqtt.c #1621); its client is left unused (%d so far) and %ld unacknowledged "
              "publish%s dropped",
              m->nleaked, dropped, dropped == 1 ? " is" : "es are");
}

int sync_mqtt_new(const sync_mqtt_opts *o, sync_mqtt **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!o->uri || !o->client_id)
        return sync_seterr(err, errlen, SYNC_ERR_INVAL, "mqtt: broker URI and client id needed");
    sync_mqtt *m = calloc(1, sizeof *m);
    if (!m)
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    int fail = 0;
    m->uri = dup_or_null(o->uri, &fail);
    m->client_id = dup_or_null(o->client_id, &fail);
    m->username = dup_or_null(o->username, &fail);
    m->password = dup_or_null(o->password, &fail);
    m->cafile = dup_or_null(o->cafile, &fail);
    m->certfile = dup_or_null(o->certfile, &fail);
    m->keyfile = dup_or_null(o->keyfile, &fail);
    m->will_topic = dup_or_null(o->will_topic, &fail);
    if (o->will_topic && o->will_len) {
        m->will_payload = malloc(o->will_len);
        if (m->will_payload)
            memcpy(m->will_payload, o->will_payload, o->will_len);
        else
            fail = 1;
        m->will_len = o->will_len;
    }
    m->will_retain = o->will_retain;
    m->tls_insecure = o->tls_insecure;
    m->clean_start = o->clean_start;
    m->session_expiry = o->session_expiry;
    m->keepalive = o->keepalive;
    m->max_inflight = o->max_inflight;
    m->retry_min = o->retry_min > 0 ? o->retry_min : 1;
    m->retry_max = o->retry_max >= m->retry_min ? o->retry_max : m->retry_min;
    m->rng = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)m;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&m->mu, NULL);
    if (fail) {
        sync_mqtt_free(m);
        return sync_seterr(err, errlen, SYNC_ERR_NOMEM, "out of memory");
    }
    char why[256];
    if (!(m->cur = link_new(m, why, sizeof why))) {
        sync_mqtt_free(m);
        return sync_seterr(err, errlen, SYNC_ERR_MQTT, "mqtt: cannot create client for %s: %s",
                           o->uri, why);
    }
    *out = m;
    return SYNC_OK;
}

/* The answer to a SUBSCRIBE or UNSUBSCRIBE made while connected (not part of a connect's
 * subscribe pass): only a refusal is worth a line. Any thread. */
static void on_live_ok(void *ctx, MQTTAsync_successData5 *r)
{
    (void)ctx;
    if (r && r->reasonCode >= 0x80)
        sync_warn("mqtt: the broker refused a subscription change (%s); check the ACL",
                  MQTTReasonCode_toString(r->reasonCode));
}

static void on_live_fail(void *ctx, MQTTAsync_failureData5 *r)
{
    (void)ctx;
    sync_warn("mqtt: a subscription change failed (%s); it is made again on the next connect",
              r && r->message ? r->message : MQTTAsync_strerror(r ? r->code : -1));
}

/* 1 when the connection in use has had its subscribe pass sent (new subscriptions must then be
 * sent on their own). Owner thread. */
static int subscribed_now(sync_mqtt *m)
{
    pthread_mutex_lock(&m->mu);
    int now = m->started && m->cur &&
              (m->state == ST_READY || (m->state == ST_SUBSCRIBING && !m->need_subscribe));
    pthread_mutex_unlock(&m->mu);
    return now;
}

int sync_mqtt_subscribe(sync_mqtt *m, const char *filter, int qos)
{
    for (int i = 0; i < m->nsubs; i++)
        if (strcmp(m->subs[i].filter, filter) == 0)
            return SYNC_OK;
    char *f = strdup(filter);
    if (!f)
        return SYNC_ERR_NOMEM;
    /* The list is read on Paho's thread at connect (its length): changed under mu. */
    pthread_mutex_lock(&m->mu);
    struct sub *ns = realloc(m->subs, (size_t)(m->nsubs + 1) * sizeof *ns);
    if (ns) {
        m->subs = ns;
        ns[m->nsubs].filter = f;
        ns[m->nsubs].qos = qos;
        m->nsubs++;
    }
    pthread_mutex_unlock(&m->mu);
    if (!ns) {
        free(f);
        return SYNC_ERR_NOMEM;
    }
    if (subscribed_now(m)) {
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.onSuccess5 = on_live_ok;
        ro.onFailure5 = on_live_fail;
        int rc = MQTTAsync_subscribe(m->cur->client, filter, qos, &ro);
        if (rc != MQTTASYNC_SUCCESS)
            sync_warn("mqtt: subscribing to %s failed (%s); it is made on the next connect",
                      filter, MQTTAsync_strerror(rc));
    }
    return SYNC_OK;
}

int sync_mqtt_unsubscribe(sync_mqtt *m, const char *filter)
{
    int i = 0;
    while (i < m->nsubs && strcmp(m->subs[i].filter, filter) != 0)
        i++;
    if (i == m->nsubs)
        return SYNC_OK;
    char *f = m->subs[i].filter;
    pthread_mutex_lock(&m->mu);
    m->subs[i] = m->subs[m->nsubs - 1];
    m->nsubs--;
    pthread_mutex_unlock(&m->mu);
    if (subscribed_now(m)) {
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.onSuccess5 = on_live_ok;
        ro.onFailure5 = on_live_fail;
        int rc = MQTTAsync_unsubscribe(m->cur->client, f, &ro);
        if (rc != MQTTASYNC_SUCCESS)
            sync_warn("mqtt: unsubscribing from %s failed (%s)", f, MQTTAsync_strerror(rc));
    }
    free(f);
    return SYNC_OK;
}

/* Issues one connect attempt. Called with m->mu NOT held. */
static int connect_now(sync_mqtt *m)
{
    struct link *old = m->cur;
    if (!old || link_poisoned(old)) {
        char why[128];
        struct link *n = link_new(m, why, sizeof why);
        if (!n) {
            pthread_mutex_lock(&m->mu);
            snprintf(m->last_error, sizeof m->last_error, "cannot create client: %s", why);
            m->state = ST_IDLE;
            m->lost = 1;
            pthread_mutex_unlock(&m->mu);
            return SYNC_ERR_MQTT;
        }
        pthread_mutex_lock(&m->mu);
        m->cur = n;
        m->blocked = 0;
        pthread_mutex_unlock(&m->mu);
        if (old)
            link_abandon(m, old);
    }
    struct link *l = m->cur;
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer5;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
    MQTTProperties props = MQTTProperties_initializer;
    co.keepAliveInterval = m->keepalive;
    co.cleanstart = m->clean_start;
    co.maxInflight = m->max_inflight;
    co.connectTimeout = 10;
    co.automaticReconnect = 0;
    co.username = m->username;
    co.password = m->password;
    co.onSuccess5 = on_connect_ok;
    co.onFailure5 = on_connect_fail;
    co.context = l;
    if (strncmp(m->uri, "ssl://", 6) == 0 || strncmp(m->uri, "mqtts://", 8) == 0) {
        ssl.trustStore = m->cafile;
        ssl.keyStore = m->certfile;
        ssl.privateKey = m->keyfile;
        ssl.enableServerCertAuth = 1;
        ssl.verify = !m->tls_insecure;
        ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
        ssl.ssl_error_cb = ssl_error;
        co.ssl = &ssl;
    }
    if (m->will_topic) {
        will.topicName = m->will_topic;
        will.message = NULL;
        will.payload.data = m->will_payload;
        will.payload.len = (int)m->will_len;
        will.retained = m->will_retain;
        will.qos = 1;
        co.will = &will;
    }
    if (m->session_expiry) {
        MQTTProperty p;
        memset(&p, 0, sizeof p);
        p.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
        p.value.integer4 = m->session_expiry;
        MQTTProperties_add(&props, &p);
        co.connectProperties = &props;
    }
    pthread_mutex_lock(&m->mu);
    m->state = ST_CONNECTING;
    m->lost = 0;
    pthread_mutex_unlock(&m->mu);
    int rc = MQTTAsync_connect(l->client, &co);
    MQTTProperties_free(&props);
    if (rc != MQTTASYNC_SUCCESS) {
        pthread_mutex_lock(&m->mu);
        snprintf(m->last_error, sizeof m->last_error, "connect: %s", MQTTAsync_strerror(rc));
        m->state = ST_IDLE;
        m->lost = 1;
        pthread_mutex_unlock(&m->mu);
        return SYNC_ERR_MQTT;
    }
    return SYNC_OK;
}

int sync_mqtt_start(sync_mqtt *m, char *err, size_t errlen)
{
    if (m->started)
        return sync_seterr(err, errlen, SYNC_ERR_STATE, "mqtt: already started");
    m->started = 1;
    m->next_attempt = 0;
    sync_info("mqtt: connecting to %s as %s", m->uri, m->client_id);
    connect_now(m);
    return SYNC_OK;
}

/* Seconds to wait after `failures` consecutive failures: doubling from retry_min up to
 * retry_max, then a random 50..100% of that so a fleet spreads out. */
static double backoff(sync_mqtt *m)
{
    double d = m->retry_min;
    for (int i = 1; i < m->failures && d < m->retry_max; i++)
        d *= 2;
    if (d > m->retry_max)
        d = m->retry_max;
    m->rng = m->rng * 1103515245u + 12345u;
    return d * (0.5 + 0.5 * (double)((m->rng >> 8) & 0xFFFF) / 65535.0);
}

/* Paho before 1.3.16 leaves Nagle's algorithm on for its connections and offers no way to
 * change that; with it, a small publish that follows another one waits for the broker's
 * delayed ACK (40 ms on Linux), which measured as a 40-50 ms floor on every batch->ack and
 * delta round trip. So after each connect, every connected TCP socket of this process gets
 * TCP_NODELAY: Paho's new one, and others (libpq's) that have it already. */
static void nodelay_sockets(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        int fd = atoi(e->d_name);
        struct stat st;
        if (fd == dirfd(d) || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
            continue;
        int type = 0;
        socklen_t len = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
            continue;
        struct sockaddr_storage peer;
        len = sizeof peer;
        if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0 ||
            (peer.ss_family != AF_INET && peer.ss_family != AF_INET6))
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    closedir(d);
}

/* Owner-side bookkeeping after wake-ups: logs state changes once, schedules reconnects. */
static void drive(sync_mqtt *m)
{
    pthread_mutex_lock(&m->mu);
    int lost = m->lost;
    conn_state st = m->state;
    unsigned long connects = m->connects;
    int subscribe = m->need_subscribe && st == ST_SUBSCRIBING;
    char why[256];
    snprintf(why, sizeof why, "%s", m->last_error);
    m->lost = 0;
    m->need_subscribe = 0;
    pthread_mutex_unlock(&m->mu);
    double now = mono_now();
    if (subscribe || connects != m->seen_connects)
        nodelay_sockets(); /* a new connection */
    for (int i = 0; subscribe && i < m->nsubs; i++) {
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.onSuccess5 = on_sub_ok;
        ro.onFailure5 = on_sub_fail;
        ro.context = m->cur;
        int rc = MQTTAsync_subscribe(m->cur->client, m->subs[i].filter, m->subs[i].qos, &ro);
        if (rc != MQTTASYNC_SUCCESS)
            on_sub_done(m->cur, 0, MQTTAsync_strerror(rc));
    }
    if (lost) {
        m->failures++;
        double wait = backoff(m);
        m->next_attempt = now + wait;
        if (!m->logged_down) {
            sync_warn("mqtt: %s (%s); retrying with backoff up to %d s", why, m->uri, m->retry_max);
            m->logged_down = 1;
        } else {
            sync_debug("mqtt: %s; next attempt in %.1f s", why, wait);
        }
    }
    if (connects != m->seen_connects) {
        m->seen_connects = connects;
        if (m->logged_down || m->failures)
            sync_notice("mqtt: connected to %s (after %d failed attempt%s)", m->uri, m->failures,
                        m->failures == 1 ? "" : "s");
        else
            sync_info("mqtt: connected to %s", m->uri);
        m->failures = 0;
        m->logged_down = 0;
    }
    if (m->started && st == ST_IDLE && !lost && now >= m->next_attempt)
        connect_now(m);
}

sync_mqtt_msg *sync_mqtt_poll(sync_mqtt *m, int timeout_ms)
{
    pthread_mutex_lock(&m->mu);
    if (!m->woken && !m->head && timeout_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!m->woken && !m->head) {
            if (pthread_cond_timedwait(&m->cv, &m->mu, &ts) != 0)
                break;
        }
    }
    sync_mqtt_msg *list = m->head;
    m->head = m->tail = NULL;
    m->woken = 0;
    pthread_mutex_unlock(&m->mu);
    drive(m);
    return list;
}

void sync_mqtt_msg_free(sync_mqtt_msg *msg)
{
    if (!msg)
        return;
    free(msg->response_topic);
    free(msg->corr);
    free(msg->topic);
    free(msg->payload);
    free(msg);
}

void sync_mqtt_wake(sync_mqtt *m)
{
    pthread_mutex_lock(&m->mu);
    signal_locked(m);
    pthread_mutex_unlock(&m->mu);
}

static int publish(sync_mqtt *m, const char *topic, const void *payload, size_t len, int qos,
                   int retain, const char *response_topic, const void *corr, size_t corr_len)
{
    struct link *l = m->cur; /* only the owner thread changes it */
    if (!l || link_poisoned(l))
        return SYNC_ERR_STATE; /* a poisoned client's connection is going down anyway */
    pthread_mutex_lock(&m->mu);
    int ready = m->state == ST_READY || m->state == ST_SUBSCRIBING;
    /* Never more QoS 1 publishes handed to Paho than its window holds. Paho queues the extra
     * ones and sends them only when its send thread next wakes up, which a PUBACK does not
     * cause: up to a second later (measured with MQTT_C_CLIENT_TRACE on 1.3.12). Refused here,
     * the caller retries after our own PUBACK wake-up, and each publish goes out at once. */
    int full = ready && qos > 0 && l->pending >= m->max_inflight;
    if (full)
        m->blocked = 1;
    else if (ready)
        l->pending++;
    pthread_mutex_unlock(&m->mu);
    if (full)
        return SYNC_ERR_BUSY;
    if (!ready)
        return SYNC_ERR_STATE;
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    msg.payload = (void *)(uintptr_t)payload;
    msg.payloadlen = (int)len;
    msg.qos = qos;
    msg.retained = retain;
    if (response_topic) {
        MQTTProperty p;
        memset(&p, 0, sizeof p);
        p.identifier = MQTTPROPERTY_CODE_RESPONSE_TOPIC;
        p.value.data.data = (char *)(uintptr_t)response_topic;
        p.value.data.len = (int)strlen(response_topic);
        MQTTProperties_add(&msg.properties, &p);
    }
    if (corr && corr_len) {
        MQTTProperty p;
        memset(&p, 0, sizeof p);
        p.identifier = MQTTPROPERTY_CODE_CORRELATION_DATA;
        p.value.data.data = (char *)(uintptr_t)corr;
        p.value.data.len = (int)corr_len;
        MQTTProperties_add(&msg.properties, &p);
    }
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess5 = on_pub_ok;
    ro.onFailure5 = qos > 0 ? on_pub_fail_qos : on_pub_fail;
    ro.context = l;
    int rc = MQTTAsync_sendMessage(l->client, topic, &msg, &ro);
    MQTTProperties_free(&msg.properties); /* Paho copied them */
    if (rc != MQTTASYNC_SUCCESS) {
        int busy = rc == MQTTASYNC_MAX_MESSAGES_INFLIGHT || rc == MQTTASYNC_MAX_BUFFERED_MESSAGES ||
                   rc == MQTTASYNC_NO_MORE_MSGIDS;
        pthread_mutex_lock(&m->mu);
        l->pending--;
        if (busy)
            m->blocked = 1;
        pthread_mutex_unlock(&m->mu);
        if (busy)
            return SYNC_ERR_BUSY;
        if (rc == MQTTASYNC_DISCONNECTED)
            return SYNC_ERR_STATE;
        sync_warn("mqtt: publish to %s refused: %s", topic, MQTTAsync_strerror(rc));
        return SYNC_ERR_MQTT;
    }
    return SYNC_OK;
}

int sync_mqtt_publish(sync_mqtt *m, const char *topic, const void *payload, size_t len, int qos,
                      int retain)
{
    return publish(m, topic, payload, len, qos, retain, NULL, NULL, 0);
}

int sync_mqtt_publish_rr(sync_mqtt *m, const char *topic, const void *payload, size_t len, int qos,
                         const char *response_topic, const void *corr, size_t corr_len)
{
    return publish(m, topic, payload, len, qos, 0, response_topic, corr, corr_len);
}

int sync_mqtt_session_present(sync_mqtt *m)
{
    pthread_mutex_lock(&m->mu);
    int r = m->session_present;
    pthread_mutex_unlock(&m->mu);
    return r;
}

int sync_mqtt_connected(sync_mqtt *m)
{
    pthread_mutex_lock(&m->mu);
    int r = m->state == ST_READY;
    pthread_mutex_unlock(&m->mu);
    return r;
}

unsigned long sync_mqtt_connects(sync_mqtt *m)
{
    pthread_mutex_lock(&m->mu);
    unsigned long r = m->connects;
    pthread_mutex_unlock(&m->mu);
    return r;
}

unsigned long sync_mqtt_delivered(sync_mqtt *m)
{
    pthread_mutex_lock(&m->mu);
    unsigned long r = m->delivered;
    pthread_mutex_unlock(&m->mu);
    return r;
}

long sync_mqtt_pending(sync_mqtt *m)
{
    pthread_mutex_lock(&m->mu);
    long r = m->cur ? m->cur->pending : 0;
    pthread_mutex_unlock(&m->mu);
    return r;
}

void sync_mqtt_free(sync_mqtt *m)
{
    if (!m)
        return;
    struct link *l = m->cur;
    if (l) {
        if (!link_poisoned(l) && MQTTAsync_isConnected(l->client)) {
            MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer5;
            d.timeout = 500;
            d.onSuccess5 = on_disconnected;
            d.onFailure5 = on_disconnect_fail;
            d.context = l;
            if (MQTTAsync_disconnect(l->client, &d) == MQTTASYNC_SUCCESS) {
                /* Wait (outside any callback) for the DISCONNECT to be sent, at most 1 s. */
                double until = mono_now() + 1.0;
                pthread_mutex_lock(&m->mu);
                while (!m->disconnect_done && mono_now() < until) {
                    struct timespec ts;
                    clock_gettime(CLOCK_MONOTONIC, &ts);
                    ts.tv_nsec += 50000000L;
                    if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                    }
                    pthread_cond_timedwait(&m->cv, &m->mu, &ts);
                }
                pthread_mutex_unlock(&m->mu);
            }
        }
    }
    /* From here on no callback reaches m: clear every client's owner, then wait for a callback
     * that got m before (callbacks do all their work on m under m->mu). */
    pthread_mutex_lock(&links_mu);
    if (l)
        l->m = NULL;
    for (struct link *k = m->leaked; k; k = k->next)
        k->m = NULL;
    pthread_mutex_unlock(&links_mu);
    pthread_mutex_lock(&m->mu);
    pthread_mutex_unlock(&m->mu);
    /* Poisoned clients, m->leaked and perhaps l, stay in Paho's client list, reachable, with
     * their link (see the top). */
    if (l && !link_poisoned(l)) {
        MQTTAsync_destroy(&l->client);
        free(l);
    }
    sync_mqtt_msg *q = m->head;
    while (q) {
        sync_mqtt_msg *n = q->next;
        sync_mqtt_msg_free(q);
        q = n;
    }
    for (int i = 0; i < m->nsubs; i++)
        free(m->subs[i].filter);
    free(m->subs);
    free(m->uri);
    free(m->client_id);
    free(m->username);
    if (m->password) {
        /* Do not leave the broker password lying in freed heap memory. */
        volatile char *p = m->password;
        while (*p)
            *p++ = 0;
    }
    free(m->password);
    free(m->cafile);
    free(m->certfile);
    free(m->keyfile);
    free(m->will_topic);
    free(m->will_payload);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
}
