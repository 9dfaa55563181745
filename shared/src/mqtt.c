/* mqtt.c - one MQTT 5 connection over Paho MQTTAsync, queued for a single owner thread
 * (see sync/mqtt.h).
 *
 * Threads: Paho calls on_* below from its own threads; they only copy data and update counters
 * under m->mu. Everything that may block or that creates/destroys Paho objects runs on the
 * owner's thread (sync_mqtt_poll, sync_mqtt_free). Reconnecting is done by the owner too, from
 * sync_mqtt_poll, with exponential backoff and jitter, so no retry storm follows a broker
 * restart when many devices lose it at once.
 */
#include "sync/mqtt.h"

#include <MQTTAsync.h>
#include <pthread.h>
#include <stdlib.h>
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

struct sync_mqtt {
    MQTTAsync client;
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
    int blocked;         /* a publish was refused for a full window: wake the owner on PUBACK */
    unsigned long delivered;
    long pending;
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

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *msg)
{
    sync_mqtt *m = ctx;
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
    pthread_mutex_lock(&m->mu);
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
    sync_mqtt *m = ctx;
    pthread_mutex_lock(&m->mu);
    snprintf(m->last_error, sizeof m->last_error, "connection lost%s%s", cause ? ": " : "",
             cause ? cause : "");
    m->state = ST_IDLE;
    m->lost = 1;
    signal_locked(m);
    pthread_mutex_unlock(&m->mu);
}

static void on_sub_done(sync_mqtt *m, int ok, const char *why)
{
    pthread_mutex_lock(&m->mu);
    if (!ok)
        snprintf(m->last_error, sizeof m->last_error, "subscribe refused: %s", why);
    if (m->state == ST_SUBSCRIBING && --m->subs_left <= 0) {
        m->state = ST_READY;
        m->connects++;
        signal_locked(m);
    }
    pthread_mutex_unlock(&m->mu);
    if (!ok)
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
                r && r->message ? r->message
                : r             ? MQTTReasonCode_toString(r->reasonCode)
                                : "unknown");
}

static void on_connect_ok(void *ctx, MQTTAsync_successData5 *r)
{
    sync_mqtt *m = ctx;
    pthread_mutex_lock(&m->mu);
    m->session_present = r ? r->alt.connect.sessionPresent : 0;
    m->subs_left = m->nsubs;
    m->state = m->nsubs ? ST_SUBSCRIBING : ST_READY;
    if (!m->nsubs) {
        m->connects++;
        signal_locked(m);
    }
    pthread_mutex_unlock(&m->mu);
    /* Subscribing is asynchronous and allowed here; we never wait inside a callback. */
    for (int i = 0; i < m->nsubs; i++) {
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.onSuccess5 = on_sub_ok;
        ro.onFailure5 = on_sub_fail;
        ro.context = m;
        int rc = MQTTAsync_subscribe(m->client, m->subs[i].filter, m->subs[i].qos, &ro);
        if (rc != MQTTASYNC_SUCCESS)
            on_sub_done(m, 0, MQTTAsync_strerror(rc));
    }
}

static void on_connect_fail(void *ctx, MQTTAsync_failureData5 *r)
{
    sync_mqtt *m = ctx;
    pthread_mutex_lock(&m->mu);
    if (r && r->reasonCode)
        snprintf(m->last_error, sizeof m->last_error, "connect refused: %s",
                 MQTTReasonCode_toString(r->reasonCode));
    else
        snprintf(m->last_error, sizeof m->last_error, "connect failed: %s",
                 r && r->message ? r->message : MQTTAsync_strerror(r ? r->code : -1));
    m->state = ST_IDLE;
    m->lost = 1;
    signal_locked(m);
    pthread_mutex_unlock(&m->mu);
}

static void on_pub_ok(void *ctx, MQTTAsync_successData5 *r)
{
    (void)r;
    sync_mqtt *m = ctx;
    pthread_mutex_lock(&m->mu);
    m->delivered++;
    m->pending--;
    if (m->blocked) {
        m->blocked = 0;
        signal_locked(m);
    }
    pthread_mutex_unlock(&m->mu);
}

static void on_pub_fail(void *ctx, MQTTAsync_failureData5 *r)
{
    (void)r;
    sync_mqtt *m = ctx;
    pthread_mutex_lock(&m->mu);
    m->pending--;
    if (m->blocked) {
        m->blocked = 0;
        signal_locked(m);
    }
    pthread_mutex_unlock(&m->mu);
}

static void on_disconnected(void *ctx, MQTTAsync_successData5 *r)
{
    (void)r;
    sync_mqtt *m = ctx;
    pthread_mutex_lock(&m->mu);
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
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer5;
    co.sendWhileDisconnected = 0;
    int rc = MQTTAsync_createWithOptions(&m->client, m->uri, m->client_id,
                                         MQTTCLIENT_PERSISTENCE_NONE, NULL, &co);
    if (rc != MQTTASYNC_SUCCESS) {
        m->client = NULL;
        sync_mqtt_free(m);
        return sync_seterr(err, errlen, SYNC_ERR_MQTT, "mqtt: cannot create client for %s: %s",
                           o->uri, MQTTAsync_strerror(rc));
    }
    rc = MQTTAsync_setCallbacks(m->client, m, on_connection_lost, on_message, NULL);
    if (rc != MQTTASYNC_SUCCESS) {
        sync_mqtt_free(m);
        return sync_seterr(err, errlen, SYNC_ERR_MQTT, "mqtt: %s", MQTTAsync_strerror(rc));
    }
    *out = m;
    return SYNC_OK;
}

int sync_mqtt_subscribe(sync_mqtt *m, const char *filter, int qos)
{
    if (m->started)
        return SYNC_ERR_STATE;
    struct sub *ns = realloc(m->subs, (size_t)(m->nsubs + 1) * sizeof *ns);
    if (!ns)
        return SYNC_ERR_NOMEM;
    m->subs = ns;
    ns[m->nsubs].filter = strdup(filter);
    if (!ns[m->nsubs].filter)
        return SYNC_ERR_NOMEM;
    ns[m->nsubs].qos = qos;
    m->nsubs++;
    return SYNC_OK;
}

/* Issues one connect attempt. Called with m->mu NOT held. */
static int connect_now(sync_mqtt *m)
{
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
    co.context = m;
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
    int rc = MQTTAsync_connect(m->client, &co);
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

/* Owner-side bookkeeping after wake-ups: logs state changes once, schedules reconnects. */
static void drive(sync_mqtt *m)
{
    pthread_mutex_lock(&m->mu);
    int lost = m->lost;
    conn_state st = m->state;
    unsigned long connects = m->connects;
    char why[256];
    snprintf(why, sizeof why, "%s", m->last_error);
    m->lost = 0;
    pthread_mutex_unlock(&m->mu);
    double now = mono_now();
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
    pthread_mutex_lock(&m->mu);
    int ready = m->state == ST_READY || m->state == ST_SUBSCRIBING;
    if (ready)
        m->pending++;
    pthread_mutex_unlock(&m->mu);
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
    ro.onFailure5 = on_pub_fail;
    ro.context = m;
    int rc = MQTTAsync_sendMessage(m->client, topic, &msg, &ro);
    MQTTProperties_free(&msg.properties); /* Paho copied them */
    if (rc != MQTTASYNC_SUCCESS) {
        int busy = rc == MQTTASYNC_MAX_MESSAGES_INFLIGHT || rc == MQTTASYNC_MAX_BUFFERED_MESSAGES ||
                   rc == MQTTASYNC_NO_MORE_MSGIDS;
        pthread_mutex_lock(&m->mu);
        m->pending--;
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
    long r = m->pending;
    pthread_mutex_unlock(&m->mu);
    return r;
}

void sync_mqtt_free(sync_mqtt *m)
{
    if (!m)
        return;
    if (m->client) {
        if (MQTTAsync_isConnected(m->client)) {
            MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer5;
            d.timeout = 500;
            d.onSuccess5 = on_disconnected;
            d.onFailure5 = on_disconnect_fail;
            d.context = m;
            if (MQTTAsync_disconnect(m->client, &d) == MQTTASYNC_SUCCESS) {
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
        MQTTAsync_destroy(&m->client);
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
