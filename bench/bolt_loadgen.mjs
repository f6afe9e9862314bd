#!/usr/bin/env node
// The Bolt load generator of bench/ (kind bolt): the official JavaScript
// driver (neo4j-driver, installed in tests/backends/bolt), C clients in one
// process, each with its own driver and connection, each running N
// parameterized auto-commit statements back to back (one RUN + PULL round
// trip each), timing every one.
//
//   node bench/bolt_loadgen.mjs --uri bolt://H:P --op read|write
//        [--clients C] [--ops N] [--seed K] [--warmup W] [--id-base B]
//        [--self-scope PROPERTY=TENANT]
//        [--baseline-uri bolt://H:P [--baseline-self-scope PROPERTY=TENANT]]
//   credentials from the environment: BOLT_LOADGEN_TOKEN (bearer) or
//   BOLT_LOADGEN_USER + BOLT_LOADGEN_PASSWORD (basic); the baseline's from
//   BOLT_LOADGEN_BASELINE_TOKEN, or _BASELINE_USER + _BASELINE_PASSWORD
//
//   start: C clients connect (HELLO/LOGON), client 0 creates K nodes
//          (:Item {id: B + i, name, v}) through the target, every client
//          runs W untimed statements
//     --> "ready" on stdout; waits for a line on stdin (the harness reads the
//         proxy's CPU counters in between, so connecting is not charged)
//     --> the C clients run N statements each, timing every one
//     --> "result op=.. clients=.. ops=.. errors=.. seconds=.. ops_per_s=..
//          mean_us=.. p50_us=.. p99_us=.. max_us=.." on stdout ("baseline
//          ..." likewise, with --baseline-uri); exit 0 (3 when a statement
//          failed: "error ..." on stderr)
//
// With --baseline-uri every client also has a driver to the baseline (the
// server directly) and alternates: statement i on the target and on the
// baseline, in turn first, so that both paths see the same machine at the
// same moments (bench/mongo_loadgen.c does the same; ops_per_s of a paired
// run is C / mean latency).
//
// Statements: read  MATCH (n:Item {id: $id}) RETURN n.name AS name, n.v AS v
//             (one record expected), write  CREATE (n:Item {id: $id, name:
//             $name, v: $v}) (a new id every time). --self-scope sends them
//             as tenantgate's property isolation forwards them (the tenant
//             property in every node pattern, the tenant as a parameter), so
//             the server does the same work on every path, and the nodes
//             seeded through tenantgate are the baseline's too. The ids start
//             at --id-base, so every run works on nodes of its own.

import { createRequire } from 'node:module';
import process from 'node:process';
import readline from 'node:readline';

const require = createRequire(new URL('../tests/backends/bolt/package.json', import.meta.url));
const neo4j = require('neo4j-driver');

// The reserved parameter of policy/cypher_rewrite.h (TG_CYPHER_TENANT_PARAM).
const TENANT_PARAM = '__tenantgate_tenant';

function usage(msg) {
  process.stderr.write(`bolt_loadgen: ${msg}\n` +
    'usage: bolt_loadgen.mjs --uri URI --op read|write [--clients C] [--ops N] [--seed K] ' +
    '[--warmup W] [--id-base B] [--self-scope PROPERTY=TENANT] ' +
    '[--baseline-uri URI [--baseline-self-scope PROPERTY=TENANT]]\n');
  process.exit(2);
}

function scopeArg(v) {
  const eq = v.indexOf('=');
  if (eq <= 0 || eq === v.length - 1) usage('a scope is PROPERTY=TENANT');
  return { prop: v.slice(0, eq), tenant: v.slice(eq + 1) };
}

function parseArgs(argv) {
  const o = {
    op: null, clients: 1, ops: 1000, seed: 100, warmup: 20, idBase: 0,
    paths: [{ uri: null, scope: null, env: 'BOLT_LOADGEN_' }, { uri: null, scope: null, env: 'BOLT_LOADGEN_BASELINE_' }],
  };
  const ints = { '--clients': ['clients', 1, 256], '--ops': ['ops', 1, 1e7], '--seed': ['seed', 1, 1e5],
    '--warmup': ['warmup', 0, 1e5], '--id-base': ['idBase', 0, 2 ** 50] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (v === undefined) usage(`${a} needs a value`);
    if (a === '--uri') o.paths[0].uri = v;
    else if (a === '--baseline-uri') o.paths[1].uri = v;
    else if (a === '--op') o.op = v;
    else if (a === '--self-scope') o.paths[0].scope = scopeArg(v);
    else if (a === '--baseline-self-scope') o.paths[1].scope = scopeArg(v);
    else if (a in ints) {
      const [k, lo, hi] = ints[a];
      const n = Number(v);
      if (!Number.isInteger(n) || n < lo || n > hi) usage(`${a} ${v}: out of range`);
      o[k] = n;
    } else usage(`unknown option ${a}`);
  }
  if (!o.paths[0].uri || !['read', 'write'].includes(o.op)) usage('--uri and --op read|write are required');
  if (!o.paths[1].uri) {
    if (o.paths[1].scope) usage('--baseline-self-scope needs --baseline-uri');
    o.paths.pop();
  }
  return o;
}

function auth(prefix) {
  const env = process.env;
  if (env[`${prefix}TOKEN`]) return neo4j.auth.bearer(env[`${prefix}TOKEN`]);
  if (env[`${prefix}USER`]) return neo4j.auth.basic(env[`${prefix}USER`], env[`${prefix}PASSWORD`] || '');
  usage(`set ${prefix}TOKEN, or ${prefix}USER and ${prefix}PASSWORD`);
}

// The statements of a path, plain or as tenantgate forwards them in property mode.
function statements(scope) {
  const t = scope ? `, ${scope.prop}: $${TENANT_PARAM}` : '';
  return {
    read: `MATCH (n:Item {id: $id${t}}) RETURN n.name AS name, n.v AS v`,
    write: `CREATE (n:Item {id: $id, name: $name, v: $v${t}})`,
  };
}

// One client's connection over one path.
class Conn {
  constructor(o, path, slot) {
    this.o = o;
    this.scope = path.scope;
    this.slot = slot; // distinct per client and path: the ids it creates
    this.text = statements(path.scope);
    this.driver = neo4j.driver(path.uri, auth(path.env), { maxConnectionPoolSize: 1, disableLosslessIntegers: true });
    this.session = this.driver.session();
    this.errors = 0;
    this.firstError = '';
    this.written = 0; // writes so far (warm-up included): every CREATE gets a new id
    this.lat = new Float64Array(o.ops);
  }

  params(p) {
    if (this.scope) p[TENANT_PARAM] = this.scope.tenant;
    return p;
  }

  async op(i) {
    const o = this.o;
    try {
      if (o.op === 'read') {
        const id = o.idBase + (i % o.seed);
        const r = await this.session.run(this.text.read, this.params({ id: neo4j.int(id) }));
        if (r.records.length !== 1) throw new Error(`read returned ${r.records.length} records`);
      } else {
        const id = o.idBase + o.seed + this.slot * 10000000 + this.written++;
        await this.session.run(this.text.write,
          this.params({ id: neo4j.int(id), name: `item-${id}`, v: neo4j.int(i) }));
      }
      return true;
    } catch (e) {
      if (this.errors++ === 0) this.firstError = `${e.code || ''} ${e.message}`.trim();
      return false;
    }
  }

  async seed() {
    const o = this.o;
    for (let i = 0; i < o.seed; i++) {
      const id = o.idBase + i;
      await this.session.run(this.text.write, this.params({ id: neo4j.int(id), name: `item-${id}`, v: neo4j.int(i) }));
    }
  }

  async close() {
    await this.session.close().catch(() => {});
    await this.driver.close().catch(() => {});
  }
}

function nextLine() {
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin });
    let done = false;
    rl.once('line', (l) => { done = true; rl.close(); resolve(l); });
    rl.once('close', () => { if (!done) resolve(null); });
  });
}

// Prints one path's figures ("result" or "baseline"); returns its error count.
function report(o, conns, label, seconds) {
  const all = new Float64Array(o.clients * o.ops);
  let errors = 0;
  conns.forEach((c, i) => {
    all.set(c.lat, i * o.ops);
    if (c.errors && !errors) {
      process.stderr.write(`error ${label} client ${i}: ${c.errors} statements failed, first: ${c.firstError}\n`);
    }
    errors += c.errors;
  });
  all.sort();
  const total = all.length;
  const mean = all.reduce((a, b) => a + b, 0) / total;
  const rate = o.paths.length > 1 ? o.clients * 1e6 / mean : total / seconds;
  const f = (x) => x.toFixed(1);
  process.stdout.write(`${label} op=${o.op} clients=${o.clients} ops=${total} errors=${errors} ` +
    `seconds=${seconds.toFixed(6)} ops_per_s=${f(rate)} mean_us=${f(mean)} ` +
    `p50_us=${f(all[Math.floor(total / 2)])} p99_us=${f(all[Math.floor(total * 0.99)])} ` +
    `max_us=${f(all[total - 1])}\n`);
  return errors;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const np = o.paths.length;
  // clients[i][k]: client i over path k (0 the target, 1 the baseline)
  const clients = Array.from({ length: o.clients }, (_, i) => o.paths.map((p, k) => new Conn(o, p, i * np + k)));
  const all = clients.flat();
  try {
    try {
      if (o.op === 'read') await clients[0][0].seed();
    } catch (e) {
      process.stderr.write(`error setup (seed): ${e.code || ''} ${e.message}\n`);
      return 3;
    }
    await Promise.all(clients.map(async (cs) => {
      for (let i = 0; i < o.warmup; i++) for (const c of cs) await c.op(i);
    }));
    const bad = all.find((c) => c.errors);
    if (bad) {
      process.stderr.write(`error setup: ${bad.firstError}\n`);
      return 3;
    }
    process.stdout.write('ready\n');
    if ((await nextLine()) === null) return 3;
    const t0 = process.hrtime.bigint();
    await Promise.all(clients.map(async (cs, ci) => {
      for (let i = 0; i < o.ops; i++) {
        for (let j = 0; j < np; j++) {
          const c = cs[(i + j) % np]; // the paths take turns going first
          const s = process.hrtime.bigint();
          await c.op(ci * 7919 + i);
          c.lat[i] = Number(process.hrtime.bigint() - s) / 1e3;
        }
      }
    }));
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    let errors = report(o, clients.map((cs) => cs[0]), 'result', seconds);
    if (np > 1) errors += report(o, clients.map((cs) => cs[1]), 'baseline', seconds);
    return errors ? 3 : 0;
  } finally {
    await Promise.all(all.map((c) => c.close()));
  }
}

main().then((rc) => process.exit(rc), (e) => {
  process.stderr.write(`error ${e.stack || e}\n`);
  process.exit(1);
});
