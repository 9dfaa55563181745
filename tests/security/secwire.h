/* secwire.h - what the security tests share: broker identities, mosquitto_pub/mosquitto_sub
 * runs as one of them, a watcher that records every message on some topics, and the decoding
 * of what the cloud answers (CBOR acks with the project's decoder, JSON events).
 *
 * A watcher is a mosquitto_sub started through the harness (so th_cleanup() stops it) that
 * prints each message as one line "TOPIC HEX-PAYLOAD" into its log. Messages are numbered from
 * 0 in the order the watcher received them; the broker delivers the messages of one publisher
 * to one subscriber in the order they were published, which is what lets a test say "the ack
 * of this batch would have come before this event" without waiting for time to pass.
 *
 * Every helper fails the test (TH_CHECK) when it cannot do its job; the ones that return a
 * status report only the outcome the test is checking (could it connect, did it receive).
 */
#ifndef SYNC_TEST_SECWIRE_H
#define SYNC_TEST_SECWIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sync/cbor.h"

/* How a client logs in to the broker on 127.0.0.1. */
typedef struct sw_id {
    const char *label;  /* how messages name it ("dev-a", "cloud") */
    int port;           /* broker port */
    const char *cafile; /* CA of the broker's certificate */
    const char *user;   /* password login: user name, or NULL */
    const char *pass;   /* its password */
    const char *cert;   /* certificate login: client certificate, or NULL */
    const char *key;    /* its private key */
} sw_id;

/* One received message. */
typedef struct sw_msg {
    char topic[256]; /* NUL-terminated */
    uint8_t *data;   /* payload (owned by the watcher), NUL-terminated for JSON convenience */
    size_t len;      /* payload bytes, without that NUL */
} sw_msg;

/* A decoded ack. */
typedef struct sw_ack {
    uint64_t base_seq, last_seq;
    int status;        /* 0 processed, 1 refused whole */
    char reason[1024]; /* status 1: the reason, NUL-terminated */
    size_t nresults;   /* results in the ack */
    int first_code;    /* code of the first result, or -1 without results */
} sw_ack;

typedef struct sw_watch sw_watch;

/* Sets where the mosquitto clients' own output goes (appended); registered as a log. */
void sw_set_client_log(const char *path);

/* The mosquitto client options that log in as id (quoted for the shell, owned by the harness). */
const char *sw_conn(const sw_id *id);

/* Writes n bytes to DIR/name (DIR = th_tmpdir()) and returns the path (owned by the harness). */
const char *sw_write(const char *name, const void *p, size_t n);

/* Publishes the content of file (NULL: an empty payload) on topic with QoS 1 as id, with
 * client id cid (NULL: mosquitto_pub's own). extra: more mosquitto_pub options or "". Returns
 * mosquitto_pub's exit status; its output is appended to the client log and, if out is not
 * NULL, returned in *out (caller frees). */
int sw_pub(const sw_id *id, const char *cid, const char *topic, const char *file, const char *extra,
           char **out);

/* Publishes the text msg (retained if retain) on topic with QoS 1 as id; fails the test if
 * mosquitto_pub fails. */
void sw_pub_text(const sw_id *id, const char *topic, const char *msg, int retain);

/* Connects as id and subscribes to topic, then leaves (mosquitto_sub -E). Returns 0 when the
 * broker let it in, else mosquitto_sub's exit status. */
int sw_connect(const sw_id *id, const char *topic);

/* Subscribes as id to topics[0..n) in one SUBSCRIBE and returns the first count messages
 * received (within timeout_s seconds), one line "TOPIC HEX-PAYLOAD" each (caller frees), or
 * NULL if none came. The broker sends the retained messages of the topics in their order, so a
 * readable retained marker subscribed last ends what the earlier topics brought. */
char *sw_take(const sw_id *id, const char *const *topics, int n, int count, int timeout_s);

/* Waits up to timeout_ms until id can read a retained message on topic (e.g. synccloud's
 * head, published once it is connected and subscribed); fails the test otherwise. */
void sw_wait_retained(const sw_id *id, const char *topic, int timeout_ms);

/* Starts a watcher as id (client id "watch-LABEL") on topics[0..n) plus probe, a topic id may
 * both publish and read, and returns once a probe message published there has come back (so
 * the subscriptions are in place). The watcher is owned by the caller (sw_watch_stop). */
sw_watch *sw_watch_start(const sw_id *id, const char *label, const char *const *topics, int n,
                         const char *probe);

/* Messages received so far (reads the log again). */
int sw_watch_count(sw_watch *w);

/* Message i (0 <= i < sw_watch_count()), owned by the watcher. */
const sw_msg *sw_watch_get(sw_watch *w, int i);

/* Waits up to timeout_ms for a message at index >= from for which match(msg, ctx) is nonzero
 * and returns its index, or -1. */
int sw_watch_wait(sw_watch *w, int from, int (*match)(const sw_msg *m, void *ctx), void *ctx,
                  int timeout_ms);

/* Index of the first message in [from, to) on topic (exact) or -1. to < 0: up to the end. */
int sw_watch_find(sw_watch *w, int from, int to, const char *topic);

/* Index of the first message in [from, to) whose topic starts with prefix, or -1. */
int sw_watch_find_prefix(sw_watch *w, int from, int to, const char *prefix);

/* The watcher's mosquitto_sub pid (alive while it is connected). */
pid_t sw_watch_pid(const sw_watch *w);

/* Stops the watcher's mosquitto_sub and frees w. */
void sw_watch_stop(sw_watch *w);

/* Decodes m as an ack with sync_ack_decode. Returns 0, or -1 if it is not a valid ack. */
int sw_ack_parse(const sw_msg *m, sw_ack *a);

/* The string member key of the JSON object in m, unescaped (\uXXXX outside ASCII as '?'),
 * into out. Returns 0, or -1 if m has no such string member. */
int sw_json_str(const sw_msg *m, const char *key, char *out, size_t n);

/* The unsigned integer member key of the JSON object in m. Returns 0, or -1 if there is none. */
int sw_json_u64(const sw_msg *m, const char *key, uint64_t *v);

/* Appends a batch of one insert into items(id, name) with the project's encoders: device dev,
 * schema version ver, seq seq, hlc 1000 + seq. */
void sw_batch_item(sync_cbuf *b, const char *dev, uint32_t ver, uint64_t seq, int64_t id,
                   const char *name);

#endif
