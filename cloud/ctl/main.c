/* main.c - syncctl: finds the command in argv and runs it from the command table.
 *
 * `syncctl [GLOBAL OPTIONS] GROUP VERB [ARGS] [OPTIONS]`. Global options may come before the
 * command words too; they are handed to the command with the rest of its arguments. To add a
 * command, add its line to `commands` (see ctl.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static const ctl_command commands[] = {
    {"ca", "init", ctl_cmd_ca_init, "create the CA, the device registry and an empty CRL",
     "Usage: syncctl ca init [--cn NAME] [--days N] [--key-type ec|rsa]\n"
     "\n"
     "Creates the certificate authority that signs the device certificates in DIR:\n"
     "ca.key (its private key, mode 0600), ca.crt (self-signed: the broker's `cafile` for\n"
     "client certificates, and copied to every device), the device registry registry.db and an\n"
     "empty CRL crl.pem (the broker's `crlfile`). Refuses to overwrite an existing CA.\n"
     "\n"
     "  --cn NAME          the CA's common name (default \"syncedge device CA\")\n"
     "  --days N           validity in days (default 3650)\n"
     "  --key-type TYPE    ec: ECDSA P-256 (default) or rsa: RSA 3072; both sign with SHA-256\n"},
    {"device", "add", ctl_cmd_device_add, "register a device and issue its key and certificate",
     "Usage: syncctl device add TENANT DEVICE [--role R] [--password] [--days N] [--out DIR2]\n"
     "\n"
     "Registers DEVICE of TENANT and issues its identity: a new ECDSA P-256 key and a client\n"
     "certificate signed by the CA (subject CN=DEVICE, O=TENANT; extendedKeyUsage clientAuth;\n"
     "random 128-bit serial), written with the CA certificate into DIR2. TENANT and DEVICE are\n"
     "1-64 of A-Z a-z 0-9 _ . -. The device id is the device's broker user name, so it is unique\n"
     "across tenants, and a removed device keeps its id for good. Then rewrites the password and\n"
     "ACL files and reloads the broker, and prints what to install on the device.\n"
     "\n"
     "  --role R        the device's role, for synccloud's priority conflict policy\n"
     "  --password      also create a random broker password: DIR2/device.pass (mode 0600),\n"
     "                  and the device's line in the password file\n"
     "  --days N        certificate validity in days (default 825)\n"
     "  --out DIR2      folder for device.key (mode 0600, written nowhere else), device.crt,\n"
     "                  ca.crt and device.pass (default DIR/devices/DEVICE)\n"},
    {"device", "list", ctl_cmd_device_list, "list the registered devices",
     "Usage: syncctl device list [--tenant T] [--json]\n"
     "\n"
     "Lists the registered devices, suspended and removed ones included: tenant, device,\n"
     "role, status, certificate expiry (UTC) and serial.\n"
     "\n"
     "  --tenant T      only the devices of tenant T\n"
     "  --json          a JSON array of objects instead of a table\n"},
    {"device", "show", ctl_cmd_device_show, "show everything the registry holds about a device",
     "Usage: syncctl device show DEVICE [--json]\n"
     "\n"
     "Shows a device's registry entry: tenant, role, status, certificate serial and SHA-256\n"
     "fingerprint, creation, expiry, revocation, and whether it has a broker password.\n"
     "\n"
     "  --json          a JSON object instead of lines\n"},
    {"device", "suspend", ctl_cmd_device_suspend, "lock a device out until it is resumed",
     "Usage: syncctl device suspend DEVICE\n"
     "\n"
     "Locks an active device out of the broker: its certificate goes on the CRL (reason\n"
     "certificateHold), its password-file line and its ACL lines are dropped, and the broker\n"
     "is reloaded. `syncctl device resume DEVICE` lets it in again with the same identity.\n"},
    {"device", "resume", ctl_cmd_device_resume, "let a suspended device in again",
     "Usage: syncctl device resume DEVICE\n"
     "\n"
     "Undoes `device suspend`: takes the certificate off the CRL, restores the password-file\n"
     "line (if the device has a password) and the ACL lines, and reloads the broker.\n"},
    {"device", "remove", ctl_cmd_device_remove, "revoke a device for good (kept for audit)",
     "Usage: syncctl device remove DEVICE [--compromised]\n"
     "\n"
     "Retires a device for good: its registry entry stays with status 'removed' (for audit,\n"
     "and so that its id is never reused), its certificate stays on the CRL forever (reason\n"
     "cessationOfOperation), its password-file line and ACL lines are dropped, and the broker\n"
     "is reloaded. Its files in DIR/devices are left for you to delete.\n"
     "\n"
     "  --compromised   revoke with reason keyCompromise (the key may be in other hands)\n"},
    {"acl", "generate", ctl_cmd_acl_generate, "rewrite the ACL file from the registry",
     "Usage: syncctl acl generate\n"
     "\n"
     "Rewrites the ACL file from the registry, then reloads the broker: for each active device\n"
     "its own topics under sync/TENANT/dev/DEVICE/ and read access to its tenant's downstream\n"
     "topics; readwrite on sync/# for the cloud user; then the acl_extra file verbatim.\n"},
    {"crl", "generate", ctl_cmd_crl_generate, "sign a fresh CRL (run it regularly)",
     "Usage: syncctl crl generate\n"
     "\n"
     "Signs a fresh CRL (thisUpdate now, nextUpdate in crl_days) listing every suspended and\n"
     "removed device, and reloads the broker. A broker that checks a CRL refuses every client\n"
     "certificate once the CRL is past its nextUpdate: run this from a timer well within\n"
     "crl_days.\n"},
    {"broker", "reload", ctl_cmd_broker_reload, "send the broker SIGHUP to reload its files",
     "Usage: syncctl broker reload\n"
     "\n"
     "Sends SIGHUP to the broker given by broker_pid or broker_pid_file, which makes Mosquitto\n"
     "read its password, ACL and CRL files again.\n"},
    {"status", NULL, ctl_cmd_status, "how every device is doing: online, pending, lag, pull",
     "Usage: syncctl status [--json] [--wait SEC]\n"
     "\n"
     "Shows every device of --tenant, merged from two sources: the state each device keeps\n"
     "retained on sync/TENANT/dev/DEVICE/state (read through --broker as --admin-user), and\n"
     "what the running synccloud's store knows of it (asked over MQTT request/response).\n"
     "Columns: DEVICE; ONLINE (yes, no after a clean stop, lost when its connection broke,\n"
     "- without a state, ? for a state that cannot be read); PENDING (changes in its outbox);\n"
     "LAG (replicas: changes behind the cloud, all tables); LAST SYNC (when the cloud last\n"
     "acknowledged its changes; never: not since syncedge started); CLOUD LAST SEEN (its\n"
     "last batch at synccloud); APPLIED (its changes synccloud applied); PULL (a catch-up in\n"
     "progress: table, rows done/total and rows per second). Without an answer from\n"
     "synccloud the states are still shown (its columns say ?) and a warning goes to stderr.\n"
     "\n"
     "  --json          one JSON array of objects with every field instead of the table\n"
     "                  (lag per table; docs/syncctl.md)\n"
     "  --wait SEC      collect states at most SEC seconds (default 5); collection ends\n"
     "                  earlier once 0.3 s pass without a new one\n"
     "\n"
     "Exit status: 0 done; 1 the broker could not be reached; 2 bad usage or configuration;\n"
     "3 the device states were printed but synccloud did not answer (or refused).\n"},
    {"stats", NULL, ctl_cmd_stats, "throughput and counters of the cloud consumers",
     "Usage: syncctl stats [--json] [--wait SEC]\n"
     "\n"
     "Shows the statistics every synccloud of --tenant keeps retained on\n"
     "sync/TENANT/cloud/CONSUMER/stats (every few seconds): one line per consumer and a TOTAL\n"
     "line. Columns: CONSUMER (its MQTT client id); ONLINE (yes, no after a clean stop, stale\n"
     "when its last report is older than 3 reporting intervals: it died or hangs); UP; REPORTED\n"
     "(age of the report); DEVICES (active/known); BATCHES and CHANGES applied since it\n"
     "started; CHANGES/S; CONFLICTS logged; TO RESOLVE (conflicts waiting for a person);\n"
     "REJECTED batches; APPLY ms (p50/p99/max per transaction). TOTAL adds up the counters\n"
     "and rates of the consumers and takes the largest store-wide value (devices, conflicts\n"
     "to resolve) of the live ones: consumers sharing one store each report the same.\n"
     "\n"
     "  --json          one JSON object {\"consumers\": [...], \"total\": {...}} instead of\n"
     "                  the table (docs/syncctl.md)\n"
     "  --wait SEC      collect reports at most SEC seconds (default 5)\n"
     "\n"
     "Exit status: 0 done; 1 the broker could not be reached, or no consumer has published\n"
     "statistics (said on stderr; --json still prints {\"consumers\": [], \"total\": null});\n"
     "2 bad usage or configuration.\n"},
    {"resync", NULL, ctl_cmd_resync, "make a replica rebuild its tables from the cloud",
     "Usage: syncctl resync DEVICE [--by NAME] [--json] [--follow [--wait SEC]]\n"
     "\n"
     "Asks the running synccloud of --tenant to send DEVICE a resync command (on\n"
     "sync/TENANT/dev/DEVICE/cmd; the broker keeps it while the device is offline). The device\n"
     "then pulls every replicated table whole from the cloud and drops what the cloud does not\n"
     "have, keeping its own changes that are not sent yet; `syncctl status` shows the progress\n"
     "in its PULL column. synccloud refuses a device its registry does not know.\n"
     "\n"
     "  --by NAME       who asks, for synccloud's log (default $USER)\n"
     "  --json          print synccloud's answer as JSON\n"
     "  --follow        then show the device's progress (rows done/total and rate, from its\n"
     "                  state messages) until the rebuild is over\n"
     "  --wait SEC      with --follow: give up after SEC seconds (default 600)\n"
     "\n"
     "Exit status: 0 the command was sent (with --follow: and the rebuild finished); 1 synccloud\n"
     "refused or did not answer, or --follow gave up; 2 bad usage.\n"},
    {"conflicts", "list", ctl_cmd_conflicts_list, "list conflicts waiting for a person",
     "Usage: syncctl conflicts list [--all] [--limit N] [--json]\n"
     "\n"
     "Asks the running synccloud of --tenant (through --broker, as --admin-user) for the\n"
     "conflicts of tables with the manual policy that wait for a person, newest first: id,\n"
     "time, table, key, the writing device, the policy, the writer's change and the server's\n"
     "row at the time.\n"
     "\n"
     "  --all           every logged conflict, also those a policy settled and resolved ones\n"
     "  --limit N       at most N (default 100)\n"
     "  --json          a JSON array of the conflicts, with every field\n"},
    {"conflicts", "resolve", ctl_cmd_conflicts_resolve, "settle a pending conflict",
     "Usage: syncctl conflicts resolve ID --take server|client [--by NAME] [--json]\n"
     "       syncctl conflicts resolve ID --take COLUMN=VALUE[,COLUMN=VALUE...] [--by NAME]\n"
     "       syncctl conflicts resolve ID --set COLUMN=VALUE [--set ...] [--by NAME] [--json]\n"
     "\n"
     "Settles pending conflict ID (see conflicts list): the row keeps the server's value\n"
     "(--take server), takes the writer's change (--take client), or gets the given column\n"
     "values (--take COLUMN=VALUE,... or --set; VALUE is converted to the column's type, blobs\n"
     "as x'HEX'). In --take a comma starts the next COLUMN=VALUE only where a column name and\n"
     "'=' follow it; give a value that holds such text, or null (COLUMN alone), with --set.\n"
     "The row gets a new version, loses its conflict flag, and goes to every replica like\n"
     "any change; the conflict log records who resolved it and how.\n"
     "\n"
     "  --by NAME       who resolves, for the log (default $USER)\n"
     "  --json          print synccloud's answer as JSON\n"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void print_help(FILE *f)
{
    fputs("Usage: syncctl [GLOBAL OPTIONS] COMMAND [ARGS] [OPTIONS]\n"
          "\n"
          "Provisions device identities for syncedge: a CA, one key and client certificate per\n"
          "device, a registry of devices (DIR/registry.db), and the broker's password, ACL and\n"
          "CRL files kept in step with it. Administers a running synccloud through the broker:\n"
          "device status, statistics, conflicts and resyncs (tables by default, --json for\n"
          "scripts). `syncctl COMMAND --help` describes a command.\n"
          "\n"
          "Commands:\n",
          f);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s%s%s", commands[i].group, commands[i].verb ? " " : "",
                 commands[i].verb ? commands[i].verb : "");
        fprintf(f, "  %-16s %s\n", name, commands[i].summary);
    }
    fputs("\n", f);
    fputs(ctl_global_help, f);
}

/* Nonzero if the global option argv[i] is followed by its value (so the value is no command
 * word). Mirrors ctl_args: every --name takes a value but these three and --name=value. */
static int takes_value(const char *a)
{
    if (strcmp(a, "-c") == 0)
        return 1;
    if (strncmp(a, "--", 2) != 0 || strchr(a, '='))
        return 0;
    return strcmp(a, "--help") != 0 && strcmp(a, "--version") != 0 && strcmp(a, "--verbose") != 0;
}

int main(int argc, char **argv)
{
    int i = 1, help = 0;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            help = 1;
        else if (strcmp(argv[i], "--version") == 0) {
            printf("syncctl %s\n", CTL_VERSION);
            return 0;
        } else if (takes_value(argv[i]))
            i++;
    }
    if (i >= argc) {
        print_help(help ? stdout : stderr);
        return help ? 0 : 2;
    }
    const char *group = argv[i];
    const char *verb = i + 1 < argc ? argv[i + 1] : NULL;
    const ctl_command *cmd = NULL;
    int known_group = 0;
    for (size_t k = 0; k < NCOMMANDS && !cmd; k++) {
        if (strcmp(commands[k].group, group) != 0)
            continue;
        known_group = 1;
        if (!commands[k].verb || (verb && strcmp(commands[k].verb, verb) == 0))
            cmd = &commands[k];
    }
    if (!cmd) {
        /* `syncctl device --help` lists the group's commands; a missing or unknown one is an
         * error that lists them too. */
        int asked = known_group && verb && (strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0);
        FILE *f = asked ? stdout : stderr;
        if (known_group)
            fprintf(f, "%s'%s' has these commands (each with --help):\n",
                    asked ? "" : "Error: ", group);
        else
            fprintf(f, "Error: unknown command '%s'\n", group);
        for (size_t k = 0; k < NCOMMANDS; k++) {
            if (known_group && strcmp(commands[k].group, group) != 0)
                continue;
            char name[64];
            snprintf(name, sizeof name, "%s %s", commands[k].group,
                     commands[k].verb ? commands[k].verb : "");
            fprintf(f, "  syncctl %-16s %s\n", name, commands[k].summary);
        }
        return asked ? 0 : 2;
    }
    int words = cmd->verb ? 2 : 1;
    /* The command's argv: its name, the global options before it, and everything after it. */
    char name[64];
    snprintf(name, sizeof name, "%s%s%s", cmd->group, cmd->verb ? " " : "",
             cmd->verb ? cmd->verb : "");
    char **cargv = malloc(((size_t)argc + 1) * sizeof *cargv);
    if (!cargv) {
        fprintf(stderr, "syncctl: out of memory\n");
        return 1;
    }
    int cargc = 0;
    cargv[cargc++] = name;
    for (int k = 1; k < i; k++)
        cargv[cargc++] = argv[k];
    for (int k = i + words; k < argc; k++)
        cargv[cargc++] = argv[k];
    cargv[cargc] = NULL;

    ctl_ctx ctx;
    ctl_config_init(&ctx.cfg);
    ctx.cmd = cmd;
    int status = cmd->run(&ctx, cargc, cargv);
    ctl_config_free(&ctx.cfg);
    free(cargv);
    return status;
}
