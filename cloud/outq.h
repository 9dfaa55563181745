/* outq.h - messages waiting to be published after the transaction that produced them commits.
 * Each message is one allocation (header, topic and payload together). */
#ifndef CLOUD_OUTQ_H
#define CLOUD_OUTQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct cloud_msg {
    struct cloud_msg *next;
    char *topic;      /* inside the same allocation */
    uint8_t *payload; /* inside the same allocation */
    size_t len;
    int qos, retain;
    uint8_t *corr; /* MQTT 5 Correlation Data of a response (inside the allocation), or NULL */
    size_t corr_len;
} cloud_msg;

typedef struct cloud_outq {
    cloud_msg *head, *tail;
    size_t n;
} cloud_outq;

void cloud_outq_init(cloud_outq *q);
/* Queues a message whose payload is p1 followed by p2 (either may be empty). Returns SYNC_OK or
 * SYNC_ERR_NOMEM. */
int cloud_outq_add(cloud_outq *q, const char *topic, const void *p1, size_t n1, const void *p2,
                   size_t n2, int qos, int retain);
/* Like cloud_outq_add, for a response that carries Correlation Data. */
int cloud_outq_add_response(cloud_outq *q, const char *topic, const void *p1, size_t n1,
                            const void *p2, size_t n2, const void *corr, size_t corr_len);
/* Moves every message of src to the end of dst. */
void cloud_outq_move(cloud_outq *dst, cloud_outq *src);
/* Removes and returns the first message (the caller frees it with free()), or NULL. */
cloud_msg *cloud_outq_pop(cloud_outq *q);
void cloud_outq_clear(cloud_outq *q);

#endif
