// Captures real Bolt byte streams from the official JavaScript driver
// (npm neo4j-driver) talking to a tiny fake Bolt server on 127.0.0.1, and
// writes every connection's bytes, one file per direction, as test data for
// tests/unit/protocols/bolt/codec_test.c.
//
//   cd "$(mktemp -d)" && npm install neo4j-driver@5.28.3
//   node /path/to/capture.mjs /path/to/tests/unit/protocols/bolt/data
//
// The driver is loaded from the current directory's node_modules, so nothing
// is installed into the repository. Scenarios (one driver each):
//
//   v56_basic   legacy handshake answered 5.6; basic auth (HELLO + LOGON),
//               TELEMETRY, auto-commit RUN/PULL with parameters of every
//               PackStream type, records with graph, temporal and spatial
//               values, an explicit transaction, a FAILURE then IGNORED and
//               RESET, GOODBYE
//   v44_bearer  handshake answered 4.4; bearer auth inside HELLO, legacy
//               DateTime structures, 4.4 node/relationship shapes
//   v56_route   manifest v1 handshake (server offers 5.0-5.6); neo4j:// so the
//               driver sends ROUTE and gets a routing table
//
// Files: <scenario>_<k>.client.bin (all bytes the driver sent on its k-th
// connection, handshake included) and <scenario>_<k>.server.bin (all bytes
// the fake server sent). The driver checks what it decoded from the fake
// server, so the server's structures are the shapes the driver expects.
import { createRequire } from 'node:module';
import { writeFileSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const require = createRequire(path.join(process.cwd(), 'noop.js'));
const neo4j = require('neo4j-driver');
const outDir = process.argv[2];
if (!outDir) {
    console.error('usage: node capture.mjs OUTDIR');
    process.exit(2);
}
mkdirSync(outDir, { recursive: true });

// ---- a minimal PackStream encoder for the fake server ----
class Int { constructor(v) { this.v = BigInt(v); } }
class Struct { constructor(tag, fields) { this.tag = tag; this.fields = fields; } }
const I = (v) => new Int(v);
const S = (tag, ...fields) => new Struct(tag, fields);

function sized(small, markers, n) {
    if (small !== null && n < 16) return Buffer.from([small + n]);
    if (n < 0x100) return Buffer.from([markers[0], n]);
    if (n < 0x10000) return Buffer.from([markers[1], n >> 8, n & 0xff]);
    const b = Buffer.alloc(5); b[0] = markers[2]; b.writeUInt32BE(n, 1); return b;
}
function enc(v) {
    if (v === null) return Buffer.from([0xc0]);
    if (v === true) return Buffer.from([0xc3]);
    if (v === false) return Buffer.from([0xc2]);
    if (v instanceof Int) {
        const n = v.v;
        if (n >= -16n && n <= 127n) return Buffer.from([Number(BigInt.asUintN(8, n))]);
        if (n >= -128n && n <= 127n) return Buffer.from([0xc8, Number(BigInt.asUintN(8, n))]);
        if (n >= -32768n && n <= 32767n) { const b = Buffer.alloc(3); b[0] = 0xc9; b.writeInt16BE(Number(n), 1); return b; }
        if (n >= -2147483648n && n <= 2147483647n) { const b = Buffer.alloc(5); b[0] = 0xca; b.writeInt32BE(Number(n), 1); return b; }
        const b = Buffer.alloc(9); b[0] = 0xcb; b.writeBigInt64BE(n, 1); return b;
    }
    if (typeof v === 'number') { const b = Buffer.alloc(9); b[0] = 0xc1; b.writeDoubleBE(v, 1); return b; }
    if (typeof v === 'string') { const s = Buffer.from(v, 'utf8'); return Buffer.concat([sized(0x80, [0xd0, 0xd1, 0xd2], s.length), s]); }
    if (Buffer.isBuffer(v)) return Buffer.concat([sized(null, [0xcc, 0xcd, 0xce], v.length), v]);
    if (Array.isArray(v)) return Buffer.concat([sized(0x90, [0xd4, 0xd5, 0xd6], v.length), ...v.map(enc)]);
    if (v instanceof Struct) return Buffer.concat([Buffer.from([0xb0 + v.fields.length, v.tag]), ...v.fields.map(enc)]);
    const keys = Object.keys(v);
    return Buffer.concat([sized(0xa0, [0xd8, 0xd9, 0xda], keys.length), ...keys.flatMap((k) => [enc(k), enc(v[k])])]);
}
function chunk(msg) {
    const parts = [];
    for (let off = 0; off < msg.length; off += 0xffff) {
        const piece = msg.subarray(off, Math.min(off + 0xffff, msg.length));
        const h = Buffer.alloc(2); h.writeUInt16BE(piece.length); parts.push(h, piece);
    }
    parts.push(Buffer.from([0, 0]));
    return Buffer.concat(parts);
}
const SUCCESS = (meta) => chunk(enc(S(0x70, meta)));
const RECORD = (values) => chunk(enc(S(0x71, values)));
const FAILURE = (code, message) => chunk(enc(S(0x7f, { code, message })));
const IGNORED = () => chunk(enc(S(0x7e)));

// ---- record values in the shapes of each version ----
function graphValues(v5) {
    const alice = v5 ? S(0x4e, I(1), ['Person'], { name: 'Alice', tenant_id: 't1' }, '4:db:1')
        : S(0x4e, I(1), ['Person'], { name: 'Alice', tenant_id: 't1' });
    const bob = v5 ? S(0x4e, I(2), ['Person', 'Admin'], { name: 'Bob', tenant_id: 't1' }, '4:db:2')
        : S(0x4e, I(2), ['Person', 'Admin'], { name: 'Bob', tenant_id: 't1' });
    const rel = v5 ? S(0x52, I(7), I(1), I(2), 'KNOWS', { since: I(2020) }, '5:db:7', '4:db:1', '4:db:2')
        : S(0x52, I(7), I(1), I(2), 'KNOWS', { since: I(2020) });
    const unbound = v5 ? S(0x72, I(7), 'KNOWS', { since: I(2020) }, '5:db:7') : S(0x72, I(7), 'KNOWS', { since: I(2020) });
    const pathv = S(0x50, [alice, bob], [unbound], [I(1), I(1)]);
    return [alice, rel, pathv];
}
function temporalValues(utc) {
    return [
        S(0x44, I(19782)),                                   // Date 2024-02-29
        S(0x54, I(45296000000123n), I(3600)),                // Time 12:34:56.000000123+01:00
        S(0x74, I(45296000000123n)),                         // LocalTime
        utc ? S(0x49, I(1709206496), I(123), I(3600)) : S(0x46, I(1709210096), I(123), I(3600)),
        utc ? S(0x69, I(1709206496), I(123), 'Europe/Paris') : S(0x66, I(1709210096), I(123), 'Europe/Paris'),
        S(0x64, I(1709210096), I(123)),                      // LocalDateTime
        S(0x45, I(14), I(3), I(3723), I(500)),               // Duration P1Y2M3DT1H2M3.0000005S
        S(0x58, I(4326), 13.4, 52.5),                        // Point2D WGS-84
        S(0x59, I(4979), 13.4, 52.5, 34.0),                  // Point3D WGS-84 3D
    ];
}

// ---- the fake server ----
function startServer(plan) {
    const conns = [];
    const server = net.createServer((sock) => {
        const rec = { client: [], server: [] };
        conns.push(rec);
        let buf = Buffer.alloc(0);
        let phase = 'magic';
        let version = null;
        let lastQuery = '';
        let failed = false;
        const send = (b) => { rec.server.push(b); sock.write(b); };
        sock.on('data', (d) => {
            rec.client.push(Buffer.from(d));
            buf = Buffer.concat([buf, d]);
            for (;;) {
                if (phase === 'magic') {
                    if (buf.length < 20) return;
                    buf = buf.subarray(20);
                    if (plan.manifest) {
                        // 00 00 01 FF, one range 5.6..5.0, no capabilities.
                        send(Buffer.from([0, 0, 1, 0xff, 1, 0, 6, 6, 5, 0]));
                        phase = 'choice';
                    } else {
                        version = plan.version;
                        send(Buffer.from([0, 0, version[1], version[0]]));
                        phase = 'msgs';
                    }
                    continue;
                }
                if (phase === 'choice') {
                    if (buf.length < 5) return;
                    version = [buf[3], buf[2]];
                    buf = buf.subarray(5);
                    phase = 'msgs';
                    continue;
                }
                // One whole chunked message (or a NOOP) at the front of buf.
                let pos = 0;
                const parts = [];
                let whole = false;
                while (pos + 2 <= buf.length) {
                    const n = buf.readUInt16BE(pos);
                    if (n === 0) { pos += 2; whole = true; break; }
                    if (pos + 2 + n > buf.length) break;
                    parts.push(buf.subarray(pos + 2, pos + 2 + n));
                    pos += 2 + n;
                }
                if (!whole) return;
                buf = buf.subarray(pos);
                const msg = Buffer.concat(parts);
                if (msg.length === 0) continue; // NOOP
                const tag = msg[1];
                const v5 = version[0] === 5;
                if (tag === 0x02) { sock.end(); return; }          // GOODBYE
                if (tag === 0x0f) { failed = false; send(SUCCESS({})); continue; } // RESET
                if (failed) { send(IGNORED()); continue; }
                switch (tag) {
                case 0x01: // HELLO
                    send(SUCCESS({ server: 'Neo4j/5.26.0', connection_id: 'bolt-7',
                        hints: v5 ? { 'connection.recv_timeout_seconds': I(120), 'telemetry.enabled': true }
                            : { 'connection.recv_timeout_seconds': I(120) } }));
                    break;
                case 0x6a: send(SUCCESS({})); break;                // LOGON
                case 0x54: send(SUCCESS({})); break;                // TELEMETRY
                case 0x66: {                                        // ROUTE
                    const a = `127.0.0.1:${server.address().port}`;
                    send(SUCCESS({ rt: { ttl: I(300), db: 'neo4j', servers: [
                        { addresses: [a], role: 'WRITE' }, { addresses: [a], role: 'READ' },
                        { addresses: [a], role: 'ROUTE' }] } }));
                    break;
                }
                case 0x11: send(SUCCESS({})); break;                // BEGIN
                case 0x12: send(SUCCESS({ bookmark: 'FB:kcwQAAAAAAAAAAAAAAAAAAAAAAA=' })); break; // COMMIT
                case 0x13: send(SUCCESS({})); break;                // ROLLBACK
                case 0x10: {                                        // RUN: the query is the first field
                    const q = msg.subarray(2);
                    const qlen = q[0] < 0x90 ? q[0] - 0x80 : q[0] === 0xd0 ? q[1] : q.readUInt16BE(1);
                    const qoff = q[0] < 0x90 ? 1 : q[0] === 0xd0 ? 2 : 3;
                    lastQuery = q.subarray(qoff, qoff + qlen).toString('utf8');
                    if (lastQuery.includes('1/0')) {
                        failed = true;
                        send(FAILURE('Neo.ClientError.Statement.ArithmeticError', '/ by zero'));
                    } else if (lastQuery.startsWith('MATCH')) {
                        send(SUCCESS({ fields: ['p', 'r', 'path', 'd', 't', 'lt', 'dt', 'dtz', 'ldt', 'dur', 'p2', 'p3'], t_first: I(1), qid: I(0) }));
                    } else {
                        send(SUCCESS({ fields: ['x'], t_first: I(0), qid: I(1) }));
                    }
                    break;
                }
                case 0x3f: case 0x2f:                               // PULL, DISCARD
                    if (tag === 0x3f && lastQuery.startsWith('MATCH')) {
                        const utc = v5;
                        send(RECORD([...graphValues(v5), ...temporalValues(utc)]));
                    } else if (tag === 0x3f) {
                        send(RECORD([I(1)]));
                        send(RECORD([I(-129)]));
                    }
                    send(SUCCESS({ has_more: false, type: 'rw', t_last: I(2), db: 'neo4j',
                        bookmark: 'FB:kcwQAAAAAAAAAAAAAAAAAAAAAAA=' }));
                    break;
                default:
                    send(FAILURE('Neo.ClientError.Request.Invalid', `unexpected ${tag}`));
                    sock.end();
                    return;
                }
            }
        });
    });
    return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, conns })));
}

function check(cond, what) {
    if (!cond) throw new Error(`driver decoded something unexpected: ${what}`);
}

const { types } = neo4j;
function params() {
    return {
        name: 'Alice', empty: '', unicode: 'Größenmaßstäbe ✓ 𝄞',
        tiny: neo4j.int(42), neg: neo4j.int(-17), i16: neo4j.int(1000), i32: neo4j.int(100000),
        i64: neo4j.int('9007199254740993'), min: neo4j.int('-9223372036854775808'),
        f: 1.5, nan: NaN, yes: true, no: false, nothing: null,
        bytes: new Int8Array([1, 2, 3, -1]),
        list: [neo4j.int(1), 'two', 3.0, [null]],
        long: Array.from({ length: 20 }, (_, i) => neo4j.int(i)),
        map: { a: neo4j.int(1), nested: { b: 'c' } },
        date: new types.Date(2024, 2, 29),
        time: new types.Time(12, 34, 56, 123, 3600),
        ltime: new types.LocalTime(12, 34, 56, 123),
        dt: new types.DateTime(2024, 2, 29, 12, 34, 56, 123, 3600),
        dtz: new types.DateTime(2024, 2, 29, 12, 34, 56, 123, undefined, 'Europe/Paris'),
        ldt: new types.LocalDateTime(2024, 2, 29, 12, 34, 56, 123),
        dur: new types.Duration(14, 3, 3723, 500),
        p2: new types.Point(4326, 13.4, 52.5),
        p3: new types.Point(4979, 13.4, 52.5, 34.0),
    };
}

function checkRecord(rec, v5) {
    const p = rec.get('p');
    check(p.labels[0] === 'Person' && p.properties.name === 'Alice', 'node');
    if (v5) check(p.elementId === '4:db:1', 'node element id');
    const r = rec.get('r');
    check(r.type === 'KNOWS' && r.properties.since.toNumber() === 2020, 'relationship');
    if (v5) check(r.startNodeElementId === '4:db:1', 'relationship element ids');
    const pathv = rec.get('path');
    check(pathv.length === 1 && pathv.end.properties.name === 'Bob', 'path');
    check(rec.get('d').toString() === '2024-02-29', `date ${rec.get('d')}`);
    check(rec.get('dt').toString() === '2024-02-29T12:34:56.000000123+01:00', `datetime ${rec.get('dt')}`);
    check(rec.get('dtz').timeZoneId === 'Europe/Paris', 'datetime zone id');
    check(rec.get('dur').months.toNumber() === 14, 'duration');
    check(rec.get('p3').z === 34.0, 'point 3d');
}

async function scenario(name, plan, body) {
    const { server, conns } = await startServer(plan);
    const port = server.address().port;
    try {
        await body(port);
    } finally {
        await new Promise((r) => server.close(r));
    }
    conns.forEach((c, k) => {
        writeFileSync(path.join(outDir, `${name}_${k}.client.bin`), Buffer.concat(c.client));
        writeFileSync(path.join(outDir, `${name}_${k}.server.bin`), Buffer.concat(c.server));
    });
    console.log(`${name}: ${conns.length} connection(s)`);
}

const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnRfaWQiOiJ0MSIsImV4cCI6NDEwMjQ0NDgwMH0.c2lnbmF0dXJl';
const config = { userAgent: 'tenantgate-capture/1.0', maxConnectionPoolSize: 1 };

await scenario('v56_basic', { version: [5, 6] }, async (port) => {
    const driver = neo4j.driver(`bolt://127.0.0.1:${port}`, neo4j.auth.basic('alice', JWT), config);
    const session = driver.session({ database: 'neo4j' });
    const res = await session.run('MATCH (p:Person {name: $name})-[r]->(q) RETURN p, r', params());
    checkRecord(res.records[0], true);
    const tx = session.beginTransaction({ metadata: { app: 'capture' }, timeout: 5000 });
    const r2 = await tx.run('CREATE (n:Person {name: $name}) RETURN 1 AS x', { name: 'Bob' });
    check(r2.records.length === 2 && r2.records[1].get('x').toNumber() === -129, 'tx records');
    await tx.commit();
    let failed = false;
    try {
        await session.run('RETURN 1/0');
    } catch (e) {
        failed = e.code === 'Neo.ClientError.Statement.ArithmeticError';
    }
    check(failed, 'failure');
    await session.close();
    await driver.close();
});

await scenario('v44_bearer', { version: [4, 4] }, async (port) => {
    const driver = neo4j.driver(`bolt://127.0.0.1:${port}`, neo4j.auth.bearer(JWT), config);
    const session = driver.session({ database: 'neo4j', defaultAccessMode: neo4j.session.READ });
    const res = await session.run('MATCH (p:Person {name: $name})-[r]->(q) RETURN p, r', params());
    checkRecord(res.records[0], false);
    await session.close();
    await driver.close();
});

await scenario('v56_route', { manifest: true }, async (port) => {
    const driver = neo4j.driver(`neo4j://127.0.0.1:${port}?region=eu`, neo4j.auth.basic('alice', JWT), config);
    const session = driver.session({ database: 'neo4j' });
    const res = await session.run('RETURN $x AS x', { x: neo4j.int(1) });
    check(res.records[0].get('x').toNumber() === 1, 'routed record');
    await session.close();
    await driver.close();
});
