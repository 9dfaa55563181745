/* hlc.h - hybrid logical clock: 48 bits of wall-clock milliseconds and a 16-bit counter in one
 * uint64, so timestamps order like wall time when clocks agree, never go backwards, and stay
 * causal (a clock that has seen a timestamp only issues larger ones) when they do not.
 */
#ifndef SYNC_HLC_H
#define SYNC_HLC_H

#include <stdint.h>

typedef struct sync_hlc {
    uint64_t last; /* the largest timestamp issued or observed */
} sync_hlc;

#define SYNC_HLC_MS(h) ((h) >> 16)

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
uint64_t sync_wall_ms(void);

/* Issues a timestamp for a local event that happened at wall time wall_ms. */
uint64_t sync_hlc_tick(sync_hlc *c, uint64_t wall_ms);

/* Records a timestamp received from elsewhere so later ticks are larger. */
void sync_hlc_observe(sync_hlc *c, uint64_t remote);

#endif
