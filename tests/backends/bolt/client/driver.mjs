#!/usr/bin/env node
// Drives a Bolt server with the official JavaScript driver (neo4j-driver) from
// a JSON program on stdin, and prints the outcome of every step as JSON on
// stdout. The pytest suites use it to talk to the Bolt test backend, directly
// or through tenantgate.
//
// Program:
//   {"uri": "bolt://127.0.0.1:7687" | "neo4j://...",
//    "auth": {"scheme": "basic", "user": U, "password": W} | {"scheme": "bearer", "token": T},
//    "config": {driver config, e.g. "fetchSize": 100, "maxConnectionPoolSize": 1},
//    "steps": [step, ...]}
// Steps (each answers {"error": {code, message, retriable}} when it fails):
//   {"op": "verify"}                          -> {"server": {address, agent, protocolVersion}}
//   {"op": "run", "query", "params", "db", "mode": "read"|"write", "fetchSize", "session"}
//                                             -> a result (auto-commit)
//   {"op": "stream", same as run}             -> {"count", "first", "last", "keys"}, rows not kept
//   {"op": "tx", "queries": [{"query", "params"}], "end": "commit"|"rollback", "db", "mode", "session"}
//                                             -> {"results": [...]} (explicit transaction)
//   {"op": "managed", "kind": "read"|"write", "queries": [...], "db", "session"}
//                                             -> {"results": [...]} (executeRead / executeWrite)
//   {"op": "close_session", "session"}        -> {}
// A step with "session": NAME reuses that session until close_session.
// A result is {"keys", "records": [[...]], "summary": {"queryType", "database"}}.
//
// Values: in params a JSON integer is sent as a Bolt Integer, {"$float": x} as
// a Float, {"$date": "YYYY-MM-DD"} as a Date. In results an Integer is a JSON
// number (a string when outside 2^53), a Float {"$float": x}, a node
// {"$node": {id, elementId, labels, props}}, a relationship {"$rel": {id,
// elementId, type, start, end, startElementId, endElementId, props}}, a path
// {"$path": [node, rel, node, ...]}, temporal values {"$<Type>": "<ISO text>"},
// bytes {"$bytes": "<hex>"}.

import neo4j from 'neo4j-driver';

function readStdin() {
  return new Promise((resolve, reject) => {
    const parts = [];
    process.stdin.on('data', (d) => parts.push(d));
    process.stdin.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    process.stdin.on('error', reject);
  });
}

function toDriver(v) {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isInteger(v) ? neo4j.int(v) : v;
  if (Array.isArray(v)) return v.map(toDriver);
  if (typeof v === 'object') {
    if ('$float' in v) return Number(v.$float);
    if ('$int' in v) return neo4j.int(v.$int);
    if ('$date' in v) return neo4j.types.Date.fromStandardDate(new Date(`${v.$date}T00:00:00Z`));
    return Object.fromEntries(Object.entries(v).map(([k, e]) => [k, toDriver(e)]));
  }
  return v;
}

function intOut(i) {
  return neo4j.integer.inSafeRange(i) ? neo4j.integer.toNumber(i) : neo4j.integer.toString(i);
}

function props(p) {
  return Object.fromEntries(Object.entries(p).map(([k, e]) => [k, fromDriver(e)]));
}

function nodeOut(n) {
  return { $node: { id: intOut(n.identity), elementId: n.elementId, labels: n.labels, props: props(n.properties) } };
}

function relOut(r) {
  return {
    $rel: {
      id: intOut(r.identity),
      elementId: r.elementId,
      type: r.type,
      start: intOut(r.start),
      end: intOut(r.end),
      startElementId: r.startNodeElementId,
      endElementId: r.endNodeElementId,
      props: props(r.properties),
    },
  };
}

function fromDriver(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return { $float: v };
  if (neo4j.isInt(v)) return intOut(v);
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return v.map(fromDriver);
  if (v instanceof Int8Array || v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString('hex') };
  if (neo4j.isNode(v)) return nodeOut(v);
  if (neo4j.isRelationship(v)) return relOut(v);
  if (neo4j.isPath(v)) {
    const out = [nodeOut(v.start)];
    for (const s of v.segments) out.push(relOut(s.relationship), nodeOut(s.end));
    return { $path: out };
  }
  for (const [name, is] of [['Date', neo4j.isDate], ['DateTime', neo4j.isDateTime],
    ['LocalDateTime', neo4j.isLocalDateTime], ['Time', neo4j.isTime], ['LocalTime', neo4j.isLocalTime],
    ['Duration', neo4j.isDuration], ['Point', neo4j.isPoint]]) {
    if (is(v)) return { [`$${name}`]: v.toString() };
  }
  if (typeof v === 'object') return props(v);
  return String(v);
}

function errorOut(e) {
  return { error: { code: e.code || e.name || 'Error', message: String(e.message), retriable: neo4j.isRetryableError ? neo4j.isRetryableError(e) : undefined } };
}

async function collect(result) {
  const keys = await result.keys();
  const res = await result;
  return {
    keys,
    records: res.records.map((r) => r.keys.map((k) => fromDriver(r.get(k)))),
    summary: {
      queryType: res.summary.queryType,
      database: res.summary.database ? res.summary.database.name : null,
    },
  };
}

async function main() {
  const prog = JSON.parse(await readStdin());
  const a = prog.auth || {};
  const auth = a.scheme === 'bearer' ? neo4j.auth.bearer(a.token) :
    a.scheme === 'none' ? neo4j.auth.none() : neo4j.auth.basic(a.user, a.password);
  const driver = neo4j.driver(prog.uri, auth, {
    connectionTimeout: 15000,
    maxTransactionRetryTime: 5000,
    ...(prog.config || {}),
  });
  const sessions = new Map();
  const session = (step) => {
    const opts = {};
    if (step.db) opts.database = step.db;
    if (step.fetchSize) opts.fetchSize = step.fetchSize;
    opts.defaultAccessMode = step.mode === 'read' ? neo4j.session.READ : neo4j.session.WRITE;
    if (!step.session) return { s: driver.session(opts), temp: true };
    if (!sessions.has(step.session)) sessions.set(step.session, driver.session(opts));
    return { s: sessions.get(step.session), temp: false };
  };
  const outputs = [];
  for (const step of prog.steps || []) {
    let out;
    const { s, temp } = step.op === 'verify' || step.op === 'close_session' ? { s: null, temp: false } : session(step);
    try {
      switch (step.op) {
        case 'verify': {
          const info = await driver.getServerInfo(step.db ? { database: step.db } : undefined);
          out = { server: { address: info.address, agent: info.agent, protocolVersion: String(info.protocolVersion) } };
          break;
        }
        case 'run':
          out = await collect(s.run(step.query, toDriver(step.params || {})));
          break;
        case 'stream': {
          let count = 0;
          let first = null;
          let last = null;
          let keys = [];
          await new Promise((resolve, reject) => {
            s.run(step.query, toDriver(step.params || {})).subscribe({
              onKeys: (k) => { keys = k; },
              onNext: (r) => {
                const row = r.keys.map((k) => fromDriver(r.get(k)));
                if (count === 0) first = row;
                last = row;
                count++;
              },
              onCompleted: resolve,
              onError: reject,
            });
          });
          out = { count, first, last, keys };
          break;
        }
        case 'tx': {
          const tx = await s.beginTransaction();
          const results = [];
          try {
            for (const q of step.queries) results.push(await collect(tx.run(q.query, toDriver(q.params || {}))));
            if (step.end === 'rollback') await tx.rollback();
            else await tx.commit();
          } catch (e) {
            if (tx.isOpen()) await tx.rollback().catch(() => {});
            throw e;
          }
          out = { results };
          break;
        }
        case 'managed': {
          const work = async (tx) => {
            const results = [];
            for (const q of step.queries) results.push(await collect(tx.run(q.query, toDriver(q.params || {}))));
            return results;
          };
          const results = step.kind === 'read' ? await s.executeRead(work) : await s.executeWrite(work);
          out = { results };
          break;
        }
        case 'close_session':
          if (sessions.has(step.session)) await sessions.get(step.session).close();
          sessions.delete(step.session);
          out = {};
          break;
        default:
          out = { error: { code: 'client', message: `unknown op ${step.op}` } };
      }
    } catch (e) {
      out = errorOut(e);
    } finally {
      if (temp) await s.close().catch(() => {});
    }
    outputs.push(out);
  }
  for (const s of sessions.values()) await s.close().catch(() => {});
  await driver.close();
  process.stdout.write(`${JSON.stringify({ steps: outputs })}\n`);
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(1);
});
