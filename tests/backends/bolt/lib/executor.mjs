// The kuzu side: one in-memory kuzu database per Bolt database name, one kuzu
// connection per (Bolt connection, database), Cypher execution with
// parameters, transactions, and kuzu's errors as Neo4j status codes.
//
// Approximations of Neo4j, all due to the engine:
//   - kuzu allows one write transaction at a time per database. A write that
//     meets another one waits (polling) up to lockTimeoutMs, then fails with
//     Neo.TransientError.Transaction.LockAcquisitionTimeout.
//   - Bolt mode "r" runs the statement in a kuzu READ ONLY transaction, so a
//     write there fails with Neo.ClientError.Statement.AccessMode.
//   - Parameters the statement does not use are dropped (kuzu refuses them,
//     Neo4j ignores them); a missing parameter is null (Neo4j refuses it).
//   - The summary's statement type (r/w/rw/s) is guessed from keywords, and no
//     update counters are reported.

import kuzu from 'kuzu';

import { parseType, needsSchema } from './values.mjs';

export class CypherError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const WRITE_CONFLICT = /Cannot start a new write transaction/;
const UNUSED_PARAM = /^Parameter (.+) not found\.?$/;
// Neo4j's rules: 3-63 characters, ASCII letters and digits with dots and dashes
// inside, case-insensitive (normalized to lowercase); no underscores.
const DB_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

// kuzu's error text -> a Neo4j status code; the message is kuzu's own.
export function classify(err) {
  if (err instanceof CypherError) return err;
  const msg = String(err && err.message ? err.message : err);
  let code = 'Neo.DatabaseError.General.UnknownError';
  if (/^Parser exception/.test(msg)) code = 'Neo.ClientError.Statement.SyntaxError';
  else if (/^(Binder|Catalog) exception/.test(msg)) code = 'Neo.ClientError.Statement.SemanticError';
  else if (/duplicated primary key|violates the uniqueness/.test(msg)) code = 'Neo.ClientError.Schema.ConstraintValidationFailed';
  else if (/Divide by zero|[Oo]verflow/.test(msg)) code = 'Neo.ClientError.Statement.ArithmeticError';
  else if (/read-only transaction|read only transaction/.test(msg)) code = 'Neo.ClientError.Statement.AccessMode';
  else if (WRITE_CONFLICT.test(msg)) code = 'Neo.TransientError.Transaction.LockAcquisitionTimeout';
  else if (/^(Runtime|Conversion|Copy) exception/.test(msg)) code = 'Neo.ClientError.Statement.ExecutionFailed';
  else if (/^Connection exception/.test(msg)) code = 'Neo.ClientError.Statement.ExecutionFailed';
  return new CypherError(code, msg);
}

// A guess at Neo4j's summary "type": r, w, rw or s (schema).
export function statementType(query) {
  const q = query.replace(/'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|`[^`]*`/g, "''");
  if (/^\s*(CREATE|DROP|ALTER)\s+((NODE|REL)\s+(GROUP\s+)?)?TABLE\b/i.test(q)) return 's';
  if (/^\s*(CREATE|DROP)\s+(SEQUENCE|MACRO)\b/i.test(q)) return 's';
  const writes = /\b(CREATE|MERGE|SET|DELETE|REMOVE|COPY)\b/i.test(q);
  const reads = /\b(MATCH|RETURN|UNWIND|CALL)\b/i.test(q);
  if (writes && reads) return 'rw';
  return writes ? 'w' : 'r';
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One Bolt database name -> one kuzu database, created on first use with the schema.
export class Databases {
  // opts: {schema: text|null, maxDatabases, bufferBytes, maxDbBytes, lockTimeoutMs, defaultDb}
  constructor(opts) {
    this.opts = opts;
    this.dbs = new Map();
  }

  normalize(name) {
    const n = (name === null || name === undefined || name === '' ? this.opts.defaultDb : String(name)).toLowerCase();
    if (!DB_NAME.test(n)) {
      throw new CypherError('Neo.ClientError.Database.DatabaseNotFound',
        `Database does not exist. Database name: '${name}'.`);
    }
    return n;
  }

  async get(name) {
    const n = this.normalize(name);
    let entry = this.dbs.get(n);
    if (entry) return entry.ready;
    if (this.dbs.size >= this.opts.maxDatabases) {
      throw new CypherError('Neo.ClientError.Database.DatabaseNotFound',
        `Database does not exist. Database name: '${name}' (the test backend holds at most ${this.opts.maxDatabases}).`);
    }
    entry = { name: n, db: null, schemaGen: 0, ready: null };
    entry.ready = (async () => {
      entry.db = new kuzu.Database(':memory:', this.opts.bufferBytes, true, false, this.opts.maxDbBytes);
      await entry.db.init();
      if (this.opts.schema && this.opts.schema.trim()) {
        const conn = new kuzu.Connection(entry.db, 1);
        try {
          const res = await conn.query(this.opts.schema);
          for (const r of Array.isArray(res) ? res : [res]) r.close();
        } finally {
          await conn.close();
        }
      }
      return entry;
    })();
    this.dbs.set(n, entry);
    try {
      return await entry.ready;
    } catch (e) {
      this.dbs.delete(n);
      throw classify(e);
    }
  }

  names() {
    return [...this.dbs.keys()];
  }
}

// Rows of one kuzu result, pulled on demand.
export class Result {
  constructor(qr, fields, types, db, type) {
    this.qr = qr;
    this.fields = fields;
    this.types = types;
    this.db = db;
    this.type = type;
    this.done = false;
  }

  // Up to n rows (n < 0: all) as arrays of kuzu values, in field order.
  take(n) {
    const rows = [];
    while (!this.done && (n < 0 || rows.length < n)) {
      if (!this.qr.hasNext()) {
        this.close();
        break;
      }
      const row = this.qr.getNextSync();
      rows.push(this.fields.map((f) => row[f]));
    }
    if (!this.done && !this.qr.hasNext()) this.close();
    return rows;
  }

  get hasMore() {
    return !this.done;
  }

  close() {
    if (!this.done) {
      this.done = true;
      this.qr.close();
    }
  }
}

// The kuzu state of one Bolt connection.
export class Session {
  constructor(databases) {
    this.databases = databases;
    this.conns = new Map();
    this.tx = null; // {entry, conn, readOnly, ddl}
    this.schemas = new Map(); // db name -> {gen, tables: Map label -> Map prop -> type}
  }

  conn(entry) {
    let c = this.conns.get(entry.name);
    if (!c) {
      c = new kuzu.Connection(entry.db, 1);
      this.conns.set(entry.name, c);
    }
    return c;
  }

  // Runs fn, waiting while another kuzu write transaction holds the database.
  async waitForWriter(fn) {
    const deadline = Date.now() + this.databases.opts.lockTimeoutMs;
    for (let delay = 5; ; delay = Math.min(delay * 2, 50)) {
      try {
        return await fn();
      } catch (e) {
        if (!WRITE_CONFLICT.test(String(e && e.message)) || Date.now() > deadline) throw e;
        await sleep(delay);
      }
    }
  }

  async begin(dbName, readOnly) {
    const entry = await this.databases.get(dbName);
    const conn = this.conn(entry);
    try {
      await this.waitForWriter(async () => {
        (await conn.query(readOnly ? 'BEGIN TRANSACTION READ ONLY' : 'BEGIN TRANSACTION')).close();
      });
    } catch (e) {
      throw classify(e);
    }
    this.tx = { entry, conn, readOnly, ddl: false };
    return entry;
  }

  async endTx(commit) {
    const tx = this.tx;
    this.tx = null;
    if (!tx) return;
    try {
      (await tx.conn.query(commit ? 'COMMIT' : 'ROLLBACK')).close();
    } catch (e) {
      if (!commit) return; // the engine already rolled it back
      throw classify(e);
    } finally {
      if (tx.ddl) tx.entry.schemaGen++;
    }
  }

  // An auto-commit statement (dbName) or one in the open transaction (dbName ignored).
  async run(dbName, query, params, readOnly) {
    const inTx = this.tx !== null;
    const entry = inTx ? this.tx.entry : await this.databases.get(dbName);
    const conn = inTx ? this.tx.conn : this.conn(entry);
    const type = statementType(query);
    let qr;
    try {
      const ps = await conn.prepare(query);
      if (!ps.isSuccess()) throw new Error(ps.getErrorMessage());
      if (!inTx && readOnly) {
        (await conn.query('BEGIN TRANSACTION READ ONLY')).close();
        try {
          qr = await this.execute(conn, ps, params);
        } finally {
          try {
            (await conn.query('COMMIT')).close();
          } catch {
            // a failed statement has already ended the transaction
          }
        }
      } else if (inTx) {
        qr = await this.execute(conn, ps, params);
      } else {
        qr = await this.waitForWriter(() => this.execute(conn, ps, params));
      }
    } catch (e) {
      throw classify(e);
    }
    if (Array.isArray(qr)) {
      for (const r of qr.slice(0, -1)) r.close();
      qr = qr[qr.length - 1];
    }
    if (type === 's') {
      if (inTx) this.tx.ddl = true;
      else entry.schemaGen++;
    }
    const fields = qr.getColumnNamesSync();
    const types = qr.getColumnDataTypesSync().map(parseType);
    if (types.some(needsSchema)) await this.loadSchema(entry, conn);
    return new Result(qr, fields, types, entry.name, type);
  }

  // Executes a prepared statement, dropping the parameters kuzu says it does not use.
  async execute(conn, ps, params) {
    const p = { ...params };
    for (let tries = Object.keys(p).length; ; tries--) {
      try {
        return await conn.execute(ps, p);
      } catch (e) {
        const m = UNUSED_PARAM.exec(String(e && e.message));
        if (!m || !Object.hasOwn(p, m[1]) || tries <= 0) throw e;
        delete p[m[1]];
      }
    }
  }

  // Property types of every node and rel table, for typing returned entities.
  async loadSchema(entry, conn) {
    const cached = this.schemas.get(entry.name);
    if (cached && cached.gen === entry.schemaGen && !(this.tx && this.tx.ddl)) return;
    const tables = new Map();
    try {
      const list = await conn.query('CALL show_tables() RETURN name');
      const names = (await list.getAll()).map((r) => r.name);
      list.close();
      for (const name of names) {
        const info = await conn.query(`CALL table_info('${name.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}') RETURN name, type`);
        const props = new Map();
        for (const r of await info.getAll()) props.set(r.name, parseType(r.type));
        info.close();
        tables.set(name, props);
      }
    } catch {
      // Unknown types fall back to the values' JS shape.
    }
    this.schemas.set(entry.name, { gen: entry.schemaGen, tables });
  }

  propertyTypes(dbName) {
    const s = this.schemas.get(dbName);
    return (label) => (s && s.tables.get(label)) || null;
  }

  async close() {
    if (this.tx) await this.endTx(false).catch(() => {});
    for (const c of this.conns.values()) await c.close().catch(() => {});
    this.conns.clear();
  }
}
