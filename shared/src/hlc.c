/* hlc.c - hybrid logical clock (see sync/hlc.h). */
#include "sync/hlc.h"

#include <time.h>

uint64_t sync_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t sync_hlc_tick(sync_hlc *c, uint64_t wall_ms)
{
    uint64_t candidate = (wall_ms & 0xFFFFFFFFFFFFull) << 16;
    /* Wall time ahead of everything seen: take it. Otherwise count up from the last one, which
     * keeps order when the wall clock stalls or steps back. */
    c->last = candidate > c->last ? candidate : c->last + 1;
    return c->last;
}

void sync_hlc_observe(sync_hlc *c, uint64_t remote)
{
    if (remote > c->last)
        c->last = remote;
}
