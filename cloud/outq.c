/* outq.c - the publish queue (see outq.h). */
#include "outq.h"

#include <stdlib.h>
#include <string.h>

#include "sync/err.h"

void cloud_outq_init(cloud_outq *q)
{
    q->head = q->tail = NULL;
    q->n = 0;
}

static int add(cloud_outq *q, const char *topic, const void *p1, size_t n1, const void *p2,
               size_t n2, int qos, int retain, const void *corr, size_t corr_len)
{
    size_t tl = strlen(topic) + 1;
    cloud_msg *m = malloc(sizeof *m + tl + n1 + n2 + corr_len);
    if (!m)
        return SYNC_ERR_NOMEM;
    m->next = NULL;
    m->topic = (char *)(m + 1);
    memcpy(m->topic, topic, tl);
    m->payload = (uint8_t *)m->topic + tl;
    if (n1)
        memcpy(m->payload, p1, n1);
    if (n2)
        memcpy(m->payload + n1, p2, n2);
    m->len = n1 + n2;
    m->qos = qos;
    m->retain = retain;
    m->corr = NULL;
    m->corr_len = 0;
    if (corr && corr_len) {
        m->corr = m->payload + m->len;
        memcpy(m->corr, corr, corr_len);
        m->corr_len = corr_len;
    }
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    q->n++;
    return SYNC_OK;
}

int cloud_outq_add(cloud_outq *q, const char *topic, const void *p1, size_t n1, const void *p2,
                   size_t n2, int qos, int retain)
{
    return add(q, topic, p1, n1, p2, n2, qos, retain, NULL, 0);
}

int cloud_outq_add_response(cloud_outq *q, const char *topic, const void *p1, size_t n1,
                            const void *p2, size_t n2, const void *corr, size_t corr_len)
{
    return add(q, topic, p1, n1, p2, n2, 1, 0, corr, corr_len);
}

void cloud_outq_move(cloud_outq *dst, cloud_outq *src)
{
    if (!src->head)
        return;
    if (dst->tail)
        dst->tail->next = src->head;
    else
        dst->head = src->head;
    dst->tail = src->tail;
    dst->n += src->n;
    cloud_outq_init(src);
}

cloud_msg *cloud_outq_pop(cloud_outq *q)
{
    cloud_msg *m = q->head;
    if (m) {
        q->head = m->next;
        if (!q->head)
            q->tail = NULL;
        q->n--;
        m->next = NULL;
    }
    return m;
}

void cloud_outq_clear(cloud_outq *q)
{
    cloud_msg *m;
    while ((m = cloud_outq_pop(q)))
        free(m);
}
