// One Bolt connection: handshake, message decoding, and the server state
// machine (Bolt 4.4 and 5.x):
//
//   CONNECTED --HELLO--> READY                  (4.4, 5.0: HELLO carries the auth)
//   CONNECTED --HELLO--> AUTHENTICATION --LOGON--> READY        (5.1+)
//   READY --RUN--> STREAMING --PULL/DISCARD (no more)--> READY
//   READY --BEGIN--> TX_READY --RUN--> TX_STREAMING --PULL/DISCARD--> TX_READY
//   TX_READY/TX_STREAMING --COMMIT/ROLLBACK--> READY
//   READY --LOGOFF--> AUTHENTICATION (5.1+); ROUTE and TELEMETRY (5.4+) stay in READY
//   any --FAILURE--> FAILED: everything but RESET and GOODBYE is IGNORED
//   RESET: the messages queued before it are IGNORED at once (the interrupt),
//   then it rolls back, drops open results and returns to READY.
//
// Messages are handled one at a time in arrival order (clients pipeline).
// Closing the connection (no reply beyond the one given):
//   - authentication failure: FAILURE Neo.ClientError.Security.Unauthorized;
//   - a message that is unknown, has the wrong fields, belongs to another
//     version or is not allowed in the current state: FAILURE
//     Neo.ClientError.Request.Invalid;
//   - bytes that are not PackStream or a message over the size limit: FAILURE
//     Neo.ClientError.Request.InvalidFormat;
//   - a wrong magic or no common version in the handshake: closed at once.

import crypto from 'node:crypto';

import { ChunkDecoder, FramingError, HANDSHAKE_LEN, MAGIC, frame, negotiate, versionReply } from './framing.mjs';
import { Float, PackStreamError, Structure, decode, encode, isInt } from './packstream.mjs';
import { CypherError, Session } from './executor.mjs';
import { BoltValueEncoder, ParameterError, toKuzu } from './values.mjs';

const SUCCESS = 0x70;
const RECORD = 0x71;
const IGNORED = 0x7e;
const FAILURE = 0x7f;

// Request messages: signature -> name, field count, first version that has it.
const MESSAGES = new Map([
  [0x01, { name: 'HELLO', fields: 1, since: [4, 4] }],
  [0x02, { name: 'GOODBYE', fields: 0, since: [4, 4] }],
  [0x0f, { name: 'RESET', fields: 0, since: [4, 4] }],
  [0x10, { name: 'RUN', fields: 3, since: [4, 4] }],
  [0x11, { name: 'BEGIN', fields: 1, since: [4, 4] }],
  [0x12, { name: 'COMMIT', fields: 0, since: [4, 4] }],
  [0x13, { name: 'ROLLBACK', fields: 0, since: [4, 4] }],
  [0x2f, { name: 'DISCARD', fields: 1, since: [4, 4] }],
  [0x3f, { name: 'PULL', fields: 1, since: [4, 4] }],
  [0x54, { name: 'TELEMETRY', fields: 1, since: [5, 4] }],
  [0x66, { name: 'ROUTE', fields: 3, since: [4, 4] }],
  [0x6a, { name: 'LOGON', fields: 1, since: [5, 1] }],
  [0x6b, { name: 'LOGOFF', fields: 0, since: [5, 1] }],
]);

const PULL_BATCH = 1000;
const HIGH_WATER = 1 << 20;

class ProtocolViolation extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const isMap = (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Structure) &&
  !(v instanceof Float) && !Buffer.isBuffer(v);

function atLeast(version, since) {
  return version[0] > since[0] || (version[0] === since[0] && version[1] >= since[1]);
}

function sameSecret(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

export class BoltConnection {
  // server: {opts, databases, nextBookmark(), log(line)}
  constructor(socket, server, id) {
    this.socket = socket;
    this.server = server;
    this.opts = server.opts;
    this.id = id;
    this.version = null;
    this.utc = false;
    this.handshake = Buffer.alloc(0);
    this.decoder = new ChunkDecoder(this.opts.maxMessageBytes);
    this.state = 'CONNECTED';
    this.authenticated = false;
    this.queue = [];
    this.pendingResets = 0;
    this.processing = false;
    this.fatalQueued = false; // undecodable input: no more reading, FAILURE then close
    this.closed = false;
    this.cleaned = false;
    this.session = new Session(server.databases);
    this.result = null; // auto-commit result (STREAMING)
    this.txResults = new Map(); // qid -> Result (TX_STREAMING)
    this.lastQid = -1;
    this.nextQid = 0;
    this.txDb = null;

    socket.setNoDelay(true);
    socket.on('data', (d) => this.onData(d));
    socket.on('error', () => {});
    socket.on('close', () => this.onClose());
  }

  log(line) {
    if (this.opts.logMessages) this.server.log(`conn ${this.id} ${line}`);
  }

  // ---- input -------------------------------------------------------------------------------

  onData(data) {
    if (this.closed || this.fatalQueued) return;
    if (this.version === null) {
      this.handshake = Buffer.concat([this.handshake, data]);
      const n = Math.min(4, this.handshake.length);
      if (!this.handshake.subarray(0, n).equals(MAGIC.subarray(0, n))) {
        this.log('bad magic, closing');
        this.destroy();
        return;
      }
      if (this.handshake.length < HANDSHAKE_LEN) return;
      const chosen = negotiate(this.handshake, this.opts.versions);
      this.socket.write(versionReply(chosen));
      if (!chosen) {
        this.log('no common version, closing');
        this.closed = true;
        this.socket.end();
        return;
      }
      this.version = chosen;
      this.log(`version ${chosen[0]}.${chosen[1]}`);
      data = this.handshake.subarray(HANDSHAKE_LEN);
      this.handshake = null;
      if (!data.length) return;
    }
    let messages;
    try {
      messages = this.decoder.push(data);
    } catch (e) {
      this.queueFatal('Neo.ClientError.Request.InvalidFormat', e.message);
      return;
    }
    for (const buf of messages) {
      let msg;
      try {
        msg = decode(buf);
      } catch (e) {
        if (!(e instanceof PackStreamError)) throw e;
        this.queueFatal('Neo.ClientError.Request.InvalidFormat', `malformed message: ${e.message}`);
        return;
      }
      if (!(msg instanceof Structure)) {
        this.queueFatal('Neo.ClientError.Request.InvalidFormat', 'a message must be a structure');
        return;
      }
      if (msg.tag === 0x0f && msg.fields.length === 0) this.pendingResets++;
      this.queue.push(msg);
    }
    this.pump();
  }

  queueFatal(code, message) {
    this.fatalQueued = true;
    this.socket.pause();
    this.queue.push({ fatal: new ProtocolViolation(code, message) });
    this.pump();
  }

  onClose() {
    this.closed = true;
    if (!this.processing) this.cleanup();
  }

  destroy() {
    this.closed = true;
    this.socket.destroy();
  }

  cleanup() {
    if (this.cleaned) return;
    this.cleaned = true;
    this.closeResults();
    this.session.close().catch(() => {});
  }

  async pump() {
    if (this.processing) return;
    this.processing = true;
    try {
      while (this.queue.length && !this.closed) {
        const msg = this.queue.shift();
        try {
          await this.handle(msg);
        } catch (e) {
          if (e instanceof ProtocolViolation) {
            this.log(`protocol violation: ${e.message}`);
            this.send(FAILURE, { code: e.code, message: e.message });
            this.closed = true;
            this.socket.end();
          } else {
            this.server.log(`conn ${this.id} internal error: ${e && e.stack ? e.stack : e}`);
            this.fail({ code: 'Neo.DatabaseError.General.UnknownError', message: String(e && e.message) });
          }
        }
      }
    } finally {
      this.processing = false;
      if (this.closed) this.cleanup();
    }
  }

  // ---- output ------------------------------------------------------------------------------

  send(sig, ...fields) {
    if (this.closed) return;
    this.socket.write(frame(encode(new Structure(sig, fields))));
  }

  async drain() {
    if (this.closed || this.socket.writableLength < HIGH_WATER) return;
    await new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  fail(err) {
    this.log(`FAILURE ${err.code}`);
    this.send(FAILURE, { code: err.code, message: err.message });
    this.state = 'FAILED';
  }

  // ---- dispatch ----------------------------------------------------------------------------

  async handle(msg) {
    if (msg.fatal) throw msg.fatal;
    const spec = MESSAGES.get(msg.tag);
    if (!spec || !atLeast(this.version, spec.since)) {
      throw new ProtocolViolation('Neo.ClientError.Request.Invalid',
        `message 0x${msg.tag.toString(16)} is not part of Bolt ${this.version.join('.')}`);
    }
    if (msg.fields.length !== spec.fields) {
      throw new ProtocolViolation('Neo.ClientError.Request.Invalid',
        `${spec.name} takes ${spec.fields} fields, not ${msg.fields.length}`);
    }
    const name = spec.name;
    if (name === 'RESET') {
      this.pendingResets--;
      this.log('< RESET');
      return this.reset();
    }
    if (name === 'GOODBYE') {
      this.log('< GOODBYE');
      this.closed = true;
      this.socket.end();
      return undefined;
    }
    if (this.pendingResets > 0 || this.state === 'FAILED') {
      this.log(`< ${name} (IGNORED)`);
      this.send(IGNORED);
      return undefined;
    }
    const handler = this[`on${name}`];
    return handler.call(this, ...msg.fields);
  }

  expectState(name, ...states) {
    if (!states.includes(this.state)) {
      throw new ProtocolViolation('Neo.ClientError.Request.Invalid',
        `${name} cannot be handled by a session in the ${this.state} state`);
    }
  }

  expectMap(name, v, what) {
    if (!isMap(v)) throw new ProtocolViolation('Neo.ClientError.Request.Invalid', `${name}: ${what} must be a map`);
  }

  // ---- authentication ----------------------------------------------------------------------

  checkAuth(name, auth) {
    const ok = auth.scheme === 'basic' && sameSecret(auth.principal ?? '', this.opts.user) &&
      sameSecret(auth.credentials ?? '', this.opts.password);
    this.log(`< ${name} scheme=${auth.scheme} principal=${auth.principal} -> ${ok ? 'ok' : 'refused'}`);
    if (!ok) {
      throw new ProtocolViolation('Neo.ClientError.Security.Unauthorized',
        'The client is unauthorized due to authentication failure.');
    }
    this.authenticated = true;
  }

  onHELLO(extra) {
    this.expectState('HELLO', 'CONNECTED');
    this.expectMap('HELLO', extra, 'extra');
    const meta = { server: this.opts.agent, connection_id: `bolt-${this.id}` };
    const hints = {};
    if (atLeast(this.version, [5, 1])) {
      this.log(`< HELLO user_agent=${extra.user_agent}`);
      this.state = 'AUTHENTICATION';
    } else {
      this.checkAuth('HELLO', extra);
      this.state = 'READY';
    }
    if (this.version[0] === 4 && Array.isArray(extra.patch_bolt) && extra.patch_bolt.includes('utc')) {
      this.utc = true;
      meta.patch_bolt = ['utc'];
    }
    if (atLeast(this.version, [5, 4])) hints['telemetry.enabled'] = true;
    meta.hints = hints;
    this.send(SUCCESS, meta);
  }

  onLOGON(auth) {
    this.expectState('LOGON', 'AUTHENTICATION');
    this.expectMap('LOGON', auth, 'auth');
    this.checkAuth('LOGON', auth);
    this.state = 'READY';
    this.send(SUCCESS, {});
  }

  onLOGOFF() {
    this.expectState('LOGOFF', 'READY');
    this.log('< LOGOFF');
    this.authenticated = false;
    this.state = 'AUTHENTICATION';
    this.send(SUCCESS, {});
  }

  // ---- queries -----------------------------------------------------------------------------

  async onRUN(query, params, extra) {
    if (typeof query !== 'string') throw new ProtocolViolation('Neo.ClientError.Request.Invalid', 'RUN: query must be a string');
    this.expectMap('RUN', params, 'parameters');
    this.expectMap('RUN', extra, 'extra');
    this.expectState('RUN', 'READY', 'TX_READY', 'TX_STREAMING');
    const inTx = this.state !== 'READY';
    this.log(`< RUN db=${extra.db ?? ''} mode=${extra.mode ?? 'w'} imp_user=${extra.imp_user ?? ''}` +
      ` params=[${Object.keys(params).join(',')}] query=${JSON.stringify(query)}`);
    const t0 = Date.now();
    let result;
    try {
      const kparams = toKuzu(params);
      result = await this.session.run(inTx ? null : extra.db, query, kparams, !inTx && extra.mode === 'r');
    } catch (e) {
      if (e instanceof ParameterError) return this.fail({ code: 'Neo.ClientError.Statement.TypeError', message: e.message });
      if (e instanceof CypherError) return this.fail(e);
      throw e;
    }
    const meta = { fields: result.fields, t_first: Date.now() - t0 };
    if (inTx) {
      const qid = this.nextQid++;
      this.txResults.set(qid, result);
      this.lastQid = qid;
      meta.qid = qid;
      this.state = 'TX_STREAMING';
    } else {
      this.result = result;
      this.state = 'STREAMING';
    }
    this.send(SUCCESS, meta);
    return undefined;
  }

  pullArgs(name, extra) {
    this.expectMap(name, extra, 'extra');
    const n = extra.n;
    const qid = extra.qid ?? -1;
    if (!isInt(n) || (n < 1 && n !== -1) || !isInt(qid)) {
      throw new ProtocolViolation('Neo.ClientError.Request.Invalid', `${name}: n must be -1 or positive, qid an integer`);
    }
    return { n: Number(n), qid: Number(qid) };
  }

  // The result a PULL/DISCARD addresses, or null after a FAILURE was sent.
  target(name, qid) {
    if (this.state === 'STREAMING') return this.result;
    this.expectState(name, 'TX_STREAMING');
    const id = qid === -1 ? this.lastQid : qid;
    const r = this.txResults.get(id);
    if (!r) {
      this.fail({ code: 'Neo.ClientError.Request.Invalid', message: `${name}: no open result with qid ${qid}` });
      return null;
    }
    return r;
  }

  async onPULL(extra) {
    const { n, qid } = this.pullArgs('PULL', extra);
    this.log(`< PULL n=${n} qid=${qid}`);
    this.expectState('PULL', 'STREAMING', 'TX_STREAMING');
    const result = this.target('PULL', qid);
    if (!result) return;
    const t0 = Date.now();
    const enc = new BoltValueEncoder({ version: this.version, utc: this.utc, props: this.session.propertyTypes(result.db) });
    let left = n;
    try {
      while (left !== 0 && result.hasMore) {
        const rows = result.take(left < 0 ? PULL_BATCH : Math.min(left, PULL_BATCH));
        if (left > 0) left -= rows.length;
        const out = rows.map((row) => frame(encode(new Structure(RECORD, [row.map((v, i) => enc.value(v, result.types[i]))]))));
        if (out.length && !this.closed) this.socket.write(Buffer.concat(out));
        await this.drain();
        if (this.closed) return;
      }
    } catch (e) {
      result.close();
      this.fail({ code: 'Neo.DatabaseError.General.UnknownError', message: `cannot encode a value: ${e.message}` });
      return;
    }
    this.finishStream(result, Date.now() - t0);
  }

  onDISCARD(extra) {
    const { n, qid } = this.pullArgs('DISCARD', extra);
    this.log(`< DISCARD n=${n} qid=${qid}`);
    this.expectState('DISCARD', 'STREAMING', 'TX_STREAMING');
    const result = this.target('DISCARD', qid);
    if (!result) return;
    if (n < 0) result.close();
    else result.take(n);
    this.finishStream(result, 0);
  }

  finishStream(result, tLast) {
    if (result.hasMore) {
      this.send(SUCCESS, { has_more: true });
      return;
    }
    const meta = { type: result.type, t_last: tLast, db: result.db };
    if (this.state === 'STREAMING') {
      this.result = null;
      this.state = 'READY';
      meta.bookmark = this.server.nextBookmark(result.db);
    } else {
      for (const [qid, r] of this.txResults) if (r === result) this.txResults.delete(qid);
      if (this.txResults.size === 0) this.state = 'TX_READY';
    }
    this.send(SUCCESS, meta);
  }

  // ---- transactions ------------------------------------------------------------------------

  async onBEGIN(extra) {
    this.expectMap('BEGIN', extra, 'extra');
    this.expectState('BEGIN', 'READY');
    this.log(`< BEGIN db=${extra.db ?? ''} mode=${extra.mode ?? 'w'} imp_user=${extra.imp_user ?? ''}`);
    try {
      const entry = await this.session.begin(extra.db, extra.mode === 'r');
      this.txDb = entry.name;
    } catch (e) {
      if (e instanceof CypherError) return this.fail(e);
      throw e;
    }
    this.nextQid = 0;
    this.lastQid = -1;
    this.state = 'TX_READY';
    this.send(SUCCESS, {});
    return undefined;
  }

  async onCOMMIT() {
    this.expectState('COMMIT', 'TX_READY', 'TX_STREAMING');
    this.log('< COMMIT');
    this.closeResults();
    try {
      await this.session.endTx(true);
    } catch (e) {
      if (e instanceof CypherError) return this.fail(e);
      throw e;
    }
    this.state = 'READY';
    this.send(SUCCESS, { bookmark: this.server.nextBookmark(this.txDb) });
    return undefined;
  }

  async onROLLBACK() {
    this.expectState('ROLLBACK', 'TX_READY', 'TX_STREAMING');
    this.log('< ROLLBACK');
    this.closeResults();
    await this.session.endTx(false);
    this.state = 'READY';
    this.send(SUCCESS, {});
  }

  closeResults() {
    if (this.result) this.result.close();
    this.result = null;
    for (const r of this.txResults.values()) r.close();
    this.txResults.clear();
  }

  async reset() {
    if (this.state === 'CONNECTED') {
      throw new ProtocolViolation('Neo.ClientError.Request.Invalid', 'RESET before HELLO');
    }
    this.closeResults();
    await this.session.endTx(false);
    this.state = this.authenticated ? 'READY' : 'AUTHENTICATION';
    this.send(SUCCESS, {});
  }

  // ---- cluster -----------------------------------------------------------------------------

  onROUTE(routing, bookmarks, extra) {
    this.expectMap('ROUTE', routing, 'routing context');
    if (!Array.isArray(bookmarks)) throw new ProtocolViolation('Neo.ClientError.Request.Invalid', 'ROUTE: bookmarks must be a list');
    this.expectMap('ROUTE', extra, 'extra');
    this.expectState('ROUTE', 'READY');
    this.log(`< ROUTE db=${extra.db ?? ''} imp_user=${extra.imp_user ?? ''}`);
    let db;
    try {
      db = this.server.databases.normalize(extra.db);
    } catch (e) {
      return this.fail(e);
    }
    const self = this.opts.advertise || `${this.socket.localAddress}:${this.socket.localPort}`;
    this.send(SUCCESS, {
      rt: {
        ttl: this.opts.routeTtl,
        db,
        servers: [
          { addresses: [self], role: 'WRITE' },
          { addresses: [self], role: 'READ' },
          { addresses: [self, ...this.opts.clusterMembers], role: 'ROUTE' },
        ],
      },
    });
    return undefined;
  }

  onTELEMETRY(api) {
    if (!isInt(api)) throw new ProtocolViolation('Neo.ClientError.Request.Invalid', 'TELEMETRY: api must be an integer');
    this.expectState('TELEMETRY', 'READY');
    this.log(`< TELEMETRY api=${api}`);
    this.send(SUCCESS, {});
  }
}
