#!/usr/bin/env node
// dashboard.test.js - browser test of the live dashboard (ctest label ui).
//
// Real processes on 127.0.0.1, free ports, one temp folder: the development broker
// (scripts/devbroker.sh with its WebSockets listener, which also serves the page built by
// cloud/dashboard/build.js), synccloud on SQLite and one syncedge (edge-a). Debian's chromium,
// driven headless by playwright-core, opens the dashboard as the read-only user viewer and
// must show: the connection up, edge-a online, then, within 2 s of a row written into edge-a's
// application database with the sqlite3 tool, that row in the live change feed (its text
// shown as text: the value carries HTML that must not become elements), and edge-a offline
// once it stops. It also checks that both broker listeners are bound to 127.0.0.1 only and that
// the broker serves nothing of its runtime folder. After some more writes (a fuller feed and
// sparkline) a full-page screenshot is kept as UI_ARTIFACT_DIR/ui-dashboard.png.
//
// Nothing is skipped: a missing chromium, node_modules or binary fails the test with what to
// run (scripts/test.sh installs them all). Every process the test starts is stopped by pid,
// also on failure, on SIGINT/SIGTERM and at the overall deadline.
//
// Environment (set by tests/ui/CMakeLists.txt): SYNCEDGE_BIN, SYNCCLOUD_BIN, SYNC_SOURCE_DIR,
// UI_ARTIFACT_DIR; optional UI_CHROMIUM (default /usr/bin/chromium); TH_KEEP=1 keeps the
// temp folder with every log and database.
'use strict';

const { spawn, spawnSync } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');

const SRC = process.env.SYNC_SOURCE_DIR || path.resolve(__dirname, '..', '..');
const EDGE = process.env.SYNCEDGE_BIN || '';
const CLOUD = process.env.SYNCCLOUD_BIN || '';
const CHROMIUM = process.env.UI_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.UI_ARTIFACT_DIR || path.join(process.cwd(), 'artifacts');
const SCHEMA = path.join(SRC, 'docs', 'examples', 'schema.conf');
const TENANT = 'demo';
const SEE_WITHIN_MS = 2000; // the written row must be on the page this soon
const START_MS = 20000; // daemons and page may take this long to come up
const DEADLINE_MS = 100000; // the whole test, below ctest's TIMEOUT so cleanup still runs

const t00 = Date.now();
const procs = []; // { name, child, log, exit: null | { code, signal } }
let tmp = null;
let browser = null;
const browserLog = [];
let cleaning = null;

function say(msg) {
    process.stdout.write(`ui: [${((Date.now() - t00) / 1000).toFixed(1)}s] ${msg}\n`);
}

class TestFailure extends Error {}

function fail(msg) {
    throw new TestFailure(msg);
}

function check(cond, msg) {
    if (!cond) fail(msg);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- prerequisites: fail, never skip ----------------------------------------------------

function isExecutable(p) {
    try {
        fs.accessSync(p, fs.constants.X_OK);
        return fs.statSync(p).isFile();
    } catch (e) {
        return false;
    }
}

function inPath(cmd) {
    return (process.env.PATH || '').split(':').some((d) => d && isExecutable(path.join(d, cmd)));
}

// Checks everything the test needs and returns playwright-core; fails saying what to run.
function prerequisites() {
    const major = Number(process.versions.node.split('.')[0]);
    check(major >= 20, `node ${process.versions.node} is too old: playwright-core needs 20 or newer`);
    check(isExecutable(EDGE), `syncedge not found at '${EDGE}' (SYNCEDGE_BIN): build the project first`);
    check(isExecutable(CLOUD), `synccloud not found at '${CLOUD}' (SYNCCLOUD_BIN): build the project first`);
    check(
        isExecutable(CHROMIUM),
        `chromium not found at ${CHROMIUM}: scripts/test.sh installs Debian's chromium ` +
            `(or as root: apt-get install --no-install-recommends chromium)`,
    );
    for (const cmd of ['mosquitto', 'mosquitto_passwd', 'openssl', 'sqlite3']) {
        check(inPath(cmd), `${cmd} not found in PATH: run scripts/install-deps.sh`);
    }
    const bundle = path.join(SRC, 'cloud', 'dashboard', 'node_modules', 'mqtt', 'dist', 'mqtt.min.js');
    check(
        fs.existsSync(bundle),
        `${bundle} not found: run 'npm ci' in cloud/dashboard (scripts/test.sh does)`,
    );
    try {
        return require(require.resolve('playwright-core', { paths: [__dirname] }));
    } catch (e) {
        fail(`playwright-core is not installed in ${__dirname}/node_modules: run 'npm ci' in tests/ui (scripts/test.sh does): ${e.message}`);
    }
    return null;
}

// ---- processes -----------------------------------------------------------------------------

// Starts cmd with args, stdin from /dev/null, stdout and stderr appended to tmp/NAME.log.
function start(name, cmd, args) {
    const log = path.join(tmp, `${name}.log`);
    const fd = fs.openSync(log, 'a');
    const child = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    const p = { name, child, log, exit: null };
    child.on('exit', (code, signal) => {
        p.exit = { code, signal };
    });
    child.on('error', (e) => {
        p.exit = { code: -1, signal: null, error: e.message };
    });
    procs.push(p);
    say(`started ${name} (pid ${child.pid})`);
    return p;
}

function alive(p) {
    return p.exit === null;
}

function checkAlive() {
    for (const p of procs) check(alive(p), `${p.name} exited early (${JSON.stringify(p.exit)})`);
}

// SIGTERM, then SIGKILL after ms; resolves with the exit record.
async function stop(p, ms) {
    if (!alive(p)) return p.exit;
    try {
        process.kill(p.child.pid, 'SIGTERM');
    } catch (e) {
        // Gone already.
    }
    const until = Date.now() + ms;
    while (alive(p) && Date.now() < until) await sleep(25);
    if (alive(p)) {
        say(`${p.name} (pid ${p.child.pid}) ignored SIGTERM for ${ms} ms: SIGKILL`);
        try {
            process.kill(p.child.pid, 'SIGKILL');
        } catch (e) {
            // Gone already.
        }
        while (alive(p)) await sleep(25);
    }
    return p.exit;
}

// Stops a daemon and fails unless it exited 0 (a sanitizer build reports leaks that way).
async function stopClean(p) {
    const ex = await stop(p, 15000);
    check(ex.code === 0, `${p.name} did not exit cleanly on SIGTERM: ${JSON.stringify(ex)}`);
}

function tail(file, n) {
    try {
        const lines = fs.readFileSync(file, 'utf8').split('\n');
        return lines.slice(-n - 1).join('\n');
    } catch (e) {
        return `(cannot read ${file}: ${e.message})`;
    }
}

async function cleanup() {
    if (cleaning) return cleaning;
    cleaning = (async () => {
        if (browser) {
            await Promise.race([browser.close().catch(() => {}), sleep(5000)]);
            browser = null;
        }
        // Daemons first, the broker last, each by its own pid.
        for (const p of procs.slice().reverse()) await stop(p, 3000);
        if (tmp) {
            if (process.env.TH_KEEP) say(`kept ${tmp}`);
            else fs.rmSync(tmp, { recursive: true, force: true });
        }
    })();
    return cleaning;
}

// A last resort when node exits without cleanup() having finished.
process.on('exit', () => {
    for (const p of procs) {
        if (alive(p)) {
            try {
                process.kill(p.child.pid, 'SIGKILL');
            } catch (e) {
                // Gone already.
            }
        }
    }
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
        process.stderr.write(`ui: ${sig}: stopping everything\n`);
        cleanup().finally(() => process.exit(1));
    });
}

// ---- helpers -------------------------------------------------------------------------------

// Two distinct TCP ports on 127.0.0.1 that were free a moment ago.
async function freePorts(n) {
    const servers = [];
    const ports = [];
    for (let i = 0; i < n; i++) {
        const s = net.createServer();
        await new Promise((res, rej) => s.listen(0, '127.0.0.1', res).on('error', rej));
        servers.push(s);
        ports.push(s.address().port);
    }
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    return ports;
}

function canConnect(port) {
    return new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port });
        s.once('connect', () => {
            s.destroy();
            resolve(true);
        });
        s.once('error', () => resolve(false));
    });
}

async function waitFor(what, pred, ms) {
    const until = Date.now() + ms;
    for (;;) {
        checkAlive();
        if (await pred()) return;
        check(Date.now() < until, `timed out after ${ms} ms waiting for ${what}`);
        await sleep(100);
    }
}

function run(cmd, args, what) {
    const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    check(r.status === 0, `${what} failed (${r.error ? r.error.message : `exit ${r.status}`}):\n${r.stdout}${r.stderr}`);
    return r.stdout;
}

function sql(db, statement) {
    return run('sqlite3', ['-bail', '-cmd', '.timeout 5000', db, statement], `sqlite3 ${db}`).trim();
}

function sqlQuote(s) {
    return `'${s.replace(/'/g, "''")}'`;
}

// The local addresses of the sockets listening on port, from /proc/net/tcp{,6}
// ("0100007F" is 127.0.0.1; anything else means more than loopback).
function listenAddresses(port) {
    const hex = port.toString(16).toUpperCase().padStart(4, '0');
    const out = [];
    for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
        let text = '';
        try {
            text = fs.readFileSync(f, 'utf8');
        } catch (e) {
            continue;
        }
        for (const line of text.split('\n').slice(1)) {
            const cols = line.trim().split(/\s+/);
            if (cols.length < 4 || cols[3] !== '0A') continue; // 0A: LISTEN
            const [addr, p] = cols[1].split(':');
            if (p === hex) out.push(addr);
        }
    }
    return out;
}

// ---- the test ------------------------------------------------------------------------------

async function main() {
    const { chromium } = prerequisites();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'syncui-'));
    const [port, wsport] = await freePorts(2);
    say(`temp folder ${tmp}, broker ssl://127.0.0.1:${port}, dashboard http://127.0.0.1:${wsport}/`);

    // The broker with its WebSockets listener, and the page in the folder it serves.
    run('bash', [path.join(SRC, 'scripts', 'devbroker.sh'), 'setup', tmp, String(port), String(wsport)], 'devbroker.sh setup');
    run(process.execPath, [path.join(SRC, 'cloud', 'dashboard', 'build.js'), path.join(tmp, 'www')], 'dashboard build');
    const broker = start('mosquitto', 'mosquitto', ['-c', path.join(tmp, 'mosquitto.conf')]);
    await waitFor('mosquitto to listen', async () => (await canConnect(port)) && canConnect(wsport), 10000);

    for (const p of [port, wsport]) {
        const addrs = listenAddresses(p);
        check(addrs.length > 0, `nothing listens on port ${p} according to /proc/net/tcp*`);
        check(
            addrs.every((a) => a === '0100007F'),
            `port ${p} listens on more than 127.0.0.1 (addresses ${addrs.join(', ')})`,
        );
    }
    const home = await fetch(`http://127.0.0.1:${wsport}/`);
    check(home.status === 200 && (await home.text()).includes('edgesync'), `GET / answered ${home.status}`);
    const secret = await fetch(`http://127.0.0.1:${wsport}/viewer.pass`);
    check(secret.status !== 200, 'the broker serves files of its runtime folder over HTTP');
    say('broker up: both listeners on 127.0.0.1 only, the page served, the runtime folder not');

    // The application's database, then the cloud and the edge.
    const db = path.join(tmp, 'a.db');
    sql(
        db,
        'PRAGMA journal_mode=WAL; CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, ' +
            'price REAL, note TEXT, data BLOB); CREATE TABLE notes(k TEXT PRIMARY KEY, body TEXT NOT NULL, n INTEGER);',
    );
    const common = ['--schema', SCHEMA, '--tenant', TENANT, '--broker', `ssl://127.0.0.1:${port}`,
        '--cafile', path.join(tmp, 'ca.crt'), '--log-level', 'info', '--log-dest', 'stderr'];
    const cloud = start('synccloud', CLOUD, ['--database', path.join(tmp, 'cloud.db'), '--username', 'synccloud',
        '--password-file', path.join(tmp, 'synccloud.pass'), ...common]);
    const edge = start('edge-a', EDGE, ['--database', db, '--device', 'edge-a',
        '--password-file', path.join(tmp, 'edge-a.pass'), ...common]);
    await waitFor('synccloud and edge-a to be ready', async () => {
        const log = fs.readFileSync(broker.log, 'utf8');
        return (
            log.includes("u'synccloud'") &&
            log.includes("u'edge-a'") &&
            sql(db, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='_sync_outbox'") === '1' &&
            sql(db, "SELECT count(DISTINCT tbl_name) FROM sqlite_master WHERE type='trigger' AND tbl_name IN ('items','notes')") === '2'
        );
    }, START_MS);
    say('synccloud and edge-a are connected, edge-a captures items and notes');

    // The page, as the read-only viewer; the password travels in the fragment only.
    const args = ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'];
    if (process.getuid && process.getuid() === 0) args.push('--no-sandbox'); // chromium refuses root otherwise
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args, timeout: START_MS });
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const problems = [];
    page.on('console', (m) => {
        browserLog.push(`${m.type()}: ${m.text()}`);
        if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('dialog', (d) => {
        problems.push(`a dialog opened: ${d.message()} (message text ran as script?)`);
        d.dismiss().catch(() => {});
    });
    const pass = fs.readFileSync(path.join(tmp, 'viewer.pass'), 'utf8').split('\n')[0];
    const url = `http://127.0.0.1:${wsport}/#tenant=${TENANT}&user=viewer&pass=${encodeURIComponent(pass)}`;
    await page.goto(url, { timeout: START_MS });
    await page.waitForSelector('#conn[data-state="connected"]', { timeout: START_MS }).catch(async () => {
        fail(`the page did not connect; its status says: ${await page.textContent('#conn')}`);
    });
    await page.waitForSelector('#devices tr[data-device="edge-a"][data-online="true"]', { timeout: START_MS })
        .catch(() => fail('the page does not show edge-a online'));
    check(!page.url().includes(pass), `the password is still in the address bar: ${page.url()}`);
    say('the page is connected and shows edge-a online');

    // The write, and the row on the page within SEE_WITHIN_MS.
    const key = `ui-${process.pid}-${Date.now()}`;
    const body = 'hello <img src=x onerror=alert(1)><script>alert(2)</script> ✓';
    const t0 = Date.now();
    sql(db, `INSERT INTO notes(k, body, n) VALUES (${sqlQuote(key)}, ${sqlQuote(body)}, 42)`);
    const wrote = Date.now() - t0;
    await page
        .waitForFunction(
            ([k, b]) =>
                Array.from(document.querySelectorAll('#feed tr')).some(
                    (tr) => tr.dataset.key === k && tr.textContent.includes(`body=${JSON.stringify(b)}`),
                ),
            [key, body],
            { timeout: Math.max(1, SEE_WITHIN_MS - (Date.now() - t0)), polling: 20 },
        )
        .catch(() => fail(`the row ${key} was not in the change feed ${SEE_WITHIN_MS} ms after the write`));
    const seenMs = Date.now() - t0;
    check(seenMs <= SEE_WITHIN_MS, `the row showed up after ${seenMs} ms, more than ${SEE_WITHIN_MS}`);
    say(`row ${key} on the page ${seenMs} ms after the write began (sqlite3 took ${wrote} ms)`);

    const row = await page.evaluate((k) => {
        const tr = Array.from(document.querySelectorAll('#feed tr')).find((r) => r.dataset.key === k);
        return {
            cells: Array.from(tr.cells, (c) => c.textContent),
            injected: document.querySelectorAll('main img, main script').length,
        };
    }, key);
    check(row.cells[1] === 'edge-a' && row.cells[2] === 'notes' && row.cells[3] === key && row.cells[4] === 'insert',
        `the feed row reads ${JSON.stringify(row.cells)}`);
    check(row.cells[5].includes('n=42'), `the feed row's columns read ${row.cells[5]}`);
    check(row.injected === 0, 'HTML from a message became elements on the page');
    const device = await page.$$eval('#devices tr[data-device="edge-a"] td', (tds) => tds.map((c) => c.textContent));
    check(device[1] === 'online', `the device row reads ${JSON.stringify(device)}`);
    check((await page.textContent('#online-count')) === '1', 'the online count is not 1');

    // Some more traffic, so the picture shows a fuller feed and the sparkline: 30 inserts in
    // three transactions, then updates and a delete (36 changes more).
    for (let t = 0; t < 3; t++) {
        const values = [];
        for (let j = 1; j <= 10; j++) {
            const id = t * 10 + j;
            values.push(`(${id}, 'part ${id}', ${100 + id * 7}, ${(0.05 * id).toFixed(2)})`);
        }
        sql(db, `INSERT INTO items(id, name, qty, price) VALUES ${values.join(', ')}`);
        await sleep(300);
    }
    sql(db, "BEGIN; UPDATE items SET qty = qty - 5, note = 'sold 5' WHERE id <= 5; DELETE FROM items WHERE id = 30; COMMIT;");
    await page
        .waitForFunction(() => Number(document.getElementById('seen-changes').textContent) >= 37, null, { timeout: 5000 })
        .catch(() => fail('the page did not count the 37 changes written'));
    // Let the next throughput sample land before the picture.
    await sleep(1100);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'ui-dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    say(`screenshot: ${shot}`);

    // A clean stop of the edge publishes its retained offline state: the page follows.
    await stopClean(edge);
    await page.waitForSelector('#devices tr[data-device="edge-a"][data-online="false"]', { timeout: 5000 })
        .catch(() => fail('the page still shows edge-a online 5 s after it stopped'));
    say('edge-a stopped: the page shows it offline');

    check(problems.length === 0, `the page reported problems:\n  ${problems.join('\n  ')}`);
    await browser.close();
    browser = null;
    await stopClean(cloud);
    await stop(broker, 10000);
}

const deadline = setTimeout(() => {
    process.stderr.write(`ui: FAIL: the test did not finish within ${DEADLINE_MS / 1000} s\n`);
    cleanup().finally(() => process.exit(1));
}, DEADLINE_MS);

main()
    .then(async () => {
        clearTimeout(deadline);
        await cleanup();
        say('PASS');
        process.exit(0);
    })
    .catch(async (e) => {
        clearTimeout(deadline);
        process.stderr.write(`ui: FAIL: ${e instanceof TestFailure ? e.message : e.stack}\n`);
        for (const p of procs) process.stderr.write(`---- last lines of ${p.log} ----\n${tail(p.log, 15)}\n`);
        if (browserLog.length) process.stderr.write(`---- browser console ----\n${browserLog.slice(-20).join('\n')}\n`);
        await cleanup();
        process.exit(1);
    });
