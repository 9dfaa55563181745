// app.js - the live dashboard's logic: one MQTT connection over WebSockets, three
// subscriptions, and a page redrawn from what arrives.
//
// Reads (never publishes):
//   sync/T/dev/+/state     retained device states (docs/protocol.md, "Device state")
//   sync/T/events/#        the cloud's JSON events: batch, changes, conflict, rejected, resolved
//   sync/T/cloud/+/stats   retained statistics of each cloud consumer, when synccloud sends them
// Where the connection goes comes from the address's fragment, so nothing secret is in the
// repository or reaches the web server's logs: #tenant=T&user=U&pass=P[&broker=ws://H:P/mqtt].
// The password is then taken out of the address bar and kept in this tab's sessionStorage
// only; without one the page shows a sign-in form.
// Every text that comes from a message reaches the page through textContent or an attribute,
// never as HTML.
(function () {
    'use strict';

    const FEED_CAP = 200; // rows kept in the change feed
    const EVENTS_CAP = 50; // conflict/rejection events kept
    const SPARK_POINTS = 120; // seconds of throughput history in the sparkline
    const RATE_WINDOW_MS = 5000; // the client-side rate is the mean over this sliding window
    const RENDER_MS = 100; // redraw at most this often
    const STORE_KEY = 'edgesync-dashboard';
    const ID_RE = /^[A-Za-z0-9_.-]{1,64}$/; // tenant and device ids (docs/protocol.md)
    const OPS = { insert: 'op-insert', update: 'op-update', delete: 'op-delete' };

    const $ = (id) => document.getElementById(id);

    // ---- state ---------------------------------------------------------------------------

    const devices = new Map(); // device id -> { s: last state object, at: ms received }
    const consumers = new Map(); // consumer id -> { s: last stats object, at: ms received }
    let feedQueue = []; // changes received since the last redraw, oldest first
    let eventQueue = []; // conflict/resolved/rejected events since the last redraw
    const seen = { changes: 0, batches: 0, rejected: 0 };
    let clientPending = 0; // conflicts with outcome "pending" minus "resolved", seen here
    let arrivals = []; // [ms received, changes] of the last RATE_WINDOW_MS, oldest first
    const spark = []; // one throughput value per second, oldest first
    let client = null;
    let params = null;
    let renderTimer = null;
    let dirty = { devices: false, consumers: false, feed: false, events: false, counts: false };

    // ---- small helpers -------------------------------------------------------------------

    // Creates an element with a class and a text (both optional); text is never parsed as HTML.
    function el(tag, cls, text) {
        const e = document.createElement(tag);
        if (cls) e.className = cls;
        if (text !== undefined && text !== null) e.textContent = String(text);
        return e;
    }

    function td(text, cls, title) {
        const c = el('td', cls, text);
        if (title) c.setAttribute('title', title);
        return c;
    }

    function isObj(v) {
        return v !== null && typeof v === 'object' && !Array.isArray(v);
    }

    function num(v) {
        return typeof v === 'number' && Number.isFinite(v) ? v : null;
    }

    function fmtNum(v, digits) {
        const n = num(v);
        if (n === null) return '—';
        return n.toLocaleString('en-US', { maximumFractionDigits: digits === undefined ? 0 : digits });
    }

    function pad(n, w) {
        return String(n).padStart(w || 2, '0');
    }

    // "14:03:07.512" in local time.
    function clock(ms) {
        const n = num(ms);
        if (n === null) return '—';
        const d = new Date(n);
        return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
    }

    function iso(ms) {
        const n = num(ms);
        return n === null ? '' : new Date(n).toISOString();
    }

    // "just now", "12 s ago", "4 min ago", "3 h ago", or a date.
    function ago(ms) {
        const n = num(ms);
        if (n === null || n <= 0) return '—';
        const s = Math.round((Date.now() - n) / 1000);
        if (s < 2) return 'just now';
        if (s < 90) return `${s} s ago`;
        if (s < 90 * 60) return `${Math.round(s / 60)} min ago`;
        if (s < 36 * 3600) return `${Math.round(s / 3600)} h ago`;
        return new Date(n).toLocaleString();
    }

    // One value of a row as text: NULL, numbers, strings quoted (blobs come as "x'HEX'").
    function valueText(v) {
        if (v === null || v === undefined) return 'NULL';
        if (typeof v === 'string') return JSON.stringify(v);
        if (typeof v === 'object') return JSON.stringify(v);
        return String(v);
    }

    // A field of an event as text: strings as they are, a missing one as "?".
    function str(v) {
        if (v === undefined || v === null) return '?';
        return typeof v === 'string' ? v : valueText(v);
    }

    function clip(s, max) {
        return s.length > max ? `${s.slice(0, max - 1)}…` : s;
    }

    // {"items": 3, "notes": 0} -> "items 3 · notes 0" (entries in key order).
    function tableMap(m) {
        if (!isObj(m)) return '';
        return Object.keys(m)
            .sort()
            .map((k) => `${k} ${valueText(m[k])}`)
            .join(' · ');
    }

    function setConn(state, text) {
        const c = $('conn');
        c.dataset.state = state;
        c.textContent = text;
    }

    // ---- parameters and sign-in ------------------------------------------------------------

    function defaultBroker() {
        if (location.protocol === 'https:') return `wss://${location.host}/mqtt`;
        if (location.protocol === 'http:') return `ws://${location.host}/mqtt`;
        return '';
    }

    function loadSaved() {
        try {
            const v = JSON.parse(sessionStorage.getItem(STORE_KEY) || '{}');
            return isObj(v) ? v : {};
        } catch (e) {
            return {};
        }
    }

    function save(p) {
        try {
            sessionStorage.setItem(STORE_KEY, JSON.stringify(p));
        } catch (e) {
            // Storage may be off (private mode): the page then asks again after a reload.
        }
    }

    // Reads the parameters from the fragment (first) and this tab's storage, then takes the
    // password out of the address bar, so it is neither shown nor kept in the history.
    function readParams() {
        const h = new URLSearchParams(location.hash.replace(/^#/, ''));
        const saved = loadSaved();
        const p = {
            broker: h.get('broker') || saved.broker || defaultBroker(),
            tenant: h.get('tenant') || saved.tenant || 'demo',
            user: h.get('user') || saved.user || 'viewer',
            pass: h.has('pass') ? h.get('pass') : typeof saved.pass === 'string' ? saved.pass : null,
        };
        save(p);
        rewriteHash(p);
        return p;
    }

    function rewriteHash(p) {
        const h = new URLSearchParams();
        h.set('tenant', p.tenant);
        h.set('user', p.user);
        if (p.broker !== defaultBroker()) h.set('broker', p.broker);
        history.replaceState(null, '', `${location.pathname}${location.search}#${h.toString()}`);
    }

    function showLogin(p, error) {
        $('f-broker').value = p.broker;
        $('f-tenant').value = p.tenant;
        $('f-user').value = p.user;
        $('f-pass').value = '';
        $('login-error').hidden = !error;
        $('login-error').textContent = error || '';
        $('login').hidden = false;
        $('f-pass').focus();
    }

    function checkParams(p) {
        if (!ID_RE.test(p.tenant)) return 'the tenant must be 1-64 characters of A-Z a-z 0-9 _ . -';
        if (!/^wss?:\/\/[^\s]+$/.test(p.broker)) return 'the broker must be a ws:// or wss:// address';
        if (!p.user) return 'a user name is needed';
        return null;
    }

    function showWhere(p) {
        $('tenant').textContent = p.tenant;
        $('broker').textContent = p.broker;
        $('user').textContent = p.user;
        document.querySelectorAll('[data-topic]').forEach((e) => {
            e.textContent = `sync/${p.tenant}/${e.dataset.topic}`;
        });
        document.title = `edgesync live · ${p.tenant}`;
    }

    // ---- MQTT ------------------------------------------------------------------------------

    function topics(p) {
        return [`sync/${p.tenant}/dev/+/state`, `sync/${p.tenant}/events/#`, `sync/${p.tenant}/cloud/+/stats`];
    }

    function randomId() {
        const b = new Uint8Array(6);
        crypto.getRandomValues(b);
        return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    }

    // MQTT 3.1.1 CONNACK 4/5 and MQTT 5 reason codes 134/135: the broker refused the login.
    function isAuthError(err) {
        return err && [4, 5, 134, 135].includes(err.code);
    }

    function connect(p) {
        if (client) {
            client.end(true);
            client = null;
        }
        resetData();
        showWhere(p);
        setConn('connecting', 'connecting…');
        const c = mqtt.connect(p.broker, {
            username: p.user,
            password: p.pass || undefined,
            clientId: `dashboard-${randomId()}`,
            protocolVersion: 5,
            clean: true,
            keepalive: 30,
            reconnectPeriod: 2000,
            connectTimeout: 8000,
        });
        client = c;
        c.on('connect', () => {
            if (c !== client) return;
            setConn('connected', 'connected');
            // Retained states and stats come again after a reconnect: start from them.
            devices.clear();
            consumers.clear();
            dirty.devices = dirty.consumers = dirty.counts = true;
            schedule();
            c.subscribe(topics(p), { qos: 1 }, (err, granted) => {
                if (c !== client) return;
                if (err) {
                    setConn('error', `subscribe failed: ${err.message}`);
                    return;
                }
                const refused = (granted || []).filter((g) => g.qos >= 128).map((g) => g.topic);
                if (refused.length) setConn('error', `connected, but may not read ${refused.join(', ')}`);
            });
        });
        c.on('reconnect', () => c === client && setConn('connecting', 'reconnecting…'));
        c.on('offline', () => c === client && setConn('offline', 'offline, retrying'));
        c.on('close', () => {
            if (c === client && $('conn').dataset.state === 'connected') setConn('offline', 'disconnected, retrying');
        });
        c.on('error', (err) => {
            if (c !== client) return;
            if (isAuthError(err)) {
                c.end(true);
                client = null;
                setConn('error', 'login refused');
                showLogin(p, `The broker refused the login of "${p.user}": ${err.message}`);
                return;
            }
            setConn('error', err && err.message ? err.message : 'connection error');
        });
        c.on('message', (topic, payload, packet) => c === client && onMessage(p, topic, payload, packet));
    }

    function resetData() {
        devices.clear();
        consumers.clear();
        feedQueue = [];
        eventQueue = [];
        seen.changes = seen.batches = seen.rejected = 0;
        clientPending = 0;
        arrivals = [];
        spark.length = 0;
        $('feed').replaceChildren();
        $('conflicts').replaceChildren();
        dirty = { devices: true, consumers: true, feed: true, events: true, counts: true };
        schedule();
    }

    function parse(payload) {
        try {
            return JSON.parse(new TextDecoder().decode(payload));
        } catch (e) {
            return undefined;
        }
    }

    function onMessage(p, topic, payload) {
        const parts = topic.split('/');
        if (parts.length < 4 || parts[0] !== 'sync' || parts[1] !== p.tenant) return;
        const now = Date.now();
        if (parts[2] === 'dev' && parts[4] === 'state' && parts.length === 5) {
            // An empty retained message clears a device's state: forget the device.
            if (payload.length === 0) devices.delete(parts[3]);
            else {
                const s = parse(payload);
                if (!isObj(s)) return;
                devices.set(parts[3], { s, at: now });
            }
            dirty.devices = dirty.counts = true;
        } else if (parts[2] === 'cloud' && parts[4] === 'stats' && parts.length === 5) {
            if (payload.length === 0) consumers.delete(parts[3]);
            else {
                const s = parse(payload);
                if (!isObj(s)) return;
                consumers.set(parts[3], { s, at: now });
            }
            dirty.consumers = dirty.counts = true;
        } else if (parts[2] === 'events' && parts.length === 4) {
            const e = parse(payload);
            if (!isObj(e)) return;
            onEvent(e, now);
        } else {
            return;
        }
        schedule();
    }

    function addChanges(list, now) {
        seen.changes += list.length;
        arrivals.push([now, list.length]);
        feedQueue.push(...list);
        // Only the newest FEED_CAP can be shown: drop the rest before drawing them.
        if (feedQueue.length > FEED_CAP) feedQueue = feedQueue.slice(-FEED_CAP);
        dirty.feed = dirty.counts = true;
    }

    function onEvent(e, now) {
        switch (e.event) {
            case 'changes':
                addChanges(Array.isArray(e.changes) ? e.changes.filter(isObj) : [], now);
                break;
            case 'change': // one change per message, from a cloud older than "changes"
                addChanges([e], now);
                break;
            case 'batch':
                seen.batches += 1;
                dirty.counts = true;
                break;
            case 'conflict':
                if (e.outcome === 'pending') clientPending += 1;
                eventQueue.push(e);
                dirty.events = dirty.counts = true;
                break;
            case 'resolved':
                clientPending = Math.max(0, clientPending - 1);
                eventQueue.push(e);
                dirty.events = dirty.counts = true;
                break;
            case 'rejected':
                seen.rejected += 1;
                eventQueue.push(e);
                dirty.events = dirty.counts = true;
                break;
            default:
                break;
        }
        if (eventQueue.length > EVENTS_CAP) eventQueue = eventQueue.slice(-EVENTS_CAP);
    }

    // ---- drawing -----------------------------------------------------------------------------

    function schedule() {
        if (renderTimer === null) renderTimer = setTimeout(render, RENDER_MS);
    }

    function render() {
        renderTimer = null;
        if (dirty.devices) renderDevices();
        if (dirty.consumers) renderConsumers();
        if (dirty.feed) renderFeed();
        if (dirty.events) renderEvents();
        if (dirty.counts) renderCounts();
        dirty = { devices: false, consumers: false, feed: false, events: false, counts: false };
    }

    function deviceBadge(s) {
        if (s.online === true) return ['online', 'badge on'];
        if (s.clean === false) return ['connection lost', 'badge lost'];
        return ['offline', 'badge off'];
    }

    function renderDevices() {
        const rows = [];
        const ids = Array.from(devices.keys()).sort();
        for (const id of ids) {
            const s = devices.get(id).s;
            const tr = el('tr');
            tr.dataset.device = id;
            tr.dataset.online = String(s.online === true);
            tr.append(td(id, 'ident'));
            const [label, cls] = deviceBadge(s);
            const b = td('');
            b.append(el('span', cls, label));
            tr.append(b);
            tr.append(td(fmtNum(s.pending), 'num'));
            tr.append(td(num(s.last_sync) === null ? '—' : ago(s.last_sync), 'rel', iso(s.last_sync)));
            tr.dataset.lastSync = num(s.last_sync) === null ? '' : String(s.last_sync);
            const lag = isObj(s.lag) ? Object.values(s.lag).reduce((a, v) => a + (num(v) || 0), 0) : null;
            tr.append(td(lag === null ? '—' : tableMap(s.lag), lag ? 'warn' : '', lag === null ? '' : `${lag} behind`));
            tr.append(td(isObj(s.cursor) ? tableMap(s.cursor) : '—', 'small'));
            tr.append(td(s.version === undefined ? '—' : String(s.version), 'small'));
            tr.append(td(ago(s.ts), 'rel', iso(s.ts)));
            tr.lastChild.dataset.ts = String(num(s.ts) || '');
            rows.push(tr);
        }
        $('devices').replaceChildren(...rows);
        $('devices-empty').hidden = rows.length > 0;
    }

    // A consumer counts while it says it is online and has reported in the last three
    // intervals (a consumer killed without its Last Will would otherwise count forever).
    function freshConsumers() {
        const now = Date.now();
        const out = [];
        for (const { s, at } of consumers.values()) {
            const interval = (num(s.interval_s) || 5) * 1000;
            if (s.online !== false && now - at < 3 * interval + 1000) out.push(s);
        }
        return out;
    }

    function renderConsumers() {
        const ids = Array.from(consumers.keys()).sort();
        const fresh = new Set(freshConsumers());
        const rows = ids.map((id) => {
            const s = consumers.get(id).s;
            const tr = el('tr');
            tr.dataset.consumer = id;
            tr.append(td(id, 'ident'));
            const b = td('');
            b.append(
                fresh.has(s)
                    ? el('span', 'badge on', 'online')
                    : el('span', s.online === false ? 'badge off' : 'badge lost', s.online === false ? 'offline' : 'silent'),
            );
            tr.append(b);
            tr.append(td(fmtNum(s.changes_per_s, 1), 'num'));
            const a = isObj(s.apply_ms) ? s.apply_ms : {};
            tr.append(td(`${fmtNum(a.p50, 2)} / ${fmtNum(a.p99, 2)} / ${fmtNum(a.max, 2)} ms`, 'num'));
            tr.append(td(fmtNum(s.devices_active), 'num'));
            tr.append(td(fmtNum(s.batches_applied), 'num'));
            tr.append(td(fmtNum(s.changes_applied), 'num'));
            tr.append(td(`${fmtNum(s.conflicts)} (${fmtNum(s.conflicts_pending)})`, 'num'));
            tr.append(td(fmtNum(s.rejections), 'num'));
            tr.append(td(ago(s.ts), 'rel', iso(s.ts)));
            return tr;
        });
        $('consumers').replaceChildren(...rows);
        $('consumers-section').hidden = rows.length === 0;
    }

    function colsText(c) {
        if (c.truncated === true) return 'row too large to show';
        if (!isObj(c.cols)) return '';
        return Object.keys(c.cols)
            .map((k) => `${k}=${valueText(c.cols[k])}`)
            .join(', ');
    }

    function feedRow(c) {
        const tr = el('tr', 'fresh');
        const key = c.key === undefined ? '' : typeof c.key === 'string' ? c.key : valueText(c.key);
        tr.dataset.table = String(c.table === undefined ? '' : c.table);
        tr.dataset.key = key;
        tr.append(td(clock(c.ts), 'time', iso(c.ts)));
        tr.append(td(c.device === undefined ? '' : String(c.device), 'ident'));
        tr.append(td(tr.dataset.table, 'ident'));
        tr.append(td(clip(key, 60), 'key', key));
        const op = typeof c.op === 'string' ? c.op : '';
        const o = td('');
        o.append(el('span', `badge ${OPS[op] || 'op-other'}`, op || '?'));
        tr.append(o);
        const cols = colsText(c);
        tr.append(td(clip(cols, 160), 'cols', cols.length > 160 ? clip(cols, 2000) : ''));
        tr.append(td(fmtNum(c.version), 'num'));
        return tr;
    }

    function renderFeed() {
        const body = $('feed');
        if (feedQueue.length) {
            const frag = document.createDocumentFragment();
            for (let i = feedQueue.length - 1; i >= 0; i--) frag.append(feedRow(feedQueue[i]));
            feedQueue = [];
            // The previous batch is no longer new.
            body.querySelectorAll('tr.fresh').forEach((r) => r.classList.remove('fresh'));
            body.prepend(frag);
            while (body.rows.length > FEED_CAP) body.deleteRow(-1);
        }
        $('feed-empty').hidden = body.rows.length > 0;
    }

    function eventText(e) {
        switch (e.event) {
            case 'conflict':
                return (
                    `${str(e.table)} ${str(e.key)}: ${str(e.policy)} → ${str(e.outcome)} ` +
                    `(base v${str(e.base_version)}, server v${str(e.server_version)} ` +
                    `by ${str(e.server_origin)}) from ${str(e.device)}`
                );
            case 'resolved':
                return (
                    `${str(e.table)} ${str(e.key)}: conflict #${str(e.conflict)} resolved, ` +
                    `took ${str(e.take)} (by ${str(e.by)}) → v${str(e.version)}`
                );
            case 'rejected':
                return (
                    `${str(e.device)}: batch ${str(e.first_seq)}` +
                    `${e.records === undefined ? '' : ` (${str(e.records)} records)`} rejected: ${str(e.reason)}` +
                    `${e.acked === false ? ', not acknowledged' : ''}`
                );
            default:
                return '';
        }
    }

    function renderEvents() {
        const list = $('conflicts');
        const frag = document.createDocumentFragment();
        for (let i = eventQueue.length - 1; i >= 0; i--) {
            const e = eventQueue[i];
            const li = el('li', e.event === 'conflict' && e.outcome === 'pending' ? 'pending' : '');
            li.dataset.event = e.event;
            li.append(el('span', 'time', clock(e.ts)));
            li.append(el('span', `badge ev-${e.event}`, e.event === 'conflict' ? `conflict: ${e.outcome}` : e.event));
            li.append(el('span', 'text', eventText(e)));
            frag.append(li);
        }
        eventQueue = [];
        list.prepend(frag);
        while (list.children.length > EVENTS_CAP) list.lastChild.remove();
        $('conflicts-empty').hidden = list.children.length > 0;
    }

    function sum(list, f) {
        return list.reduce((a, s) => a + (num(f(s)) || 0), 0);
    }

    // Throughput and its source: the consumers' own figure when they report one, else the
    // changes this page received in the last RATE_WINDOW_MS.
    function currentRate() {
        const fresh = freshConsumers();
        if (fresh.some((s) => num(s.changes_per_s) !== null)) {
            return { rate: sum(fresh, (s) => s.changes_per_s), source: "from the consumers' stats" };
        }
        const since = Date.now() - RATE_WINDOW_MS;
        while (arrivals.length && arrivals[0][0] <= since) arrivals.shift();
        const n = arrivals.reduce((a, x) => a + x[1], 0);
        return { rate: n / (RATE_WINDOW_MS / 1000), source: `from the change feed, last ${RATE_WINDOW_MS / 1000} s` };
    }

    function renderCounts() {
        const list = Array.from(devices.values());
        $('online-count').textContent = String(list.filter((d) => d.s.online === true).length);
        $('device-count').textContent = String(list.length);
        const { rate, source } = currentRate();
        $('rate').textContent = fmtNum(rate, rate < 10 ? 1 : 0);
        $('rate-source').textContent = source;
        const fresh = freshConsumers();
        const withPending = fresh.filter((s) => num(s.conflicts_pending) !== null);
        if (withPending.length) {
            // Read from the store all consumers share: every consumer reports the same count.
            $('pending-conflicts').textContent = fmtNum(Math.max(...withPending.map((s) => num(s.conflicts_pending))));
            $('conflicts-source').textContent = "from the consumers' stats";
        } else {
            $('pending-conflicts').textContent = fmtNum(clientPending);
            $('conflicts-source').textContent = 'conflicts seen since the page opened, minus resolutions';
        }
        $('pending-conflicts').classList.toggle('warn', $('pending-conflicts').textContent !== '0');
        const a = fresh.map((s) => s.apply_ms).filter(isObj);
        $('apply').textContent = a.length
            ? `apply p50 ${fmtNum(Math.max(...a.map((x) => num(x.p50) || 0)), 2)} ms · ` +
              `p99 ${fmtNum(Math.max(...a.map((x) => num(x.p99) || 0)), 2)} ms · ` +
              `max ${fmtNum(Math.max(...a.map((x) => num(x.max) || 0)), 2)} ms`
            : '';
        $('seen-changes').textContent = fmtNum(seen.changes);
        $('seen-batches').textContent = fmtNum(seen.batches);
        $('seen-rejected').textContent = fmtNum(seen.rejected);
    }

    function drawSpark() {
        const cv = $('spark');
        const dpr = window.devicePixelRatio || 1;
        const w = cv.clientWidth || cv.width;
        const h = cv.clientHeight || cv.height;
        if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
            cv.width = Math.round(w * dpr);
            cv.height = Math.round(h * dpr);
        }
        const g = cv.getContext('2d');
        g.setTransform(dpr, 0, 0, dpr, 0, 0);
        g.clearRect(0, 0, w, h);
        g.strokeStyle = '#d5dbe3';
        g.lineWidth = 1;
        g.beginPath();
        g.moveTo(0, h - 0.5);
        g.lineTo(w, h - 0.5);
        g.stroke();
        if (spark.length < 2) return;
        const max = Math.max(1, ...spark);
        const step = w / (SPARK_POINTS - 1);
        const x0 = w - (spark.length - 1) * step;
        const y = (v) => h - 2 - (v / max) * (h - 6);
        g.beginPath();
        g.moveTo(x0, h);
        spark.forEach((v, i) => g.lineTo(x0 + i * step, y(v)));
        g.lineTo(w, h);
        g.closePath();
        g.fillStyle = 'rgba(37, 99, 235, 0.15)';
        g.fill();
        g.beginPath();
        spark.forEach((v, i) => (i ? g.lineTo(x0 + i * step, y(v)) : g.moveTo(x0, y(v))));
        g.strokeStyle = '#2563eb';
        g.lineWidth = 1.5;
        g.stroke();
        g.fillStyle = '#64748b';
        g.font = '10px system-ui, sans-serif';
        g.textBaseline = 'top';
        g.fillText(`peak ${fmtNum(max, max < 10 ? 1 : 0)}/s`, 2, 1);
    }

    // Once a second: a throughput sample, relative times, and consumers going silent.
    function tick() {
        if (client && client.connected) {
            spark.push(currentRate().rate);
            if (spark.length > SPARK_POINTS) spark.shift();
        }
        drawSpark();
        dirty.devices = dirty.consumers = dirty.counts = true;
        schedule();
    }

    // ---- start -------------------------------------------------------------------------------

    function start() {
        $('feed-cap').textContent = String(FEED_CAP);
        $('login').addEventListener('submit', (ev) => {
            ev.preventDefault();
            const p = {
                broker: $('f-broker').value.trim(),
                tenant: $('f-tenant').value.trim(),
                user: $('f-user').value.trim(),
                pass: $('f-pass').value,
            };
            const bad = checkParams(p);
            if (bad) {
                showLogin(p, bad);
                return;
            }
            $('login').hidden = true;
            params = p;
            save(p);
            rewriteHash(p);
            connect(p);
        });
        if (typeof mqtt === 'undefined') {
            setConn('error', 'mqtt.min.js did not load (see docs/dashboard.md)');
            return;
        }
        params = readParams();
        showWhere(params);
        const bad = checkParams(params);
        if (bad || params.pass === null) {
            setConn('idle', 'not connected');
            showLogin(params, bad);
        } else {
            connect(params);
        }
        setInterval(tick, 1000);
        drawSpark();
    }

    start();
})();
