/* broker.h - asking the broker to read its files again.
 *
 * Mosquitto re-reads its password file, ACL file and (for a listener with
 * require_certificate true) its CRL on SIGHUP. syncctl sends it to the pid it is given, or to
 * the pid in the broker's pid file, after checking that the process is a mosquitto: SIGHUP
 * ends most other programs, and a stale pid file may name anything.
 */
#ifndef CTL_BROKER_H
#define CTL_BROKER_H

#include <stddef.h>

/* Sends SIGHUP to the broker: pid when it is > 0, else the pid read from pid_file. Returns
 * SYNC_OK (*sent_to = the pid), SYNC_ERR_STATE when neither is configured (nothing was sent;
 * the caller tells the user to reload the broker), or SYNC_ERR_IO/SYNC_ERR_INVAL with a
 * message (no such process, not a mosquitto, no permission). */
int ctl_broker_reload(long pid, const char *pid_file, long *sent_to, char *err, size_t errlen);

#endif
