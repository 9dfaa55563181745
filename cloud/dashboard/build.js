#!/usr/bin/env node
// build.js - put the dashboard's static files into one folder that a web server (Mosquitto's
// websockets listener with http_dir, see docs/dashboard.md) serves as they are.
//
// Usage: node build.js OUTDIR        (npm run build: OUTDIR is dist/)
//
// Copies index.html, app.js and style.css from this folder, and mqtt.js's browser bundle
// (node_modules/mqtt/dist/mqtt.min.js, installed by `npm ci` from package-lock.json) with its
// licence, so the page loads nothing from anywhere but the server that serves it. OUTDIR is
// created if needed; files of an earlier build are overwritten, nothing else in it is touched.
// Exits 1 with a message when a file is missing (most often: `npm ci` was not run here).
'use strict';

const fs = require('fs');
const path = require('path');

const here = __dirname;
const files = [
    // [source relative to this folder, name in OUTDIR]
    ['index.html', 'index.html'],
    ['app.js', 'app.js'],
    ['style.css', 'style.css'],
    ['node_modules/mqtt/dist/mqtt.min.js', 'mqtt.min.js'],
    ['node_modules/mqtt/LICENSE.md', 'mqtt.LICENSE.md'],
];

function die(msg) {
    process.stderr.write(`dashboard build: error: ${msg}\n`);
    process.exit(1);
}

if (process.argv.length !== 3 || process.argv[2].startsWith('-')) {
    die('usage: node build.js OUTDIR');
}
const out = path.resolve(process.argv[2]);

for (const [src] of files) {
    if (!fs.existsSync(path.join(here, src))) {
        die(
            src.startsWith('node_modules/')
                ? `${src} not found: run 'npm ci' in ${here} first`
                : `${path.join(here, src)} not found`,
        );
    }
}
fs.mkdirSync(out, { recursive: true });
for (const [src, dst] of files) {
    fs.copyFileSync(path.join(here, src), path.join(out, dst));
}
process.stdout.write(`dashboard build: ${files.length} files in ${out}\n`);
