#!/usr/bin/env node
// tenantgate's Bolt test backend: a Bolt 4.4/5.x server that runs Cypher on
// the embedded kuzu engine. It exists only to test tenantgate's Bolt listener
// on machines where Neo4j cannot be installed; it is not a substitute for Neo4j.
//
//   node server.mjs --port P --user U --password W [options]
//
//   --host H               address to bind (127.0.0.1)
//   --port P               port; 0 picks a free one (7687)
//   --user U --password W  the one basic-auth account (required)
//   --schema FILE          Cypher run on every database when it is created
//                          (kuzu needs its node and rel tables declared)
//   --bolt-versions LIST   versions offered, e.g. "5.4,4.4" (5.6,5.4,5.3,5.2,5.1,5.0,4.4)
//   --advertise H:P        this server's address in ROUTE replies (the bound address)
//   --cluster-members LIST more routers listed in ROUTE replies, as a cluster
//                          would ("core1:7687,core2:7687"; "" for none)
//   --route-ttl S          routing table ttl (300)
//   --default-db NAME      the home database (neo4j)
//   --max-databases N      databases created on demand, at most (64)
//   --lock-timeout-ms MS   how long a write waits for another write transaction (10000)
//   --max-message-bytes N  largest request message (16 MiB)
//   --log-messages         one stderr line per request message (names, db, query text; never
//                          parameter values or credentials)
//
// Prints "listening on <port>" on stdout once it accepts connections. Stops on
// SIGTERM or SIGINT.

import fs from 'node:fs';
import net from 'node:net';
import process from 'node:process';

import { BoltConnection } from './lib/connection.mjs';
import { Databases } from './lib/executor.mjs';

const ALL_VERSIONS = '5.6,5.4,5.3,5.2,5.1,5.0,4.4';

function usage(msg) {
  process.stderr.write(`bolt test backend: ${msg}\n` +
    'usage: node server.mjs --port P --user U --password W [--host H] [--schema FILE] ' +
    '[--bolt-versions 5.4,4.4] [--advertise H:P] [--cluster-members a:1,b:2] [--log-messages]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = {
    host: '127.0.0.1',
    port: 7687,
    user: null,
    password: null,
    schema: null,
    versions: ALL_VERSIONS,
    advertise: null,
    clusterMembers: 'core1:7687,core2:7687',
    routeTtl: 300,
    defaultDb: 'neo4j',
    maxDatabases: 64,
    lockTimeoutMs: 10000,
    maxMessageBytes: 16 << 20,
    logMessages: false,
  };
  const flags = {
    '--host': ['host', String],
    '--port': ['port', Number],
    '--user': ['user', String],
    '--password': ['password', String],
    '--schema': ['schema', String],
    '--bolt-versions': ['versions', String],
    '--advertise': ['advertise', String],
    '--cluster-members': ['clusterMembers', String],
    '--route-ttl': ['routeTtl', Number],
    '--default-db': ['defaultDb', String],
    '--max-databases': ['maxDatabases', Number],
    '--lock-timeout-ms': ['lockTimeoutMs', Number],
    '--max-message-bytes': ['maxMessageBytes', Number],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--log-messages') {
      o.logMessages = true;
      continue;
    }
    const f = flags[a];
    if (!f) usage(`unknown option ${a}`);
    if (i + 1 >= argv.length) usage(`${a} needs a value`);
    const v = f[1](argv[++i]);
    if (typeof v === 'number' && !(Number.isInteger(v) && v >= 0)) usage(`${a} needs a non-negative integer`);
    o[f[0]] = v;
  }
  if (o.user === null || o.password === null) usage('--user and --password are required');
  if (o.port > 65535) usage('--port out of range');
  o.versions = o.versions.split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
    const m = /^(\d+)\.(\d+)$/.exec(s);
    if (!m) usage(`bad version ${s}`);
    const v = [Number(m[1]), Number(m[2])];
    if (!ALL_VERSIONS.split(',').includes(s)) usage(`version ${s} is not supported (${ALL_VERSIONS})`);
    return v;
  });
  if (!o.versions.length) usage('--bolt-versions is empty');
  o.clusterMembers = o.clusterMembers.split(',').map((s) => s.trim()).filter(Boolean);
  o.defaultDb = o.defaultDb.toLowerCase();
  return o;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  opts.agent = 'Neo4j/5.26.0';
  let schema = null;
  if (opts.schema) {
    try {
      schema = fs.readFileSync(opts.schema, 'utf8');
    } catch (e) {
      usage(`cannot read the schema: ${e.message}`);
    }
  }
  const databases = new Databases({
    schema,
    maxDatabases: opts.maxDatabases,
    bufferBytes: 64 << 20,
    maxDbBytes: 2 ** 31,
    lockTimeoutMs: opts.lockTimeoutMs,
    defaultDb: opts.defaultDb,
  });
  try {
    await databases.get(opts.defaultDb);
  } catch (e) {
    process.stderr.write(`bolt test backend: the schema failed on database ${opts.defaultDb}: ${e.message}\n`);
    process.exit(1);
  }

  let bookmarks = 0;
  let connections = 0;
  const server = {
    opts,
    databases,
    nextBookmark: (db) => `FB:kuzu:${db}:${++bookmarks}`,
    log: (line) => process.stderr.write(`${line}\n`),
  };
  const open = new Set();
  const listener = net.createServer((socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    const id = ++connections;
    new BoltConnection(socket, server, id); // eslint-disable-line no-new
  });
  listener.on('error', (e) => {
    process.stderr.write(`bolt test backend: ${e.message}\n`);
    process.exit(1);
  });
  listener.listen({ host: opts.host, port: opts.port }, () => {
    process.stdout.write(`listening on ${listener.address().port}\n`);
  });

  const stop = () => {
    listener.close();
    for (const s of open) s.destroy();
    setTimeout(() => process.exit(0), 100).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
