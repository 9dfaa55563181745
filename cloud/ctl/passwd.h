/* passwd.h - device passwords and the Mosquitto password file.
 *
 * Mosquitto 2 reads lines `USER:$7$ITERATIONS$SALT$HASH`: PBKDF2-HMAC-SHA512 of the password
 * with a 12-byte random salt, 101 iterations by default, the 64-byte result and the salt in
 * standard base64 with '=' padding (what mosquitto_passwd writes; checked against
 * eclipse/mosquitto src/password_mosq.h and apps/mosquitto_passwd of 2.0). The password file
 * may hold other users (the cloud's, viewers): their lines are never touched.
 */
#ifndef CTL_PASSWD_H
#define CTL_PASSWD_H

#include <stddef.h>
#include <sys/types.h>

#include "pki.h"
#include "registry.h"

#define CTL_PW_SALT_BYTES 12 /* Mosquitto's salt length */
/* Mosquitto's default. More would only slow every broker login: the passwords are 192 random
 * bits, which no iteration count makes easier or harder to guess. */
#define CTL_PW_ITERATIONS 101
#define CTL_PW_RANDOM_BYTES 24 /* a generated password: 24 random bytes, 32 characters */
#define CTL_PW_MAX 64          /* room for a generated password and its NUL */

/* Writes a new random password into out (n >= CTL_PW_MAX): CTL_PW_RANDOM_BYTES from rng in
 * URL-safe base64 without padding (A-Z a-z 0-9 - _), safe on any command line or config file.
 * Returns SYNC_OK or SYNC_ERR_IO. */
int ctl_passwd_generate(ctl_rng *rng, char *out, size_t n);

/* Writes the password-file hash of password ("$7$101$SALT$HASH", without user and newline)
 * into out (n >= 160). Returns SYNC_OK or an error with a message (never the password). */
int ctl_passwd_hash(ctl_rng *rng, const char *password, char *out, size_t n, char *err,
                    size_t errlen);

/* Sets *found to 1 if the password file at path has a line for user. A missing file has no
 * users. Returns SYNC_OK or SYNC_ERR_IO. */
int ctl_passwd_has_user(const char *path, const char *user, int *found, char *err, size_t errlen);

/* Rewrites the password file from the registry (crash-safe, files.h): every line of a user that
 * is no registry device stays as it is where it is; a device has its line only while it is
 * active and has a password (in place of its old line, or appended). A file that does not
 * exist is created only when some device needs a line: mode 0600, or 0640 with group when
 * group is not (gid_t)-1 (the broker's group, so that it can read it). */
int ctl_passwd_write(const char *path, ctl_registry *r, gid_t group, char *err, size_t errlen);

#endif
