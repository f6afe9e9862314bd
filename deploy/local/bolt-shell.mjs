#!/usr/bin/env node
// A tiny cypher-shell for the local demo (Debian has no cypher-shell): runs Cypher
// through the official JavaScript driver (neo4j-driver, from the Bolt test backend's
// node_modules) and prints each record as one JSON line.
//
//   node deploy/local/bolt-shell.mjs -a neo4j://127.0.0.1:7688 --token JWT [-q QUERY]
//   (without -q: one statement per line from stdin; an empty line is skipped)
//
// --token sends the JWT with the bearer scheme; --basic sends it as the password of
// basic auth (the user name is not used), as an application with a password field would.

import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../../tests/backends/bolt/package.json'));
const neo4j = require('neo4j-driver');

function usage(msg) {
  process.stderr.write(`bolt-shell: ${msg}\nusage: bolt-shell.mjs -a URI (--token JWT | --basic JWT) [-d DB] [-q QUERY]\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
const o = {};
for (let i = 0; i < args.length; i += 2) {
  const k = { '-a': 'uri', '--token': 'token', '--basic': 'basic', '-d': 'db', '-q': 'query' }[args[i]];
  if (!k || i + 1 >= args.length) usage(`bad argument ${args[i]}`);
  o[k] = args[i + 1];
}
if (!o.uri || (!o.token && !o.basic)) usage('-a and a token are required');

const auth = o.token ? neo4j.auth.bearer(o.token) : neo4j.auth.basic('app', o.basic);
const driver = neo4j.driver(o.uri, auth, { disableLosslessIntegers: true });

function plain(v) {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(plain);
  if (neo4j.isNode(v)) return { labels: v.labels, props: plain(v.properties) };
  if (neo4j.isRelationship(v)) return { type: v.type, props: plain(v.properties) };
  if (typeof v.toString === 'function' && v.constructor !== Object) return v.toString();
  return Object.fromEntries(Object.entries(v).map(([k, e]) => [k, plain(e)]));
}

async function run(session, query) {
  try {
    const res = await session.run(query);
    for (const r of res.records) process.stdout.write(`${JSON.stringify(plain(r.toObject()))}\n`);
    if (!res.records.length) process.stdout.write('(no records)\n');
    return true;
  } catch (e) {
    process.stdout.write(`error ${e.code}: ${e.message}\n`);
    return false;
  }
}

const session = driver.session(o.db ? { database: o.db } : {});
let ok = true;
if (o.query) {
  ok = await run(session, o.query);
} else {
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) if (line.trim()) ok = (await run(session, line)) && ok;
}
await session.close();
await driver.close();
process.exit(ok ? 0 : 1);
