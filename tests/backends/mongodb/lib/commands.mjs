// The command table and dispatcher, plus the handshake, authentication,
// administration, session and transaction commands (CRUD lives in crud.mjs).
//
//   body --> runCommand(): look up (59 CommandNotFound) --> $db --> auth gate
//        (13 before SCRAM) --> lsid/txnNumber bookkeeping --> handler
//        --> {..., ok: 1, $clusterTime, operationTime} | {ok: 0, errmsg, code, codeName}
//
// The server introduces itself as the primary of a one-member replica set,
// with hosts/setName/primary/me/topologyVersion, as a real deployment would:
// a proxy in front must hide all of that from its clients.

import { Binary, Long, ObjectId } from "bson";
import { CODES, MongoError, fail, fromEngine } from "./errors.mjs";
import { MAX_BSON_SIZE, MAX_MESSAGE_SIZE } from "./wire.mjs";
import { MECHANISM, ScramConversation, ScramError } from "./scram.mjs";
import { validateDbName, validateCollName, clone, valueKey, getPath } from "./store.mjs";
import { matcher, runFind, engineOptions } from "./engine.mjs";
import * as crud from "./crud.mjs";
import { GENERIC_FIELDS, checkFields, docArg, arrayArg, boolArg, intArg, stringArg, isDoc, typeName } from "./args.mjs";

export const MAX_WIRE_VERSION = 17; // MongoDB 6.0
export const VERSION = "6.0.0";

// ---- handshake ---------------------------------------------------------------------------------

function hello(ctx) {
    const { server, conn, body } = ctx;
    const legacy = ctx.name !== "hello";
    if (body.client !== undefined) {
        if (conn.sawClientMetadata) fail(186, "The client metadata document may only be sent in the first hello");
        conn.sawClientMetadata = true;
    }
    const me = `${server.host}:${server.port}`;
    const r = {};
    if (legacy && body.helloOk === true) r.helloOk = true;
    r.topologyVersion = { processId: server.processId, counter: Long.fromNumber(0) };
    r.hosts = [me];
    r.setName = server.setName;
    r.setVersion = 1;
    r[legacy ? "ismaster" : "isWritablePrimary"] = true;
    r.secondary = false;
    r.primary = me;
    r.me = me;
    r.electionId = server.electionId;
    const opTime = { ts: server.timestamp(), t: Long.fromNumber(1) };
    const now = new Date();
    r.lastWrite = { opTime, lastWriteDate: now, majorityOpTime: opTime, majorityWriteDate: now };
    r.maxBsonObjectSize = MAX_BSON_SIZE;
    r.maxMessageSizeBytes = MAX_MESSAGE_SIZE;
    r.maxWriteBatchSize = 100000;
    r.localTime = now;
    r.logicalSessionTimeoutMinutes = 30;
    r.connectionId = conn.id;
    r.minWireVersion = 0;
    r.maxWireVersion = MAX_WIRE_VERSION;
    r.readOnly = false;
    // No `compression`: this server advertises no compressors, whatever the client offers.
    if (typeof body.saslSupportedMechs === "string") {
        const [db, ...rest] = body.saslSupportedMechs.split(".");
        if (db === "admin" && rest.join(".") === server.creds.user) r.saslSupportedMechs = [MECHANISM];
    }
    if (isDoc(body.speculativeAuthenticate)) {
        try {
            const spec = body.speculativeAuthenticate;
            r.speculativeAuthenticate = saslStartReply(ctx, spec, typeof spec.db === "string" ? spec.db : ctx.db);
        } catch (e) {
            if (!(e instanceof MongoError)) throw e;
            // A failed speculative attempt is silent; the driver falls back to saslStart.
        }
    }
    const tv = body.topologyVersion;
    if (isDoc(tv) && body.maxAwaitTimeMS !== undefined && tv.processId instanceof ObjectId && tv.processId.equals(server.processId)) {
        // Awaitable hello (streaming monitoring): nothing changes here, so answer after maxAwaitTimeMS.
        const wait = Math.min(Math.max(intArg(ctx.name, body, "maxAwaitTimeMS", { min: 0 }), 0), 60000);
        return new Promise((resolve) => {
            const t = setTimeout(() => resolve(r), wait);
            conn.onClose(() => {
                clearTimeout(t);
                resolve(r);
            });
        });
    }
    return r;
}

function buildInfo() {
    return {
        version: VERSION,
        gitVersion: "0000000000000000000000000000000000000000",
        modules: [],
        allocator: "system",
        javascriptEngine: "none",
        sysInfo: "deprecated",
        versionArray: VERSION.split(".").map(Number).concat([0]),
        bits: 64,
        debug: false,
        maxBsonObjectSize: MAX_BSON_SIZE,
        storageEngines: ["inMemory"],
        // Not mongod: the tenantgate test backend (tests/backends/mongodb).
        tenantgateTestBackend: true,
    };
}

// ---- authentication ----------------------------------------------------------------------------

function payloadBytes(v) {
    if (v instanceof Binary) return Buffer.from(v.buffer.buffer, v.buffer.byteOffset, v.position);
    if (typeof v === "string") return Buffer.from(v, "utf8");
    if (v instanceof Uint8Array) return Buffer.from(v);
    fail(CODES.TypeMismatch, `BSON field 'saslStart.payload' is the wrong type '${typeName(v)}', expected types '[string, binData]'`);
}

function saslStartReply(ctx, spec, db) {
    const { server, conn } = ctx;
    const mech = spec.mechanism;
    if (mech !== MECHANISM) fail(CODES.MechanismUnavailable, `Received authentication for mechanism ${mech} which is not enabled`);
    const conv = new ScramConversation(server.creds);
    let step;
    try {
        step = conv.step(payloadBytes(spec.payload));
    } catch (e) {
        if (e instanceof ScramError) fail(CODES.AuthenticationFailed, "Authentication failed.");
        throw e;
    }
    if (db !== "admin" || conv.user !== server.creds.user) {
        conn.log(`authentication failed: unknown user ${conv.user}@${db}`);
        fail(CODES.AuthenticationFailed, "Authentication failed.");
    }
    const skipEmptyExchange = isDoc(spec.options) && spec.options.skipEmptyExchange === true;
    conn.sasl = { conv, id: ++conn.saslIds, skipEmptyExchange, db };
    return { conversationId: conn.sasl.id, done: step.done, payload: new Binary(step.payload) };
}

function saslStart(ctx) {
    ctx.conn.sasl = null;
    return saslStartReply(ctx, ctx.body, ctx.db);
}

function saslContinue(ctx) {
    const { conn, body } = ctx;
    const sasl = conn.sasl;
    if (!sasl || body.conversationId !== sasl.id || ctx.db !== sasl.db) fail(17, "No SASL session state found");
    let step;
    try {
        step = sasl.conv.step(payloadBytes(body.payload), sasl.skipEmptyExchange);
    } catch (e) {
        conn.sasl = null;
        if (e instanceof ScramError) {
            conn.log(`authentication failed: ${e.message}`);
            fail(CODES.AuthenticationFailed, "Authentication failed.");
        }
        throw e;
    }
    if (step.authenticated) {
        conn.authenticated = true;
        conn.user = sasl.conv.user;
    }
    if (step.done) conn.sasl = null;
    return { conversationId: sasl.id, done: step.done, payload: new Binary(step.payload) };
}

function connectionStatus(ctx) {
    const users = ctx.conn.authenticated ? [{ user: ctx.conn.user, db: "admin" }] : [];
    const roles = ctx.conn.authenticated ? [{ role: "root", db: "admin" }] : [];
    return { authInfo: { authenticatedUsers: users, authenticatedUserRoles: roles } };
}

// ---- administration ----------------------------------------------------------------------------

function listDatabases(ctx) {
    const { body, server } = ctx;
    checkFields("listDatabases", body, ["filter", "nameOnly", "authorizedDatabases"]);
    const filter = docArg("listDatabases", body, "filter");
    const nameOnly = boolArg("listDatabases", body, "nameOnly");
    let dbs = [...server.store.dbs.values()].map((d) => {
        let size = 0;
        for (const c of d.collections.values()) size += c.dataSize();
        return { name: d.name, sizeOnDisk: size, empty: size === 0 };
    });
    dbs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    if (filter) {
        const m = matcher(filter, ctx.opts);
        dbs = dbs.filter(m.test);
    }
    if (nameOnly) return { databases: dbs.map((d) => ({ name: d.name })) };
    const total = dbs.reduce((n, d) => n + d.sizeOnDisk, 0);
    return { databases: dbs, totalSize: total, totalSizeMb: Math.floor(total / (1024 * 1024)) };
}

function collectionInfo(c) {
    return {
        name: c.name,
        type: "collection",
        options: clone(c.options),
        info: { readOnly: false, uuid: c.uuid },
        idIndex: { v: 2, key: { _id: 1 }, name: "_id_" },
    };
}

function listCollections(ctx) {
    const { body, server, db } = ctx;
    checkFields("listCollections", body, ["filter", "nameOnly", "authorizedCollections", "cursor", "includePendingDrops"]);
    validateDbName(db);
    const filter = docArg("listCollections", body, "filter") || {};
    const nameOnly = boolArg("listCollections", body, "nameOnly");
    const cursorSpec = docArg("listCollections", body, "cursor") || {};
    const batchSize = intArg("listCollections.cursor", cursorSpec, "batchSize", { min: 0 });
    const d = server.store.database(db);
    let infos = d ? [...d.collections.values()].map(collectionInfo) : [];
    infos = runFind(infos, { filter }, ctx.opts);
    if (nameOnly) infos = infos.map((i) => ({ name: i.name, type: i.type }));
    return server.cursors.open(`${db}.$cmd.listCollections`, infos, { batchSize, lsidKey: ctx.lsidKey });
}

function listIndexes(ctx) {
    const { body, server, db } = ctx;
    checkFields("listIndexes", body, ["cursor", "includeBuildUUIDs", "includeIndexBuildInfo"]);
    const coll = crud.collArg(ctx);
    const cursorSpec = docArg("listIndexes", body, "cursor") || {};
    const batchSize = intArg("listIndexes.cursor", cursorSpec, "batchSize", { min: 0 });
    const c = server.store.collection(db, coll);
    if (!c) fail(CODES.NamespaceNotFound, `ns does not exist: ${db}.${coll}`);
    return server.cursors.open(`${db}.$cmd.listIndexes.${coll}`, c.indexes.map(clone), { batchSize, lsidKey: ctx.lsidKey });
}

const INDEX_OPTIONS = ["key", "name", "unique", "sparse", "partialFilterExpression", "expireAfterSeconds", "hidden",
    "collation", "background", "v", "weights", "default_language", "language_override", "textIndexVersion",
    "2dsphereIndexVersion", "bits", "min", "max", "wildcardProjection", "storageEngine", "ns"];

function sameKey(a, b) {
    return JSON.stringify(Object.entries(a)) === JSON.stringify(Object.entries(b));
}

function createIndexes(ctx) {
    const { body, server, db } = ctx;
    checkFields("createIndexes", body, ["indexes", "commitQuorum", "ignoreUnknownIndexOptions"]);
    const coll = crud.collArg(ctx);
    const specs = arrayArg("createIndexes", body, "indexes", { required: true });
    if (specs.length === 0) fail(CODES.BadValue, "Must specify at least one index to create");
    const existed = !!server.store.collection(db, coll);
    const c = server.store.ensureCollection(db, coll);
    const before = c.indexes.length;
    for (const spec of specs) {
        if (!isDoc(spec) || !isDoc(spec.key) || Object.keys(spec.key).length === 0) fail(CODES.FailedToParse, "Error in specification: the 'key' field must be a non-empty object");
        if (typeof spec.name !== "string" || spec.name.length === 0) fail(CODES.FailedToParse, `Error in specification ${JSON.stringify(spec.key)} :: caused by :: The 'name' field is a required property of an index specification`);
        for (const k of Object.keys(spec)) if (!INDEX_OPTIONS.includes(k)) fail(CODES.InvalidOptions, `Error in specification { name: "${spec.name}" } :: caused by :: The field '${k}' is not valid for an index specification.`);
        const byName = c.indexes.find((ix) => ix.name === spec.name);
        const byKey = c.indexes.find((ix) => sameKey(ix.key, spec.key));
        if (byName && !sameKey(byName.key, spec.key)) fail(CODES.IndexKeySpecsConflict, `An existing index has the same name as the requested index. When index names are not specified, they are auto generated and can cause conflicts. Please refer to our documentation. Requested index: ${JSON.stringify(spec)}, existing index: ${JSON.stringify(byName)}`);
        if (byKey && byKey.name !== spec.name) fail(CODES.IndexOptionsConflict, `Index already exists with a different name: ${byKey.name}`);
        if (byKey) {
            if (!!byKey.unique !== !!spec.unique) fail(CODES.IndexOptionsConflict, `An equivalent index already exists with the same name but different options. Requested index: ${JSON.stringify(spec)}, existing index: ${JSON.stringify(byKey)}`);
            continue;
        }
        const ix = { v: 2, ...clone(spec) };
        delete ix.ns;
        delete ix.background;
        if (spec.unique) {
            // Existing documents must already satisfy the new constraint.
            const seen = new Map();
            for (const d of c.all()) {
                const k = Object.keys(spec.key).map((f) => valueKey(getPath(d, f))).join("|");
                if (seen.has(k)) c.dupKey(spec.key, spec.name, d);
                seen.set(k, true);
            }
        }
        c.indexes.push(ix);
    }
    const r = { numIndexesBefore: before, numIndexesAfter: c.indexes.length, createdCollectionAutomatically: !existed };
    if (c.indexes.length === before) r.note = "all indexes already exist";
    return r;
}

function dropIndexes(ctx) {
    const { body, server, db } = ctx;
    checkFields("dropIndexes", body, ["index"]);
    const coll = crud.collArg(ctx);
    const c = server.store.collection(db, coll);
    if (!c) fail(CODES.NamespaceNotFound, `ns not found ${db}.${coll}`);
    const was = c.indexes.length;
    const which = body.index;
    const drop = (pred, what) => {
        const i = c.indexes.findIndex(pred);
        if (i < 0) fail(27, `index not found with name [${what}]`);
        if (c.indexes[i].name === "_id_") fail(72, "cannot drop _id index");
        c.indexes.splice(i, 1);
    };
    if (which === "*") c.indexes = c.indexes.filter((ix) => ix.name === "_id_");
    else if (typeof which === "string") drop((ix) => ix.name === which, which);
    else if (Array.isArray(which)) which.forEach((n) => drop((ix) => ix.name === n, n));
    else if (isDoc(which)) drop((ix) => sameKey(ix.key, which), JSON.stringify(which));
    else fail(CODES.TypeMismatch, "BSON field 'dropIndexes.index' is the wrong type");
    return { nIndexesWas: was };
}

function create(ctx) {
    const { body, server, db } = ctx;
    checkFields("create", body, ["capped", "size", "max", "validator", "validationLevel", "validationAction",
        "collation", "storageEngine", "indexOptionDefaults", "idIndex", "autoIndexId", "changeStreamPreAndPostImages",
        "expireAfterSeconds", "clusteredIndex", "timeseries", "viewOn", "pipeline", "encryptedFields"]);
    const coll = crud.collArg(ctx);
    if (body.viewOn !== undefined || body.timeseries !== undefined) fail(CODES.InvalidOptions, "views and time-series collections are not supported by this test backend");
    if (server.store.collection(db, coll)) fail(CODES.NamespaceExists, `Collection ${db}.${coll} already exists.`);
    const options = {};
    for (const [k, v] of Object.entries(body)) if (k !== "create" && !GENERIC_FIELDS.has(k)) options[k] = v;
    server.store.ensureCollection(db, coll, options);
    return {};
}

function drop(ctx) {
    const { body, server, db } = ctx;
    checkFields("drop", body, []);
    const coll = crud.collArg(ctx);
    const c = server.store.dropCollection(db, coll);
    if (!c) fail(CODES.NamespaceNotFound, "ns not found");
    for (const [id, cur] of server.cursors.cursors) if (cur.ns === `${db}.${coll}`) server.cursors.kill(id);
    return { nIndexesWas: c.indexes.length, ns: `${db}.${coll}` };
}

function dropDatabase(ctx) {
    const { body, server, db } = ctx;
    checkFields("dropDatabase", body, []);
    if (body.dropDatabase !== 1) fail(CODES.FailedToParse, "have to pass 1 as db parameter");
    if (db === "admin" || db === "config" || db === "local") fail(CODES.IllegalOperation, `Dropping the '${db}' database is prohibited.`);
    server.store.dropDatabase(db);
    return {};
}

function renameCollection(ctx) {
    const { body, server } = ctx;
    checkFields("renameCollection", body, ["to", "dropTarget", "stayTemp"]);
    const from = stringArg("renameCollection", body, "renameCollection", { required: true });
    const to = stringArg("renameCollection", body, "to", { required: true });
    const split = (ns) => {
        const i = ns.indexOf(".");
        if (i <= 0) fail(CODES.InvalidNamespace, `Invalid namespace specified '${ns}'`);
        const db = ns.slice(0, i), coll = ns.slice(i + 1);
        validateDbName(db);
        validateCollName(db, coll);
        return [db, coll];
    };
    const [fdb, fcoll] = split(from);
    const [tdb, tcoll] = split(to);
    const src = server.store.collection(fdb, fcoll);
    if (!src) fail(CODES.NamespaceNotFound, "Source collection does not exist");
    if (server.store.collection(tdb, tcoll)) {
        if (!boolArg("renameCollection", body, "dropTarget")) fail(CODES.NamespaceExists, "target namespace exists");
        server.store.dropCollection(tdb, tcoll);
    }
    server.store.dropCollection(fdb, fcoll);
    const dst = server.store.ensureCollection(tdb, tcoll, src.options);
    dst.docs = src.docs;
    dst.indexes = src.indexes;
    return {};
}

function dbStats(ctx) {
    const { server, db } = ctx;
    validateDbName(db);
    const d = server.store.database(db);
    const colls = d ? [...d.collections.values()] : [];
    const objects = colls.reduce((n, c) => n + c.docs.size, 0);
    const dataSize = colls.reduce((n, c) => n + c.dataSize(), 0);
    const indexes = colls.reduce((n, c) => n + c.indexes.length, 0);
    return {
        db, collections: colls.length, views: 0, objects, avgObjSize: objects ? dataSize / objects : 0, dataSize,
        storageSize: dataSize, indexes, indexSize: 0, totalSize: dataSize, scaleFactor: 1, fsUsedSize: 0, fsTotalSize: 0,
    };
}

function explain(ctx) {
    const { body, db } = ctx;
    checkFields("explain", body, ["verbosity"]);
    const inner = docArg("explain", body, "explain", { required: true });
    const name = Object.keys(inner)[0];
    const filterField = { find: "filter", count: "query", distinct: "query", findAndModify: "query", findandmodify: "query" };
    if (!["find", "aggregate", "count", "distinct", "update", "delete", "findAndModify", "findandmodify"].includes(name)) {
        fail(CODES.CommandNotFound, `Explain failed due to unknown command: ${name}`);
    }
    const coll = inner[name];
    if (typeof coll !== "string") fail(CODES.InvalidNamespace, `collection name has invalid type ${typeName(coll)}`);
    let filter = inner[filterField[name]] || {};
    if (name === "aggregate") filter = (inner.pipeline || []).find((s) => s && s.$match)?.$match || {};
    if (name === "update") filter = inner.updates?.[0]?.q || {};
    if (name === "delete") filter = inner.deletes?.[0]?.q || {};
    return crud.explainPlan(`${db}.${coll}`, filter, { ...inner, $db: db });
}

// ---- sessions and transactions -----------------------------------------------------------------

function lsidKeyOf(lsid) {
    if (lsid === undefined) return null;
    if (!isDoc(lsid) || !(lsid.id instanceof Binary) || lsid.id.sub_type !== 4 || lsid.id.position !== 16) {
        fail(CODES.TypeMismatch, "BSON field 'lsid.id' must be a UUID (binary subtype 4)");
    }
    return Buffer.from(lsid.id.buffer.buffer, lsid.id.buffer.byteOffset, 16).toString("hex");
}

function txnNumberOf(body) {
    const v = body.txnNumber;
    if (v === undefined) return undefined;
    if (v instanceof Long) return v.toBigInt();
    if (typeof v === "number" && Number.isInteger(v)) return BigInt(v);
    fail(CODES.TypeMismatch, `BSON field 'txnNumber' is the wrong type '${typeName(v)}', expected type 'long'`);
}

function noSuchTransaction(msg) {
    throw new MongoError(CODES.NoSuchTransaction, msg, { errorLabels: ["TransientTransactionError"] });
}

/** Transaction bookkeeping for a command carrying lsid/txnNumber/autocommit/startTransaction. */
function checkTransaction(ctx) {
    const { body, server, lsidKey, name } = ctx;
    const txn = txnNumberOf(body);
    if (txn !== undefined && lsidKey === null) fail(CODES.InvalidOptions, "Transaction number requires a session ID to also be specified");
    if (body.autocommit === undefined) {
        if (body.startTransaction !== undefined) fail(CODES.InvalidOptions, "Specifying startTransaction=true requires autocommit=false");
        return;
    }
    if (body.autocommit !== false) fail(CODES.InvalidOptions, "autocommit field can only be specified as false");
    if (txn === undefined) fail(CODES.InvalidOptions, "'autocommit' field requires a transaction number to also be specified");
    let s = server.sessions.get(lsidKey);
    if (body.startTransaction !== undefined) {
        if (body.startTransaction !== true) fail(CODES.InvalidOptions, "startTransaction field can only be specified as true");
        if (s && s.txnNumber > txn) fail(CODES.TransactionTooOld, `Cannot start transaction ${txn} on session ${lsidKey} because a newer transaction ${s.txnNumber} has already started`);
        if (s && s.txnNumber === txn) fail(CODES.ConflictingOperationInProgress, `Cannot start a transaction at given transaction number ${txn} a transaction with the same number is in state ${s.state}`);
        server.sessions.set(lsidKey, { txnNumber: txn, state: "inProgress" });
        return;
    }
    if (name === "commitTransaction" || name === "abortTransaction") return;
    if (!s || s.txnNumber !== txn || s.state !== "inProgress") {
        noSuchTransaction(`Given transaction number ${txn} does not match any in-progress transactions. The active transaction number is ${s ? s.txnNumber : -1}`);
    }
}

function endTransaction(ctx, commit) {
    const { server, lsidKey, body } = ctx;
    const txn = txnNumberOf(body);
    if (lsidKey === null || txn === undefined || body.autocommit !== false) fail(CODES.InvalidOptions, `${ctx.name} must be run within a transaction`);
    const s = server.sessions.get(lsidKey);
    if (!s || s.txnNumber !== txn) noSuchTransaction(`Transaction with { txnNumber: ${txn} } has been aborted.`);
    if (commit) {
        if (s.state === "aborted") noSuchTransaction(`Transaction with { txnNumber: ${txn} } has been aborted.`);
        s.state = "committed";
    } else {
        if (s.state === "committed") fail(CODES.TransactionCommitted, `Transaction with { txnNumber: ${txn} } has been committed.`);
        if (s.state === "aborted") noSuchTransaction("No transaction started");
        s.state = "aborted";
    }
    return {};
}

function endSessions(ctx) {
    const ids = arrayArg("endSessions", ctx.body, "endSessions", { required: true });
    for (const lsid of ids) {
        try {
            ctx.server.sessions.delete(lsidKeyOf(lsid));
        } catch {
            // mongod ignores malformed entries here.
        }
    }
    return {};
}

// ---- the table ---------------------------------------------------------------------------------

// auth: false = answered before authentication (the handshake set); admin: only on db admin.
const TABLE = {
    hello: { fn: hello, auth: false },
    isMaster: { fn: hello, auth: false },
    ismaster: { fn: hello, auth: false },
    saslStart: { fn: saslStart, auth: false },
    saslContinue: { fn: saslContinue, auth: false },
    ping: { fn: () => ({}), auth: false },
    buildInfo: { fn: buildInfo, auth: false },
    buildinfo: { fn: buildInfo, auth: false },
    endSessions: { fn: endSessions, auth: false },
    connectionStatus: { fn: connectionStatus, auth: false },
    find: { fn: crud.find },
    getMore: { fn: crud.getMore },
    killCursors: { fn: crud.killCursors },
    insert: { fn: crud.insert },
    update: { fn: crud.update },
    delete: { fn: crud.del },
    findAndModify: { fn: crud.findAndModify },
    findandmodify: { fn: crud.findAndModify },
    count: { fn: crud.count },
    distinct: { fn: crud.distinct },
    aggregate: { fn: crud.aggregate },
    explain: { fn: explain },
    listDatabases: { fn: listDatabases, admin: true },
    listCollections: { fn: listCollections },
    listIndexes: { fn: listIndexes },
    createIndexes: { fn: createIndexes },
    dropIndexes: { fn: dropIndexes },
    create: { fn: create },
    drop: { fn: drop },
    dropDatabase: { fn: dropDatabase },
    renameCollection: { fn: renameCollection, admin: true },
    dbStats: { fn: dbStats },
    commitTransaction: { fn: (ctx) => endTransaction(ctx, true), admin: true },
    abortTransaction: { fn: (ctx) => endTransaction(ctx, false), admin: true },
};

/**
 * Runs one command document. Returns the reply document (never throws for a
 * command error). `db` overrides $db (OP_QUERY's namespace).
 */
export async function runCommand(server, conn, body, db = body.$db) {
    let reply;
    const name = Object.keys(body)[0];
    try {
        const def = name !== undefined && Object.prototype.hasOwnProperty.call(TABLE, name) ? TABLE[name] : null;
        if (!def) fail(CODES.CommandNotFound, `no such command: '${name === undefined ? "" : name}'`);
        if (typeof db !== "string") fail(40571, "OP_MSG requests require a $db argument");
        validateDbName(db);
        if (def.auth !== false && !conn.authenticated) fail(CODES.Unauthorized, `command ${name} requires authentication`);
        if (def.admin && db !== "admin") fail(CODES.Unauthorized, `${name} may only be run against the admin database.`);
        const ctx = { server, conn, body, db, name, lsidKey: null };
        ctx.lsidKey = lsidKeyOf(body.lsid);
        ctx.opts = engineOptions(server.store, db);
        checkTransaction(ctx);
        reply = { ...(await def.fn(ctx)), ok: 1 };
    } catch (e) {
        if (e instanceof MongoError) reply = e.toDoc();
        else {
            conn.log(`internal error in ${name}: ${e && e.stack ? e.stack : e}`);
            reply = fromEngine(e).toDoc();
        }
    }
    const ts = server.timestamp();
    reply.$clusterTime = { clusterTime: ts, signature: { hash: new Binary(Buffer.alloc(20), 0), keyId: Long.fromNumber(0) } };
    reply.operationTime = ts;
    return reply;
}

