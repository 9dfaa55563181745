/* link.h - syncctl's connection to the broker as the administrator.
 *
 * One MQTT 5 client (shared/include/sync/mqtt.h) with the admin identity of syncctl's
 * configuration (--broker, --admin-user, --admin-password-file, --cafile, --admin-cert, ...).
 * It can subscribe to retained topics (device states, consumer statistics) and send one
 * request to synccloud on sync/TENANT/admin/req, whose answer it recognises by its response
 * topic and correlation data (docs/protocol.md "Administration"). The caller drives it from
 * one thread with ctl_link_poll().
 */
#ifndef CTL_LINK_H
#define CTL_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "ctl.h"
#include "sync/mqtt.h"

typedef struct ctl_link ctl_link;

/* Checks the configuration (tenant, broker), reads the admin password and starts connecting
 * in the background, subscribed (QoS 1) to the answer topic and to the nfilters filters.
 * On success *out (freed with ctl_link_free) is set; on error *out is NULL and err says why
 * (SYNC_ERR_INVAL: a configuration problem the user must fix). */
int ctl_link_open(const ctl_ctx *ctx, const char *const *filters, size_t nfilters, ctl_link **out,
                  char *err, size_t errlen);

/* Sets the request sent to synccloud once the link is connected and subscribed (len bytes of
 * CBOR, copied). Call at most once. */
int ctl_link_request(ctl_link *l, const void *req, size_t len);

/* Waits up to timeout_ms, sends the request when it can, and returns the messages that came
 * on the filters (a list the caller frees with sync_mqtt_msg_free, NULL if none). The answer
 * to the request is kept aside (ctl_link_answer). */
sync_mqtt_msg *ctl_link_poll(ctl_link *l, int timeout_ms);

/* Seconds on a monotonic clock when the link was first connected and subscribed, or 0 before
 * that. Retained messages of the filters arrive right after it. */
double ctl_link_ready_at(const ctl_link *l);

/* 1 once the request was handed to the broker. */
int ctl_link_sent(const ctl_link *l);

/* The answer's bytes (owned by the link), or NULL until it came. */
const uint8_t *ctl_link_answer(const ctl_link *l, size_t *len);

/* Writes why nothing came (by the time of the call) into err: the broker was not reached
 * (nor the subscriptions granted), or synccloud did not answer. */
void ctl_link_why(const ctl_link *l, char *err, size_t errlen);

/* Disconnects and frees everything, including an answer. NULL is a no-op. */
void ctl_link_free(ctl_link *l);

/* Seconds on a monotonic clock. */
double ctl_mono(void);

#endif
