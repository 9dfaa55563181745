/* mqtt_stress.c - hammers shared/src/mqtt.c (Paho MQTTAsync) with QoS 1 publishes while the
 * broker dies under it, to catch memory errors in the reconnect paths under ASan (Paho 1.3.12
 * reuses the freed topic of a publish whose write failed, paho.mqtt.c #1621; see mqtt.c).
 *
 * Timing-driven; run by hand, built with -DSYNC_SANITIZE=ON (tests/stress/CMakeLists.txt):
 *
 *   mqtt_stress fake [-n CYCLES] [-s 0|1|r] [-a ACKPCT] [-i INFLIGHT] [-c 0|1] [-x] [-v]
 *       An in-process fake MQTT 5 broker (plain TCP on 127.0.0.1) accepts the client,
 *       answers CONNECT/SUBSCRIBE/PUBLISH/PINGREQ, and after a random number of PUBLISHes
 *       resets the connection (SO_LINGER 0: RST, like a broker killed with -9) while the client
 *       is still writing. The next CONNACK says sessionPresent = -s (r: random). ACKPCT is the
 *       share of PUBLISHes acked at once (default 50; the rest are acked when the client
 *       pauses). It checks every PUBLISH it receives: a topic that is not ours (garbage resent
 *       from freed memory) is an error. -c is the client's clean start, -x adds a second, idle
 *       client in the process. With -a 100 -i 1000 nearly every reset hits the Paho bug.
 *
 *   mqtt_stress real -C mosquitto.conf -u URI [-A cafile] [-U user] [-P passfile] [-n KILLS]
 *       Starts mosquitto -c CONF itself, publishes as fast as the window allows, and kills -9
 *       the broker 0.3..2.5 s after each (re)connect, restarting it 0.2..1.7 s later, KILLS times.
 *
 * Exit status 0 when the run finished without a detected error (ASan aborts on its own).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sync/err.h"
#include "sync/log.h"
#include "sync/mqtt.h"

#define TOPIC_PREFIX "sync/demo/rows/stress/"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned rnd_state = 12345;
static pthread_mutex_t rnd_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned rnd(unsigned n)
{
    pthread_mutex_lock(&rnd_mu);
    rnd_state = rnd_state * 1103515245u + 12345u;
    unsigned r = (rnd_state >> 8) % (n ? n : 1);
    pthread_mutex_unlock(&rnd_mu);
    return r;
}

/* ---- fake broker ---- */

static struct {
    int lfd;
    int port;
    int cycles;    /* connections to reset */
    int sess_mode; /* 0, 1, or -1 random */
    int ack_pct;
    int verbose;
    atomic_int done; /* all cycles done */
    atomic_int errors;
    atomic_int resets;
    atomic_long pubs;
    atomic_long dups;
    int sessions; /* connects seen */
} F;

/* Reads n bytes. may_time_out: give up (errno EAGAIN) if nothing at all came in time. */
static int read_full(int fd, void *b, size_t n, int may_time_out)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)b + got, n - got);
        if (r < 0 && (errno == EINTR ||
                      ((errno == EAGAIN || errno == EWOULDBLOCK) && (got || !may_time_out))))
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *b, size_t n)
{
    size_t put = 0;
    while (put < n) {
        ssize_t r = send(fd, (const char *)b + put, n - put, MSG_NOSIGNAL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        put += (size_t)r;
    }
    return 0;
}

/* Reads one packet: returns its first byte, body in *body (malloc'd), length in *len. */
static int read_packet(int fd, uint8_t **body, size_t *len)
{
    uint8_t h;
    if (read_full(fd, &h, 1, 1))
        return -1;
    size_t rl = 0;
    int shift = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t b;
        if (read_full(fd, &b, 1, 0))
            return -1;
        rl |= (size_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80))
            break;
    }
    uint8_t *p = malloc(rl ? rl : 1);
    if (!p || (rl && read_full(fd, p, rl, 0))) {
        free(p);
        return -1;
    }
    *body = p;
    *len = rl;
    return h;
}

static void reset_conn(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* msgids whose PUBACK is held back until the connection is quiet. */
static uint16_t held[65536];

/* Serves one connection; resets it after `limit` PUBLISHes or `life` seconds after CONNECT. */
static void serve(int fd, int limit, double life)
{
    int npub = 0, nheld = 0;
    double until = 1e18, t0 = now_s();
    struct timeval tv = {0, 50000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (;;) {
        uint8_t *b = NULL;
        size_t len = 0;
        int h = read_packet(fd, &b, &len);
        if (h < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && now_s() >= until) {
            /* Quiet (window full) for too long: kill the connection anyway. */
            F.resets++;
            if (F.verbose)
                fprintf(stderr, "fake: reset after %d publishes (timer)\n", npub);
            reset_conn(fd);
            return;
        }
        if (h < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* Quiet: ack what was held back, as a slow broker would. */
            for (int i = 0; i < nheld; i++) {
                uint8_t pa[] = {0x40, 2, (uint8_t)(held[i] >> 8), (uint8_t)held[i]};
                write_full(fd, pa, sizeof pa);
            }
            nheld = 0;
            continue;
        }
        if (h < 0) {
            close(fd);
            return;
        }
        int type = h >> 4;
        if (type == 1) { /* CONNECT */
            int sp = F.sess_mode < 0 ? (int)rnd(2) : F.sess_mode;
            if (F.sessions++ == 0)
                sp = 0;
            uint8_t ca[] = {0x20, 3, (uint8_t)sp, 0, 0};
            until = now_s() + life;
            if (F.verbose)
                fprintf(stderr,
                        "fake: CONNECT (%.3f s after accept) -> CONNACK sessionPresent %d\n",
                        now_s() - t0, sp);
            write_full(fd, ca, sizeof ca);
        } else if (type == 8) { /* SUBSCRIBE */
            uint8_t sa[] = {0x90, 4, b[0], b[1], 0, 1};
            write_full(fd, sa, sizeof sa);
        } else if (type == 3) { /* PUBLISH */
            int qos = (h >> 1) & 3, dup = (h >> 3) & 1;
            size_t tl = len >= 2 ? ((size_t)b[0] << 8 | b[1]) : 0;
            int ok = len >= 2 + tl && tl > strlen(TOPIC_PREFIX) &&
                     memcmp(b + 2, TOPIC_PREFIX, strlen(TOPIC_PREFIX)) == 0;
            for (size_t i = 0; ok && i < tl; i++)
                if (b[2 + i] < 0x20 || b[2 + i] > 0x7e)
                    ok = 0;
            if (!ok) {
                fprintf(stderr, "fake: ERROR malformed PUBLISH topic (len %zu, dup %d): %.*s\n", tl,
                        dup, (int)(tl < 64 ? tl : 64), (const char *)b + 2);
                atomic_fetch_add(&F.errors, 1);
                free(b);
                close(fd);
                return;
            }
            F.pubs++;
            if (dup)
                F.dups++;
            if (qos > 0 && len >= 4 + tl) {
                uint16_t id = (uint16_t)(b[2 + tl] << 8 | b[3 + tl]);
                if ((int)rnd(100) < F.ack_pct || nheld == 65536) {
                    uint8_t pa[] = {0x40, 2, b[2 + tl], b[3 + tl]};
                    write_full(fd, pa, sizeof pa);
                } else {
                    held[nheld++] = id;
                }
            }
            if (++npub >= limit || now_s() >= until) {
                free(b);
                F.resets++;
                if (F.verbose)
                    fprintf(stderr, "fake: reset after %d publishes\n", npub);
                reset_conn(fd);
                return;
            }
        } else if (type == 12) { /* PINGREQ */
            uint8_t pr[] = {0xd0, 0};
            write_full(fd, pr, sizeof pr);
        } else if (type == 14) { /* DISCONNECT */
            free(b);
            close(fd);
            return;
        }
        free(b);
    }
}

static void *fake_broker(void *arg)
{
    (void)arg;
    while (F.resets < F.cycles) {
        int fd = accept(F.lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        serve(fd, 20 + (int)rnd(3000), 0.2 + rnd(1500) / 1000.0);
    }
    /* Keep serving (acking everything) until the client is done. */
    F.done = 1;
    F.ack_pct = 100;
    for (;;) {
        int fd = accept(F.lfd, NULL, NULL);
        if (fd < 0)
            break;
        serve(fd, 1 << 30, 1e18);
    }
    return NULL;
}

static int fake_listen(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 16))
        return -1;
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    F.port = ntohs(a.sin_port);
    F.lfd = fd;
    return 0;
}

/* ---- client side ---- */

struct pubber {
    sync_mqtt *m;
    unsigned long seq;
    long published, busy;
    char payload[4096];
};

/* Publishes until the window is full or we are disconnected. */
static void pump(struct pubber *p)
{
    for (int i = 0; i < 500; i++) {
        char topic[128];
        snprintf(topic, sizeof topic, TOPIC_PREFIX "%lu", p->seq);
        size_t len = 64 + rnd(sizeof p->payload - 64);
        int rc = sync_mqtt_publish(p->m, topic, p->payload, len, 1, (int)(p->seq % 3 == 0));
        if (rc == SYNC_OK) {
            p->seq++;
            p->published++;
        } else {
            if (rc == SYNC_ERR_BUSY)
                p->busy++;
            return;
        }
    }
}

static int usage(void)
{
    fprintf(stderr, "usage: mqtt_stress fake [-n CYCLES] [-s 0|1|r] [-a ACKPCT] [-i INFLIGHT] "
                    "[-c CLEANSTART] [-x] [-v]\n"
                    "       mqtt_stress real -C CONF -u URI [-A CAFILE] [-U USER] [-P PASSFILE] "
                    "[-n KILLS] [-i INFLIGHT] [-c CLEANSTART]\n");
    return 2;
}

static pid_t start_broker(const char *conf, const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        /* An ASan abort of this process must not leave the broker holding the port. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("mosquitto", "mosquitto", "-c", conf, (char *)NULL);
        _exit(127);
    }
    return pid;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    int fake = strcmp(argv[1], "fake") == 0;
    if (!fake && strcmp(argv[1], "real") != 0)
        return usage();
    int n = 30, inflight = 64, clean = 0, extra = 0;
    const char *conf = NULL, *uri = NULL, *cafile = NULL, *user = NULL, *passfile = NULL;
    F.sess_mode = -1;
    F.ack_pct = 50;
    sync_log_level lvl = SYNC_LOG_WARNING;
    int opt;
    optind = 2;
    while ((opt = getopt(argc, argv, "n:s:a:i:c:C:u:A:U:P:xv")) != -1) {
        switch (opt) {
        case 'n':
            n = atoi(optarg);
            break;
        case 's':
            F.sess_mode = optarg[0] == 'r' ? -1 : atoi(optarg);
            break;
        case 'a':
            F.ack_pct = atoi(optarg);
            break;
        case 'i':
            inflight = atoi(optarg);
            break;
        case 'c':
            clean = atoi(optarg);
            break;
        case 'C':
            conf = optarg;
            break;
        case 'u':
            uri = optarg;
            break;
        case 'A':
            cafile = optarg;
            break;
        case 'U':
            user = optarg;
            break;
        case 'P':
            passfile = optarg;
            break;
        case 'x':
            extra = 1;
            break;
        case 'v':
            F.verbose = 1;
            lvl = SYNC_LOG_DEBUG;
            break;
        default:
            return usage();
        }
    }
    signal(SIGPIPE, SIG_IGN);
    rnd_state = (unsigned)time(NULL) ^ (unsigned)getpid();
    sync_log_setup("mqtt_stress", lvl, 0);

    char uribuf[64], password[256] = "";
    pthread_t bt;
    pid_t broker = 0;
    char brokerlog[1024] = "";
    if (fake) {
        if (fake_listen()) {
            perror("listen");
            return 1;
        }
        F.cycles = n;
        snprintf(uribuf, sizeof uribuf, "tcp://127.0.0.1:%d", F.port);
        uri = uribuf;
        pthread_create(&bt, NULL, fake_broker, NULL);
    } else {
        if (!conf || !uri)
            return usage();
        if (passfile) {
            FILE *pf = fopen(passfile, "r");
            if (!pf || !fgets(password, sizeof password, pf)) {
                perror(passfile);
                return 1;
            }
            fclose(pf);
            password[strcspn(password, "\r\n")] = '\0';
        }
        snprintf(brokerlog, sizeof brokerlog, "%s.log", conf);
        broker = start_broker(conf, brokerlog);
        usleep(300000);
    }

    sync_mqtt_opts o;
    sync_mqtt_opts_default(&o);
    o.uri = uri;
    o.client_id = "stress-client";
    o.username = user;
    o.password = password[0] ? password : NULL;
    o.cafile = cafile;
    o.clean_start = clean;
    o.session_expiry = 3600;
    o.keepalive = 30;
    o.max_inflight = inflight;
    o.retry_min = 1;
    o.retry_max = 2;
    sync_mqtt *m;
    char err[256];
    if (sync_mqtt_new(&o, &m, err, sizeof err) != SYNC_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    sync_mqtt_subscribe(m, "sync/demo/dev/+/up", 1);
    sync_mqtt_start(m, err, sizeof err);
    sync_mqtt *idle = NULL;
    if (extra) {
        o.client_id = "stress-idle";
        if (sync_mqtt_new(&o, &idle, err, sizeof err) != SYNC_OK) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
    }

    struct pubber p = {.m = m};
    for (size_t i = 0; i < sizeof p.payload; i++)
        p.payload[i] = (char)('a' + i % 26);
    int kills = 0;
    double next_kill = now_s() + 0.5 + rnd(2500) / 1000.0, restart_at = 0;
    double deadline = now_s() + 30.0 + 8.0 * n; /* generous: it stops when done */
    unsigned long last_connects = 0;
    /* Publish as fast as the window allows until the last reset/kill; then publish one last
     * round on the final connection and wait for all of it to be acknowledged. */
    int finished = 0, last_round = 0;
    unsigned long connects_at_start = 0;
    while (now_s() < deadline) {
        sync_mqtt_msg *l = sync_mqtt_poll(m, 5);
        while (l) {
            sync_mqtt_msg *nx = l->next;
            sync_mqtt_msg_free(l);
            l = nx;
        }
        if (sync_mqtt_connects(m) != last_connects) {
            last_connects = sync_mqtt_connects(m);
            if (F.verbose || !fake)
                fprintf(stderr,
                        "stress: connected (#%lu, session present %d), %ld published, "
                        "%ld pending\n",
                        last_connects, sync_mqtt_session_present(m), p.published,
                        sync_mqtt_pending(m));
        }
        if (!fake) {
            double t = now_s();
            /* Kill while the client is connected and publishing (0.3..2.5 s after it
             * connected), or 10 s after a restart it did not reconnect to. */
            if (sync_mqtt_connects(m) != connects_at_start) {
                connects_at_start = sync_mqtt_connects(m);
                next_kill = t + 0.3 + rnd(2200) / 1000.0;
            }
            if (broker && kills < n && t >= next_kill) {
                if (waitpid(broker, NULL, WNOHANG) == broker) {
                    fprintf(stderr, "stress: mosquitto exited by itself (port in use?), see %s\n",
                            brokerlog);
                    broker = 0;
                    break;
                }
                kill(broker, SIGKILL);
                waitpid(broker, NULL, 0);
                broker = 0;
                kills++;
                fprintf(stderr, "stress: kill -9 broker (%d/%d)\n", kills, n);
                restart_at = t + 0.2 + rnd(1500) / 1000.0;
            } else if (!broker && t >= restart_at) {
                broker = start_broker(conf, brokerlog);
                next_kill = t + 10.0;
            }
        }
        if (!finished)
            finished = fake ? F.done : kills >= n && broker;
        if (!sync_mqtt_connected(m))
            continue;
        if (!finished) {
            pump(&p);
        } else if (!last_round) {
            /* A connection made after the last fault: it must deliver everything. */
            if (sync_mqtt_pending(m) == 0) {
                last_round = 1;
                pump(&p);
            }
        } else if (sync_mqtt_pending(m) == 0) {
            last_round = 2;
            break;
        }
    }
    int rc = 0;
    if (fake) {
        fprintf(stderr,
                "stress: fake broker: %d resets, %ld publishes received (%ld dup), %d errors; "
                "client: %ld published, %lu delivered, %ld pending, %lu connects\n",
                (int)F.resets, (long)F.pubs, (long)F.dups, (int)F.errors, p.published,
                sync_mqtt_delivered(m), sync_mqtt_pending(m), sync_mqtt_connects(m));
        if (F.errors || F.resets < F.cycles)
            rc = 1;
    } else {
        fprintf(stderr,
                "stress: %d kills; client: %ld published, %lu delivered, %ld pending, "
                "%lu connects\n",
                kills, p.published, sync_mqtt_delivered(m), sync_mqtt_pending(m),
                sync_mqtt_connects(m));
        if (kills < n)
            rc = 1;
    }
    if (last_round != 2) {
        fprintf(stderr, "stress: did not settle (pending %ld)\n", sync_mqtt_pending(m));
        rc = 1;
    }
    sync_mqtt_free(m);
    sync_mqtt_free(idle);
    if (broker) {
        kill(broker, SIGKILL);
        waitpid(broker, NULL, 0);
    }
    if (fake) {
        shutdown(F.lfd, SHUT_RDWR);
        close(F.lfd);
        pthread_join(bt, NULL);
    }
    return rc;
}
