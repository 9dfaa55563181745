/* test_docker.c - what scripts/deploy/docker/ does, checked without Docker where it can be.
 *
 * Docker Hub is out of reach here, so the image cannot be built nor the compose file run. What
 * is checked instead:
 *   1. the compose file is valid for `docker compose config` (or `docker-compose config`); this
 *      one check is skipped, with a message, when neither is installed;
 *   2. every package the Dockerfile installs exists in Debian (dpkg or apt knows it), and the
 *      runtime stage holds the package of every shared library the three programs link
 *      directly (objdump's NEEDED entries);
 *   3. the containers' work, run on this machine from the very files the image gets:
 *      provision.sh (with the volumes' paths in a temp folder) makes the CAs, certificates,
 *      ACL, CRL and secrets, and is idempotent (a second run keeps them); Mosquitto runs from
 *      docker/mosquitto.conf (paths and port rendered); synccloud runs from docker/synccloud.conf
 *      (broker address and store overridden: SQLite instead of the PostgreSQL container) with
 *      the registry check on; a device added with syncctl on the provisioned CA writes rows that
 *      the cloud applies; both healthcheck commands of the compose file, rendered the same way,
 *      succeed.
 *
 * TH_KEEP=1 keeps the folder.
 */
#include "harness.h"

#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SYNCEDGE_BIN
#error "SYNCEDGE_BIN must be defined by the build"
#endif
#ifndef SYNCCLOUD_BIN
#error "SYNCCLOUD_BIN must be defined by the build"
#endif
#ifndef SYNCCTL_BIN
#error "SYNCCTL_BIN must be defined by the build"
#endif

#define DOCKER_DIR SYNC_SOURCE_DIR "/scripts/deploy/docker"
#define WAIT_MS 60000

static struct {
    const char *dir, *ctl, *certs, *secrets, *data; /* the temp folder and the volumes */
    const char *env;                                 /* provision.sh's environment */
    int port;
} t;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    TH_CHECK(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    TH_CHECK(buf && fread(buf, 1, (size_t)n, f) == (size_t)n, "read %s", path);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void replace_all(char **text, const char *from, const char *to, const char *what)
{
    size_t fl = strlen(from), tl = strlen(to), count = 0;
    for (const char *p = strstr(*text, from); p; p = strstr(p + fl, from))
        count++;
    TH_CHECK(count > 0, "%s: '%s' not found: the file changed, update the test", what, from);
    char *out = malloc(strlen(*text) + count * tl + 1), *o = out;
    TH_CHECK(out != NULL, "out of memory");
    const char *s = *text;
    for (const char *p = strstr(s, from); p; p = strstr(s, from)) {
        memcpy(o, s, (size_t)(p - s));
        o += p - s;
        memcpy(o, to, tl);
        o += tl;
        s = p + fl;
    }
    strcpy(o, s);
    free(*text);
    *text = out;
}

/* The container paths as this test's folders, in any text from the docker folder. */
static void render_paths(char **text, const char *what, int need_all)
{
    const char *from[] = {"/var/lib/syncedge-ctl", "/etc/mosquitto/certs", "/secrets",
                          "/var/lib/mosquitto"};
    const char *to[] = {t.ctl, t.certs, t.secrets, t.data};
    for (int i = 0; i < 4; i++)
        if (need_all || strstr(*text, from[i]))
            replace_all(text, from[i], to[i], what);
}

/* ---- 1. the compose file ----------------------------------------------------------------- */

static void check_compose(void)
{
    const char *file = th_shq(DOCKER_DIR "/docker-compose.yml");
    char *out = NULL;
    int rc;
    if (th_run("docker compose version >/dev/null 2>&1") == 0) {
        rc = th_capture(&out, "docker compose -f %s config -q 2>&1", file);
        TH_CHECK(rc == 0, "docker compose config: %s", out ? out : "");
        printf("docker: `docker compose config` accepts docker-compose.yml\n");
    } else if (th_run("command -v docker-compose >/dev/null 2>&1") == 0) {
        rc = th_capture(&out, "docker-compose -f %s config -q 2>&1", file);
        TH_CHECK(rc == 0, "docker-compose config: %s", out ? out : "");
        printf("docker: `docker-compose config` accepts docker-compose.yml\n");
    } else {
        printf("docker: SKIP the compose file check: neither the docker compose plugin nor "
               "docker-compose is installed (apt-get install docker-compose)\n");
    }
    free(out);
}

/* ---- 2. the Dockerfile's packages --------------------------------------------------------- */

static int package_known(const char *p)
{
    return th_run("dpkg-query -W -f='${Status}' %s 2>/dev/null | grep -q 'install ok installed'",
                  th_shq(p)) == 0 ||
           th_run("apt-cache show %s >/dev/null 2>&1", th_shq(p)) == 0;
}

static void check_dockerfile(void)
{
    /* The words of each "apt-get install ... --no-install-recommends WORDS &&" block, one
     * stage per line. */
    char *stages = th_output("sed -n '/apt-get install/,/&&/p' " DOCKER_DIR "/Dockerfile | "
                             "tr -d '\\\\' | tr -s ' \\n' ' ' | sed 's/&& rm/\\n/g' | "
                             "sed -n 's/.*--no-install-recommends//p' | sed 's/&&.*//'");
    TH_CHECK(stages != NULL, "cannot read the Dockerfile's packages");
    char *save = NULL, *runtime = NULL;
    int nstage = 0, npkg = 0, skipped = 0;
    for (char *line = strtok_r(stages, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strspn(line, " ") == strlen(line))
            continue;
        nstage++;
        runtime = line; /* the last stage is the runtime image */
        char *copy = strdup(line), *s2 = NULL;
        for (char *p = strtok_r(copy, " ", &s2); p; p = strtok_r(NULL, " ", &s2)) {
            npkg++;
            if (!package_known(p)) {
                /* Without apt's lists only installed packages are known. */
                TH_CHECK(th_run("ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1") != 0,
                         "the Dockerfile installs '%s', which Debian does not have", p);
                printf("docker: SKIP package '%s': not installed and no apt lists here\n", p);
                skipped++;
            }
        }
        free(copy);
    }
    TH_CHECK(nstage == 2, "expected a build and a runtime stage, found %d apt-get installs", nstage);
    printf("docker: the Dockerfile's %d packages exist (%d not checked)\n", npkg, skipped);

    /* Every library the programs need directly comes from a runtime package of the image. */
    const char *bins[] = {SYNCEDGE_BIN, SYNCCLOUD_BIN, SYNCCTL_BIN};
    for (int i = 0; i < 3; i++) {
        char *libs = th_output(th_fmt("objdump -p %s | awk '$1 == \"NEEDED\" { print $2 }'",
                                      th_shq(bins[i])));
        TH_CHECK(libs != NULL && *libs, "objdump -p %s found no libraries", bins[i]);
        char *s3 = NULL;
        for (char *lib = strtok_r(libs, "\n", &s3); lib; lib = strtok_r(NULL, "\n", &s3)) {
            /* The native architecture's copy: libm.so.6 is also in libc6-i386, say. */
            char *pkg = th_output(th_fmt("dpkg -S \"*/$(gcc -dumpmachine)/%s\" 2>/dev/null | "
                                         "head -n 1 | cut -d: -f1",
                                         lib));
            TH_CHECK(pkg && *pkg, "no Debian package holds %s (needed by %s)", lib, bins[i]);
            pkg[strcspn(pkg, "\n")] = '\0';
            /* libc6 is in every image; sanitizer runtimes come only with SYNC_SANITIZE. */
            int base = strcmp(pkg, "libc6") == 0 || strcmp(pkg, "libgcc-s1") == 0 ||
                       strncmp(pkg, "libasan", 7) == 0 || strncmp(pkg, "libubsan", 8) == 0;
            TH_CHECK(base || strstr(runtime, th_fmt(" %s ", pkg)) != NULL,
                     "%s needs %s from %s, which the Dockerfile's runtime stage does not install",
                     bins[i], lib, pkg);
            free(pkg);
        }
        free(libs);
    }
    printf("docker: the runtime stage has every library the programs link\n");
    free(stages);
}

/* ---- 3. the containers' work, here ---------------------------------------------------------- */

static void provision(void)
{
    char *out = NULL;
    int rc = th_capture(&out, "%s bash %s 2>&1", t.env, th_shq(DOCKER_DIR "/provision.sh"));
    TH_CHECK(rc == 0, "provision.sh failed (%d):\n%s", rc, out ? out : "");
    printf("%s", out);
    free(out);
}

static int file_has(const char *path, const char *needle)
{
    char *out = NULL;
    int rc = th_capture(&out, "grep -cF -- %s %s 2>/dev/null", th_shq(needle), th_shq(path));
    free(out);
    return rc == 0;
}

/* The text of a compose healthcheck: the first folded ">-" string in the service named marker. */
static char *compose_healthcheck(const char *marker)
{
    char *cmd = th_output(th_fmt(
        "awk -v m=%s '$0 == \"  \" m \":\" { found = 1 } found && /- >-/ { on = 1; next } "
        "on && /^ *(interval|- |[a-z_]+:)/ { exit } on { sub(/^ +/, \"\"); printf \"%%s \", $0 }' "
        "%s",
        th_shq(marker), th_shq(DOCKER_DIR "/docker-compose.yml")));
    TH_CHECK(cmd && strstr(cmd, "mosquitto_sub"), "no healthcheck after '%s' in the compose file",
             marker);
    return cmd;
}

/* Runs a compose healthcheck here: container names, port, paths and tenant rendered. */
static int run_healthcheck(const char *marker, const char *host)
{
    char *cmd = compose_healthcheck(marker);
    replace_all(&cmd, th_fmt("-h %s -p 8883", host), th_fmt("-h 127.0.0.1 -p %d", t.port),
                marker);
    replace_all(&cmd, "${EDGESYNC_TENANT:-acme}", "acme", marker);
    render_paths(&cmd, marker, 0);
    char *out = NULL;
    int rc = th_capture(&out, "%s 2>&1", cmd);
    printf("docker: healthcheck of service %s: exit %d %s\n", marker, rc, out ? out : "");
    free(out);
    free(cmd);
    return rc;
}

struct hc {
    const char *marker, *host;
};

static int healthy(void *ctx)
{
    const struct hc *h = ctx;
    return run_healthcheck(h->marker, h->host) == 0;
}

struct count {
    const char *db, *sql;
    long long want;
};

static int count_is(void *ctx)
{
    const struct count *c = ctx;
    return th_sql_int(c->db, "%s", c->sql) == c->want;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    th_init();
    check_compose();
    check_dockerfile();

    t.dir = th_tmpdir();
    TH_CHECK(t.dir != NULL, "no temp folder");
    t.ctl = th_fmt("%s/ctl", t.dir);
    t.certs = th_fmt("%s/certs", t.dir);
    t.secrets = th_fmt("%s/secrets", t.dir);
    t.data = th_fmt("%s/broker-data", t.dir);
    t.port = th_free_port();
    TH_CHECK(t.port > 0, "no free port");
    TH_CHECK(th_run("mkdir -p %s && ln -s %s %s/syncctl", th_shq(t.data), th_shq(SYNCCTL_BIN),
                    th_shq(t.dir)) == 0,
             "mkdir");
    t.env = th_fmt("TENANT=acme BROKER_HOST=127.0.0.1 CTL_DIR=%s CERT_DIR=%s SECRETS=%s "
                   "SYNCCTL=%s/syncctl PROVISION_NO_CHOWN=1",
                   th_shq(t.ctl), th_shq(t.certs), th_shq(t.secrets), th_shq(t.dir));

    /* provision.sh twice: the second run must keep every key and certificate. */
    provision();
    const char *keep[] = {"ctl/ca.key", "ctl/broker-ca.key", "certs/server.crt",
                          "secrets/synccloud.crt", "ctl/admin.crt", "secrets/pg.pass"};
    char *before = th_output(th_fmt("cd %s && sha256sum ctl/ca.key ctl/broker-ca.key "
                                    "certs/server.crt secrets/synccloud.crt ctl/admin.crt "
                                    "secrets/pg.pass",
                                    th_shq(t.dir)));
    TH_CHECK(before != NULL, "provision.sh did not make %s and the rest", keep[0]);
    provision();
    char *after = th_output(th_fmt("cd %s && sha256sum ctl/ca.key ctl/broker-ca.key "
                                   "certs/server.crt secrets/synccloud.crt ctl/admin.crt "
                                   "secrets/pg.pass",
                                   th_shq(t.dir)));
    TH_CHECK(after && strcmp(before, after) == 0, "a second provision.sh changed the identities");
    free(before);
    free(after);
    TH_CHECK(th_run("openssl verify -CAfile %s/broker-ca.crt -purpose sslserver %s/server.crt "
                    ">/dev/null && openssl verify -CAfile %s/ca.crt -purpose sslclient "
                    "%s/synccloud.crt >/dev/null && test \"$(stat -c %%a %s/synccloud.pgpass)\" = 600",
                    th_shq(t.secrets), th_shq(t.certs), th_shq(t.ctl), th_shq(t.secrets),
                    th_shq(t.secrets)) == 0,
             "provision.sh's certificates do not verify, or the pgpass file is not 0600");

    /* The broker from docker/mosquitto.conf. */
    struct passwd *pw = getpwuid(geteuid());
    TH_CHECK(pw != NULL, "who am I?");
    char *conf = slurp(DOCKER_DIR "/mosquitto.conf");
    replace_all(&conf, "user mosquitto", th_fmt("user %s", pw->pw_name), "mosquitto.conf");
    replace_all(&conf, "listener 8883", th_fmt("listener %d 127.0.0.1", t.port), "mosquitto.conf");
    replace_all(&conf, "log_dest stdout", "log_dest stderr", "mosquitto.conf");
    render_paths(&conf, "mosquitto.conf", 0);
    TH_CHECK(strstr(conf, "/var/lib/") == NULL || strstr(conf, t.ctl) != NULL, "paths left");
    const char *mconf = th_fmt("%s/mosquitto.conf", t.dir);
    FILE *f = fopen(mconf, "w");
    TH_CHECK(f && fputs(conf, f) >= 0 && fclose(f) == 0, "write %s", mconf);
    free(conf);
    const char *mlog = th_fmt("%s/mosquitto.log", t.dir);
    char *margv[] = {"mosquitto", "-c", (char *)mconf, NULL};
    th_register_log(mlog);
    pid_t broker = th_spawn(mlog, margv);
    TH_CHECK(broker > 0 && th_wait_port(t.port, 10000) == 0, "mosquitto did not start");
    struct hc hb = {"mosquitto", "localhost"};
    TH_CHECK(th_wait_until(healthy, &hb, WAIT_MS) == 0, "the broker's healthcheck fails");

    /* A device of the provisioned CA, added like `docker compose run provision syncctl ...`;
     * the broker reloads the ACL on SIGHUP (`docker compose kill -s HUP mosquitto`). */
    TH_CHECK(th_run("%s/syncctl --dir %s device add acme shop-1 >/dev/null 2>&1", th_shq(t.dir),
                    th_shq(t.ctl)) == 0,
             "syncctl device add");
    TH_CHECK(th_kill(broker, SIGHUP) == 0, "SIGHUP mosquitto");

    /* synccloud from docker/synccloud.conf: broker and store overridden. */
    const char *cloud_db = th_fmt("%s/store.db", t.dir);
    char *cconf = slurp(DOCKER_DIR "/synccloud.conf");
    render_paths(&cconf, "synccloud.conf", 0);
    replace_all(&cconf, "/etc/synccloud/schema.conf", SYNC_SOURCE_DIR "/docs/examples/schema.conf",
                "synccloud.conf");
    const char *cpath = th_fmt("%s/synccloud.conf", t.dir);
    f = fopen(cpath, "w");
    TH_CHECK(f && fputs(cconf, f) >= 0 && fclose(f) == 0, "write %s", cpath);
    free(cconf);
    const char *clog = th_fmt("%s/synccloud.log", t.dir);
    char *cargv[] = {SYNCCLOUD_BIN, "-c", (char *)cpath, "--tenant", "acme", "--broker",
                     (char *)th_fmt("ssl://127.0.0.1:%d", t.port), "--database",
                     (char *)cloud_db, NULL};
    th_register_log(clog);
    pid_t cloud = th_spawn(clog, cargv);
    TH_CHECK(cloud > 0, "cannot start synccloud");
    struct hc hcl = {"synccloud", "mosquitto"};
    TH_CHECK(th_wait_until(healthy, &hcl, WAIT_MS) == 0, "synccloud's healthcheck fails");
    TH_CHECK(file_has(clog, "registry"), "synccloud does not use the registry");

    /* The device writes; the cloud applies (it is in the registry). */
    const char *db = th_fmt("%s/shop-1.db", t.dir);
    TH_CHECK(th_sql_exec(db, "PRAGMA journal_mode=WAL;"
                             "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER,"
                             " price REAL, note TEXT, data BLOB);"
                             "CREATE TABLE notes(k TEXT PRIMARY KEY, body TEXT NOT NULL, n INTEGER)") == 0,
             "create %s", db);
    const char *elog = th_fmt("%s/shop-1.log", t.dir);
    char *eargv[] = {SYNCEDGE_BIN, "--database", (char *)db, "--schema",
                     SYNC_SOURCE_DIR "/docs/examples/schema.conf", "--tenant", "acme", "--device",
                     "shop-1", "--broker", (char *)th_fmt("ssl://127.0.0.1:%d", t.port),
                     "--cafile", (char *)th_fmt("%s/broker-ca.crt", t.secrets), "--certfile",
                     (char *)th_fmt("%s/devices/shop-1/device.crt", t.ctl), "--keyfile",
                     (char *)th_fmt("%s/devices/shop-1/device.key", t.ctl), "--log-dest",
                     "stderr", NULL};
    th_register_log(elog);
    pid_t edge = th_spawn(elog, eargv);
    TH_CHECK(edge > 0, "cannot start syncedge");
    TH_CHECK(th_sql_exec(db, "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s "
                             "WHERE i < 100) INSERT INTO items(id, name) SELECT i, 'n' || i FROM s") == 0,
             "insert");
    struct count applied = {cloud_db,
                            "SELECT count(*) FROM items WHERE _deleted = 0", 100};
    TH_CHECK(th_wait_until(count_is, &applied, WAIT_MS) == 0,
             "the cloud did not apply shop-1's 100 rows (it has %lld)",
             th_sql_int(cloud_db, "SELECT count(*) FROM items"));
    printf("docker: the cloud applied the 100 rows of a device provisioned with syncctl\n");

    th_stop(edge, "syncedge", elog, 1);
    th_stop(cloud, "synccloud", clog, 1);
    th_stop(broker, "mosquitto", mlog, 0);
    printf("docker: OK\n");
    return 0;
}
