/* paho_idle.c - a bare Paho MQTTAsync client over TLS that connects, subscribes to one topic
 * and waits: the benchmark's yardstick for syncedge's memory (what any TLS MQTT client of this
 * machine costs, most of it OpenSSL).
 *
 * Usage: paho_idle URI USER PASSWORD_FILE CAFILE TOPIC
 * Prints "connected" on stdout once subscribed, then sleeps until SIGTERM or SIGINT.
 */
#include <MQTTAsync.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static volatile sig_atomic_t subscribed;

static void on_stop(int sig)
{
    (void)sig;
    stop = 1;
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
    (void)ctx;
    (void)topic_len;
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

static void on_sub(void *ctx, MQTTAsync_successData5 *r)
{
    (void)ctx;
    (void)r;
    subscribed = 1;
}

static void on_fail(void *ctx, MQTTAsync_failureData5 *r)
{
    (void)ctx;
    fprintf(stderr, "paho_idle: failed: %s\n", r && r->message ? r->message : "?");
    stop = 2;
}

static void on_connect(void *ctx, MQTTAsync_successData5 *r)
{
    (void)r;
    MQTTAsync c = *(MQTTAsync *)ctx;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess5 = on_sub;
    ro.onFailure5 = on_fail;
    ro.context = ctx;
    const char *topic = getenv("PAHO_IDLE_TOPIC");
    if (MQTTAsync_subscribe(c, topic, 1, &ro) != MQTTASYNC_SUCCESS)
        stop = 2;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: paho_idle URI USER PASSWORD_FILE CAFILE TOPIC\n");
        return 2;
    }
    char password[256] = "";
    FILE *f = fopen(argv[3], "r");
    if (!f || !fgets(password, sizeof password, f)) {
        fprintf(stderr, "paho_idle: cannot read %s\n", argv[3]);
        return 1;
    }
    fclose(f);
    password[strcspn(password, "\r\n")] = '\0';
    setenv("PAHO_IDLE_TOPIC", argv[5], 1);
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    MQTTAsync c;
    MQTTAsync_createOptions cro = MQTTAsync_createOptions_initializer5;
    if (MQTTAsync_createWithOptions(&c, argv[1], "paho-idle", MQTTCLIENT_PERSISTENCE_NONE, NULL,
                                    &cro) != MQTTASYNC_SUCCESS ||
        MQTTAsync_setCallbacks(c, NULL, NULL, on_message, NULL) != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "paho_idle: cannot create the client\n");
        return 1;
    }
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    ssl.trustStore = argv[4];
    ssl.enableServerCertAuth = 1;
    ssl.verify = 1;
    MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer5;
    co.keepAliveInterval = 30;
    co.cleanstart = 1;
    co.username = argv[2];
    co.password = password;
    co.ssl = &ssl;
    co.onSuccess5 = on_connect;
    co.onFailure5 = on_fail;
    co.context = &c;
    if (MQTTAsync_connect(c, &co) != MQTTASYNC_SUCCESS) {
        fprintf(stderr, "paho_idle: cannot connect\n");
        return 1;
    }
    int said = 0;
    while (!stop) {
        if (subscribed && !said) {
            printf("connected\n");
            fflush(stdout);
            said = 1;
        }
        usleep(20000);
    }
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer5;
    d.timeout = 1000;
    MQTTAsync_disconnect(c, &d);
    usleep(100000);
    MQTTAsync_destroy(&c);
    return stop == 2;
}
