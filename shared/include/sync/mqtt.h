/* mqtt.h - one MQTT 5 connection over Paho MQTTAsync, shaped for a single-threaded owner.
 *
 * Paho runs its callbacks on its own threads. This module turns them into a queue: arriving
 * messages are copied and queued, connection changes are counted, and the owner's thread
 * picks everything up with sync_mqtt_poll(). The owner never runs code on Paho's threads.
 *
 * Subscriptions given with sync_mqtt_subscribe() are made again after every (re)connect.
 * Reconnection is automatic, with exponential backoff between retry_min and retry_max.
 * Paho's own persistence is off: the daemons' SQLite outbox is the source of truth.
 *
 * A QoS 1 publish not acknowledged (PUBACK) when the connection is lost is normally resent after
 * the reconnect, but may be dropped: when its write failed, Paho 1.3.12 loses track of it and
 * the module replaces the Paho client (see mqtt.c). Callers must tolerate that, as the broker may
 * lose QoS 1 messages anyway.
 */
#ifndef SYNC_MQTT_H
#define SYNC_MQTT_H

#include <stddef.h>
#include <stdint.h>

typedef struct sync_mqtt sync_mqtt;

typedef struct sync_mqtt_opts {
    const char *uri; /* "ssl://host:port" (TLS) or "tcp://host:port" */
    const char *client_id;
    const char *username;     /* may be NULL */
    const char *password;     /* may be NULL */
    const char *cafile;       /* CA bundle to verify the broker (TLS) */
    const char *certfile;     /* client certificate (mutual TLS), may be NULL */
    const char *keyfile;      /* client key, may be NULL */
    int tls_insecure;         /* 1: skip the broker hostname check (never in production) */
    int clean_start;          /* 0: keep the broker session (queued QoS 1 messages) */
    uint32_t session_expiry;  /* seconds the broker keeps the session after a disconnect */
    int keepalive;            /* seconds */
    int max_inflight;         /* QoS 1 publishes outstanding at once */
    int retry_min, retry_max; /* reconnect backoff bounds, seconds */
    const char *will_topic;   /* Last Will (NULL for none): published by the broker on */
    const void *will_payload; /* unclean loss of the connection */
    size_t will_len;
    int will_retain;
} sync_mqtt_opts;

/* Fills o with defaults: keepalive 30, max_inflight 64, retry 1..30 s, clean_start 1. */
void sync_mqtt_opts_default(sync_mqtt_opts *o);

typedef struct sync_mqtt_msg {
    struct sync_mqtt_msg *next;
    char *topic;      /* NUL-terminated, owned by the message */
    uint8_t *payload; /* owned by the message (may be NULL when len == 0) */
    size_t len;
    int retained;
    char *response_topic; /* MQTT 5 Response Topic, NUL-terminated, owned; NULL if absent */
    uint8_t *corr;        /* MQTT 5 Correlation Data, owned; NULL if absent */
    size_t corr_len;
} sync_mqtt_msg;

/* Creates the client (not yet connected). Strings in o are copied. On error *out is NULL. */
int sync_mqtt_new(const sync_mqtt_opts *o, sync_mqtt **out, char *err, size_t errlen);

/* Destroys the client: disconnects (the broker does not publish the will), frees everything,
 * including messages still queued. */
void sync_mqtt_free(sync_mqtt *m);

/* Adds a subscription made on every connect (a filter already subscribed is left as it is).
 * After sync_mqtt_start it is also made at once when connected. SYNC_OK or SYNC_ERR_NOMEM; a
 * refusal by the broker is logged. */
int sync_mqtt_subscribe(sync_mqtt *m, const char *filter, int qos);
/* Removes a subscription: no longer made on connect, and unsubscribed at once when connected.
 * A filter not subscribed is ignored. Owner thread, like every call but sync_mqtt_wake. */
int sync_mqtt_unsubscribe(sync_mqtt *m, const char *filter);

/* Begins connecting in the background; reconnects forever after that. */
int sync_mqtt_start(sync_mqtt *m, char *err, size_t errlen);

/* Publishes asynchronously. Returns SYNC_OK once Paho has taken the message, SYNC_ERR_STATE
 * when not connected, SYNC_ERR_BUSY when max_inflight publishes await their PUBACK (try again
 * after the next sync_mqtt_poll, which returns as soon as one completes), SYNC_ERR_MQTT on
 * other failures (a message that can never be sent). */
int sync_mqtt_publish(sync_mqtt *m, const char *topic, const void *payload, size_t len, int qos,
                      int retain);

/* Publishes an MQTT 5 request or response: like sync_mqtt_publish, plus a Response Topic
 * (may be NULL) and Correlation Data (may be NULL) property. */
int sync_mqtt_publish_rr(sync_mqtt *m, const char *topic, const void *payload, size_t len, int qos,
                         const char *response_topic, const void *corr, size_t corr_len);

/* Waits up to timeout_ms for something to happen (a message, a connection change or a
 * sync_mqtt_wake call) and returns every queued message as a list in arrival order (NULL if
 * none); the caller owns the list and frees each message with sync_mqtt_msg_free. */
sync_mqtt_msg *sync_mqtt_poll(sync_mqtt *m, int timeout_ms);
void sync_mqtt_msg_free(sync_mqtt_msg *msg);

/* Wakes a thread blocked in sync_mqtt_poll (safe from any thread and from signal-free code). */
void sync_mqtt_wake(sync_mqtt *m);

/* 1 while connected (and subscriptions requested). */
int sync_mqtt_connected(sync_mqtt *m);
/* The broker's session-present flag from the last successful connect: 0 after a connect with
 * clean start off means the broker had no session for us (first contact, or it expired or was
 * lost), so anything it would have queued for us is gone. */
int sync_mqtt_session_present(sync_mqtt *m);
/* Number of successful connects so far: a change tells the owner it reconnected. */
unsigned long sync_mqtt_connects(sync_mqtt *m);
/* Messages that completed delivery (PUBACK received) since creation. */
unsigned long sync_mqtt_delivered(sync_mqtt *m);
/* Publishes still waiting for PUBACK (not counting those dropped with a replaced client). */
long sync_mqtt_pending(sync_mqtt *m);

#endif
