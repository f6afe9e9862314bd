// Read and write commands: find, getMore, killCursors, insert, update,
// delete, findAndModify, count, distinct, aggregate (with $out and $merge).
//
// Each handler takes the command context
//   ctx = {server, conn, body, db, name, lsidKey, opts}
// and returns the reply fields (ok: 1 is added by the dispatcher) or throws
// a MongoError. Writes report per-statement failures in writeErrors, as
// mongod does, and stop at the first one when `ordered` (the default).

import { serialize, Long } from "bson";
import { CODES, MongoError, fail, fromEngine } from "./errors.mjs";
import { BSON_SERIALIZE, MAX_BSON_SIZE } from "./wire.mjs";
import { clone, valueKey, getPath, prepareInsert, validateCollName, validateDbName, Collection } from "./store.mjs";
import { cursorIdOf } from "./cursors.mjs";
import {
    matcher, checkSort, runFind, runPipeline, checkPipeline, sortDocs, project, updateKind, applyUpdate, upsertSeed, sameValue,
} from "./engine.mjs";
import { checkFields, checkSubFields, docArg, arrayArg, boolArg, intArg, stringArg, isDoc, typeName } from "./args.mjs";

const MAX_WRITE_BATCH = 100000;

/** The collection named by the command's first field, validated. */
export function collArg(ctx) {
    const v = ctx.body[ctx.name];
    if (typeof v !== "string") fail(CODES.InvalidNamespace, `collection name has invalid type ${typeName(v)}`);
    validateCollName(ctx.db, v);
    return v;
}

function writableColl(ctx) {
    const coll = collArg(ctx);
    if (coll.startsWith("system.")) fail(CODES.InvalidNamespace, `Invalid system namespace: ${ctx.db}.${coll}`);
    return coll;
}

function withVariables(ctx, letDoc) {
    if (!letDoc) return ctx.opts;
    return { ...ctx.opts, variables: { ...(ctx.opts.variables || {}), ...letDoc } };
}

// ---- reads -------------------------------------------------------------------------------------

export function find(ctx) {
    const { body, server, db } = ctx;
    checkFields("find", body, ["filter", "projection", "sort", "hint", "skip", "limit", "batchSize", "singleBatch",
        "let", "collation", "allowDiskUse", "max", "min", "returnKey", "showRecordId", "tailable", "awaitData",
        "oplogReplay", "noCursorTimeout", "allowPartialResults", "readOnce", "term", "ntoreturn"]);
    const coll = collArg(ctx);
    const filter = docArg("find", body, "filter") || {};
    const projection = docArg("find", body, "projection");
    const sort = docArg("find", body, "sort");
    const skip = intArg("find", body, "skip", { min: 0, dflt: 0 });
    const limit = intArg("find", body, "limit", { min: 0, dflt: 0 });
    const batchSize = intArg("find", body, "batchSize", { min: 0 });
    const singleBatch = boolArg("find", body, "singleBatch");
    if (boolArg("find", body, "tailable")) fail(CODES.BadValue, "tailable cursors are not supported by this test backend");
    const opts = withVariables(ctx, docArg("find", body, "let"));
    // Parsed (and refused) whether or not the collection exists, as mongod does.
    checkSort(sort);
    matcher(filter, opts);
    const c = server.store.collection(db, coll);
    let docs = [];
    if (c) {
        const fast = idLookup(filter, sort, skip, projection);
        docs = fast !== undefined ? (c.get(fast) ? [c.get(fast)] : []) : runFind(c.all(), { filter, sort, skip, limit, projection }, opts);
    }
    return server.cursors.open(`${db}.${coll}`, docs, { batchSize, limit, singleBatch, lsidKey: ctx.lsidKey });
}

/** The _id key of a plain {_id: <scalar>} find (no sort/skip/projection), served from the map. */
function idLookup(filter, sort, skip, projection) {
    if (skip || (sort && Object.keys(sort).length) || (projection && Object.keys(projection).length)) return undefined;
    return idKeyOfFilter(filter);
}

/** The _id key when filter is exactly {_id: <scalar>}, else undefined. */
function idKeyOfFilter(filter) {
    const keys = Object.keys(filter);
    if (keys.length !== 1 || keys[0] !== "_id") return undefined;
    const v = filter._id;
    if (v === null || typeof v === "object" && (Array.isArray(v) || isDoc(v) || v instanceof RegExp || v._bsontype === "BSONRegExp")) return undefined;
    return valueKey(v);
}

/** Documents of c matching filter: from the _id map when the filter is {_id: <scalar>}. */
function matching(c, filter, opts) {
    const k = idKeyOfFilter(filter);
    if (k !== undefined) {
        const d = c.get(k);
        return d ? [d] : [];
    }
    const m = matcher(filter, opts);
    return c.all().filter(m.test);
}

export function getMore(ctx) {
    const { body, server, db } = ctx;
    checkFields("getMore", body, ["collection", "batchSize", "term", "lastKnownCommittedOpTime", "includeQueryStatsMetrics"]);
    const id = cursorIdOf(body.getMore);
    if (id === null) fail(CODES.TypeMismatch, `Field 'getMore' must be of type long in: ${typeName(body.getMore)}`);
    const coll = stringArg("getMore", body, "collection", { required: true });
    const batchSize = intArg("getMore", body, "batchSize", { min: 0 });
    const c = server.cursors.get(id);
    if (!c) fail(CODES.CursorNotFound, `cursor id ${id} not found`);
    const ns = `${db}.${coll}`;
    if (c.ns !== ns) {
        fail(CODES.Unauthorized, `Requested getMore on namespace '${ns}', but cursor belongs to a different namespace ${c.ns}`);
    }
    if (c.lsidKey !== ctx.lsidKey) {
        if (c.lsidKey === null) fail(50738, `Cannot run getMore on cursor ${id}, which was not created in a session, in session ${ctx.lsidKey}`);
        if (ctx.lsidKey === null) fail(50736, `Cannot run getMore on cursor ${id}, which was created in session ${c.lsidKey}, without an lsid`);
        fail(50737, `Cannot run getMore on cursor ${id}, which was created in session ${c.lsidKey}, in session ${ctx.lsidKey}`);
    }
    return server.cursors.more(c, batchSize);
}

export function killCursors(ctx) {
    const { body, server, db } = ctx;
    checkFields("killCursors", body, ["cursors"]);
    const coll = collArg(ctx);
    const ids = arrayArg("killCursors", body, "cursors", { required: true });
    const killed = [], notFound = [];
    for (const raw of ids) {
        const id = cursorIdOf(raw);
        if (id === null) fail(CODES.TypeMismatch, "killCursors: cursor ids must be of type long");
        const c = server.cursors.get(id);
        if (c && c.ns === `${db}.${coll}`) {
            server.cursors.kill(id);
            killed.push(Long.fromBigInt(id));
        } else notFound.push(Long.fromBigInt(id));
    }
    return { cursorsKilled: killed, cursorsNotFound: notFound, cursorsAlive: [], cursorsUnknown: [] };
}

export function count(ctx) {
    const { body, server, db } = ctx;
    checkFields("count", body, ["query", "skip", "limit", "hint", "collation", "fields"]);
    const coll = collArg(ctx);
    const query = docArg("count", body, "query") || {};
    const skip = intArg("count", body, "skip", { min: 0, dflt: 0 });
    let limit = intArg("count", body, "limit", { dflt: 0 });
    limit = Math.abs(limit);
    const m = matcher(query, ctx.opts);
    const c = server.store.collection(db, coll);
    if (!c) return { n: 0 };
    let n = c.all().filter(m.test).length;
    n = Math.max(0, n - skip);
    if (limit) n = Math.min(n, limit);
    return { n };
}

/** Values at a dotted path, descending into arrays; leaf arrays are spread one level. */
function valuesAt(v, parts, out) {
    if (parts.length === 0) {
        if (Array.isArray(v)) out.push(...v);
        else if (v !== undefined) out.push(v);
        return;
    }
    if (Array.isArray(v)) {
        if (/^\d+$/.test(parts[0])) valuesAt(v[Number(parts[0])], parts.slice(1), out);
        else for (const e of v) valuesAt(e, parts, out);
        return;
    }
    if (v !== null && typeof v === "object") valuesAt(v[parts[0]], parts.slice(1), out);
}

export function distinct(ctx) {
    const { body, server, db } = ctx;
    checkFields("distinct", body, ["key", "query", "collation", "hint"]);
    const coll = collArg(ctx);
    const key = stringArg("distinct", body, "key", { required: true });
    const query = docArg("distinct", body, "query") || {};
    const m = matcher(query, ctx.opts);
    const c = server.store.collection(db, coll);
    if (!c) return { values: [] };
    const seen = new Map();
    for (const d of c.all()) {
        if (!m.test(d)) continue;
        const vals = [];
        valuesAt(d, key.split("."), vals);
        for (const v of vals) if (!seen.has(valueKey(v))) seen.set(valueKey(v), v);
    }
    const sorted = sortDocs([...seen.values()].map((v) => ({ v })), { v: 1 }, ctx.opts).map((x) => x.v);
    return { values: sorted };
}

// ---- writes ------------------------------------------------------------------------------------

function batchArg(cmd, body, field) {
    const arr = arrayArg(cmd, body, field, { required: true });
    if (arr.length === 0 || arr.length > MAX_WRITE_BATCH) {
        fail(CODES.InvalidLength, `Write batch sizes must be between 1 and ${MAX_WRITE_BATCH}. Got ${arr.length} operations.`);
    }
    return arr;
}

/** Runs fn(stmt, i) per statement, collecting writeErrors; returns them (stops at one when ordered). */
function runBatch(stmts, ordered, fn) {
    const errors = [];
    for (let i = 0; i < stmts.length; i++) {
        try {
            fn(stmts[i], i);
        } catch (e) {
            const err = e instanceof MongoError ? e : fromEngine(e);
            errors.push(err.toWriteError(i));
            if (ordered) break;
        }
    }
    return errors;
}

function checkSize(doc, what) {
    const size = serialize(doc, BSON_SERIALIZE).length;
    if (size > MAX_BSON_SIZE) fail(CODES.BSONObjectTooLarge, `${what} is too large: ${size} bytes`);
}

export function insert(ctx) {
    const { body, server, db } = ctx;
    checkFields("insert", body, ["documents", "ordered", "bypassDocumentValidation"]);
    const coll = writableColl(ctx);
    const docs = batchArg("insert", body, "documents");
    const ordered = boolArg("insert", body, "ordered", true);
    const c = server.store.ensureCollection(db, coll);
    let n = 0;
    const writeErrors = runBatch(docs, ordered, (d) => {
        const doc = prepareInsert(d);
        checkSize(doc, "object to insert");
        c.insert(doc);
        n++;
    });
    return writeErrors.length ? { n, writeErrors } : { n };
}

/** The parse-time checks of one update statement (mongod fails the whole command on these). */
function parseUpdateStatement(stmt) {
    if (!isDoc(stmt)) fail(CODES.TypeMismatch, "BSON field 'update.updates' element is the wrong type, expected type 'object'");
    checkSubFields("update.updates", stmt, ["q", "u", "upsert", "multi", "arrayFilters", "collation", "hint", "c", "sort", "upsertSupplied"]);
    docArg("update.updates", stmt, "q", { required: true });
    if (stmt.u === undefined) fail(40414, "BSON field 'update.updates.u' is missing but a required field");
    boolArg("update.updates", stmt, "multi");
    boolArg("update.updates", stmt, "upsert");
    arrayArg("update.updates", stmt, "arrayFilters");
    docArg("update.updates", stmt, "c");
    docArg("update.updates", stmt, "sort");
}

function parseDeleteStatement(stmt) {
    if (!isDoc(stmt)) fail(CODES.TypeMismatch, "BSON field 'delete.deletes' element is the wrong type, expected type 'object'");
    checkSubFields("delete.deletes", stmt, ["q", "limit", "collation", "hint"]);
    docArg("delete.deletes", stmt, "q", { required: true });
    const limit = intArg("delete.deletes", stmt, "limit", { dflt: undefined });
    if (limit === undefined) fail(40414, "BSON field 'delete.deletes.limit' is missing but a required field");
    if (limit !== 0 && limit !== 1) fail(CODES.FailedToParse, `The limit field in delete objects must be 0 or 1. Got ${limit}`);
}

function updateStatement(ctx, c, stmt, i, result, letDoc) {
    const q = stmt.q;
    const u = stmt.u;
    const kind = updateKind(u);
    const multi = boolArg("update.updates", stmt, "multi");
    const upsert = boolArg("update.updates", stmt, "upsert");
    const arrayFilters = arrayArg("update.updates", stmt, "arrayFilters");
    if (kind === "replacement" && multi) fail(CODES.FailedToParse, "multi update is not supported for replacement-style update");
    const opts = withVariables(ctx, { ...(letDoc || {}), ...(docArg("update.updates", stmt, "c") || {}) });
    let matched = matching(c, q, opts);
    const sort = docArg("update.updates", stmt, "sort");
    if (sort) matched = sortDocs(matched, sort, opts);
    if (!multi) matched = matched.slice(0, 1);
    for (const doc of matched) {
        const next = applyUpdate(doc, u, { kind, arrayFilters, condition: q, isInsert: false, opts });
        result.n++;
        const before = serialize(doc, BSON_SERIALIZE);
        const after = serialize(next, BSON_SERIALIZE);
        if (after.length > MAX_BSON_SIZE) fail(17419, `Resulting document after update is larger than ${MAX_BSON_SIZE}`);
        if (!before.equals(after)) {
            c.replace(valueKey(doc._id), next);
            result.nModified++;
        }
    }
    if (matched.length === 0 && upsert) {
        const doc = upsertDocument(q, u, kind, arrayFilters, opts);
        c.insert(doc);
        result.n++;
        result.upserted.push({ index: i, _id: doc._id });
    }
}

function upsertDocument(q, u, kind, arrayFilters, opts) {
    const seed = upsertSeed(q, opts);
    let doc;
    if (kind === "replacement") {
        doc = clone(u);
        if (doc._id === undefined && seed._id !== undefined) doc = { _id: seed._id, ...doc };
    } else {
        doc = applyUpdate(seed, u, { kind, arrayFilters, condition: {}, isInsert: true, opts });
    }
    doc = prepareInsert(doc);
    checkSize(doc, "upserted document");
    return doc;
}

export function update(ctx) {
    const { body, server, db } = ctx;
    checkFields("update", body, ["updates", "ordered", "bypassDocumentValidation", "let"]);
    const coll = writableColl(ctx);
    const stmts = batchArg("update", body, "updates");
    stmts.forEach(parseUpdateStatement);
    const ordered = boolArg("update", body, "ordered", true);
    const letDoc = docArg("update", body, "let");
    const c = server.store.ensureCollection(db, coll);
    const result = { n: 0, nModified: 0, upserted: [] };
    const writeErrors = runBatch(stmts, ordered, (stmt, i) => updateStatement(ctx, c, stmt, i, result, letDoc));
    const reply = { n: result.n, nModified: result.nModified };
    if (result.upserted.length) reply.upserted = result.upserted;
    if (writeErrors.length) reply.writeErrors = writeErrors;
    return reply;
}

// mongod reports `delete` under this name in IDL messages.
export function del(ctx) {
    const { body, server, db } = ctx;
    checkFields("delete", body, ["deletes", "ordered", "let"]);
    const coll = writableColl(ctx);
    const stmts = batchArg("delete", body, "deletes");
    const ordered = boolArg("delete", body, "ordered", true);
    const opts = withVariables(ctx, docArg("delete", body, "let"));
    const c = server.store.collection(db, coll);
    let n = 0;
    stmts.forEach(parseDeleteStatement);
    const writeErrors = runBatch(stmts, ordered, (stmt) => {
        const q = stmt.q;
        const limit = intArg("delete.deletes", stmt, "limit");
        if (!c) return;
        let matched = matching(c, q, opts);
        if (limit === 1) matched = matched.slice(0, 1);
        for (const d of matched) if (c.remove(valueKey(d._id))) n++;
    });
    return writeErrors.length ? { n, writeErrors } : { n };
}

export function findAndModify(ctx) {
    const { body, server, db } = ctx;
    const cmd = ctx.name;
    checkFields(cmd, body, ["query", "sort", "remove", "update", "new", "fields", "upsert", "bypassDocumentValidation",
        "collation", "arrayFilters", "hint", "let"]);
    const coll = writableColl(ctx);
    const query = docArg(cmd, body, "query") || {};
    const sort = docArg(cmd, body, "sort");
    const fields = docArg(cmd, body, "fields");
    const remove = boolArg(cmd, body, "remove");
    const returnNew = boolArg(cmd, body, "new");
    const upsert = boolArg(cmd, body, "upsert");
    const arrayFilters = arrayArg(cmd, body, "arrayFilters");
    const u = body.update;
    if (remove && u !== undefined) fail(CODES.FailedToParse, "Cannot specify both an update and remove=true");
    if (!remove && u === undefined) fail(CODES.FailedToParse, "Either an update or remove=true must be specified");
    if (remove && (upsert || returnNew)) fail(CODES.FailedToParse, "Cannot specify both upsert=true and remove=true");
    const opts = withVariables(ctx, docArg(cmd, body, "let"));
    const c = server.store.ensureCollection(db, coll);
    const matched = sortDocs(matching(c, query, opts), sort, opts);
    const doc = matched[0];
    if (remove) {
        if (!doc) return { lastErrorObject: { n: 0 }, value: null };
        c.remove(valueKey(doc._id));
        return { lastErrorObject: { n: 1 }, value: project(doc, fields, opts) };
    }
    const kind = updateKind(u);
    if (doc) {
        const next = applyUpdate(doc, u, { kind, arrayFilters, condition: query, isInsert: false, opts });
        if (!serialize(doc, BSON_SERIALIZE).equals(serialize(next, BSON_SERIALIZE))) c.replace(valueKey(doc._id), next);
        return { lastErrorObject: { n: 1, updatedExisting: true }, value: project(returnNew ? next : doc, fields, opts) };
    }
    if (!upsert) return { lastErrorObject: { n: 0, updatedExisting: false }, value: null };
    const created = upsertDocument(query, u, kind, arrayFilters, opts);
    c.insert(created);
    return {
        lastErrorObject: { n: 1, updatedExisting: false, upserted: created._id },
        value: returnNew ? project(created, fields, opts) : null,
    };
}

// ---- aggregate ---------------------------------------------------------------------------------

export function aggregate(ctx) {
    const { body, server, db } = ctx;
    checkFields("aggregate", body, ["pipeline", "cursor", "explain", "allowDiskUse", "bypassDocumentValidation",
        "collation", "hint", "let", "fromMongos", "needsMerge", "isMapReduceCommand", "$_requestReshardingResumeToken"]);
    const target = body.aggregate;
    let coll = null;
    if (typeof target === "string") coll = collArg(ctx);
    else if (target !== 1) {
        fail(CODES.FailedToParse, "Invalid command format: the 'aggregate' field must specify a collection name or 1");
    }
    const pipeline = arrayArg("aggregate", body, "pipeline", { required: true });
    checkPipeline(pipeline);
    const explain = boolArg("aggregate", body, "explain");
    const cursorSpec = docArg("aggregate", body, "cursor");
    if (!cursorSpec && !explain) fail(CODES.FailedToParse, "The 'cursor' option is required, except for aggregate with the explain argument");
    const batchSize = cursorSpec ? intArg("aggregate.cursor", cursorSpec, "batchSize", { min: 0 }) : undefined;
    const opts = withVariables(ctx, docArg("aggregate", body, "let"));
    if (coll === null && pipeline.length && !("$documents" in pipeline[0])) {
        fail(CODES.InvalidNamespace, `{aggregate: 1} is not valid for '${Object.keys(pipeline[0])[0]}'; a collection is required.`);
    }
    const ns = coll === null ? `${db}.$cmd.aggregate` : `${db}.${coll}`;
    if (explain) return explainPlan(ns, pipeline.find((s) => s.$match)?.$match || {}, { aggregate: target, pipeline });
    const last = pipeline[pipeline.length - 1];
    const writeStage = last && ("$out" in last || "$merge" in last) ? last : null;
    const stages = writeStage ? pipeline.slice(0, -1) : pipeline;
    const input = coll === null ? [] : (server.store.collection(db, coll)?.all() || []);
    // $documents with an empty input must still run once: mingo treats it as the source.
    const docs = runPipeline(coll === null ? [{}] : input, stages, opts);
    if (writeStage) {
        if ("$out" in writeStage) writeOut(ctx, writeStage.$out, docs);
        else writeMerge(ctx, writeStage.$merge, docs, opts);
        return server.cursors.open(ns, [], { batchSize: 0, singleBatch: true, lsidKey: ctx.lsidKey });
    }
    return server.cursors.open(ns, docs, { batchSize, lsidKey: ctx.lsidKey });
}

export function explainPlan(ns, filter, command) {
    return {
        explainVersion: "1",
        queryPlanner: {
            namespace: ns,
            parsedQuery: filter,
            winningPlan: { stage: "COLLSCAN", filter, direction: "forward" },
            rejectedPlans: [],
        },
        command,
    };
}

function targetNs(ctx, spec, stage) {
    let db = ctx.db, coll;
    if (typeof spec === "string") coll = spec;
    else if (isDoc(spec)) {
        coll = spec.coll;
        if (spec.db !== undefined) db = spec.db;
    }
    if (typeof coll !== "string" || typeof db !== "string") fail(CODES.FailedToParse, `${stage} target must be a collection name or {db, coll}`);
    validateDbName(db);
    validateCollName(db, coll);
    if (coll.startsWith("system.")) fail(CODES.InvalidNamespace, `Invalid ${stage} target namespace: ${db}.${coll}`);
    return { db, coll };
}

function writeOut(ctx, spec, docs) {
    const { db, coll } = targetNs(ctx, spec, "$out");
    const store = ctx.server.store;
    const existing = store.collection(db, coll);
    // Build the new contents aside, so a duplicate _id leaves the target as it was.
    const scratch = new Collection({ name: db, store: { tick() {} } }, coll);
    if (existing) scratch.indexes = existing.indexes.map(clone);
    for (const d of docs) scratch.insert(prepareInsert(d));
    const target = store.ensureCollection(db, coll);
    target.docs = scratch.docs;
    store.tick();
}

function writeMerge(ctx, spec, docs, opts) {
    if (typeof spec === "string" || (isDoc(spec) && !("into" in spec) && "coll" in spec)) spec = { into: spec };
    if (!isDoc(spec)) fail(CODES.FailedToParse, "$merge requires a string or an object argument");
    const { db, coll } = targetNs(ctx, spec.into, "$merge");
    let on = spec.on === undefined ? ["_id"] : spec.on;
    if (typeof on === "string") on = [on];
    if (!Array.isArray(on) || on.length === 0 || on.some((f) => typeof f !== "string")) fail(51186, "$merge 'on' field must be a string or an array of strings");
    const whenMatched = spec.whenMatched === undefined ? "merge" : spec.whenMatched;
    const whenNotMatched = spec.whenNotMatched === undefined ? "insert" : spec.whenNotMatched;
    if (!Array.isArray(whenMatched) && !["merge", "replace", "keepExisting", "fail"].includes(whenMatched)) fail(CODES.BadValue, `Enumeration value '${whenMatched}' for field '$merge.whenMatched' is not a valid value.`);
    if (!["insert", "discard", "fail"].includes(whenNotMatched)) fail(CODES.BadValue, `Enumeration value '${whenNotMatched}' for field '$merge.whenNotMatched' is not a valid value.`);
    const target = ctx.server.store.ensureCollection(db, coll);
    const onKey = new Set(on);
    if (!(on.length === 1 && on[0] === "_id")) {
        const ok = target.indexes.some((ix) => ix.unique && Object.keys(ix.key).length === onKey.size && Object.keys(ix.key).every((k) => onKey.has(k)));
        if (!ok) fail(51183, "Cannot find index to verify that join fields will be unique");
    }
    const keyOf = (d) => on.map((f) => valueKey(getPath(d, f))).join("|");
    for (const src of docs) {
        for (const f of on) {
            const v = getPath(src, f);
            if (v === undefined || v === null || Array.isArray(v)) fail(51132, "$merge write error: 'on' field cannot be missing, null, undefined or an array");
        }
        const k = keyOf(src);
        const match = target.all().find((d) => keyOf(d) === k);
        if (!match) {
            if (whenNotMatched === "insert") target.insert(prepareInsert(clone(src)));
            else if (whenNotMatched === "fail") fail(13113, "$merge could not find a matching document in the target collection for at least one document in the source collection");
            continue;
        }
        if (whenMatched === "keepExisting") continue;
        if (whenMatched === "fail") target.dupKey({ _id: 1 }, "_id_", match);
        let next;
        if (whenMatched === "replace") next = { _id: match._id, ...clone(src) };
        else if (whenMatched === "merge") next = { ...clone(match), ...clone(src) };
        else next = applyUpdate(match, whenMatched, { kind: "pipeline", opts: { ...opts, variables: { ...(opts.variables || {}), ...mergeVariables(spec.let, src, opts) } } });
        if (!sameValue(next._id, match._id)) fail(CODES.ImmutableField, "$merge failed to update the matching document, did you attempt to modify the _id or the shard key?");
        target.replace(valueKey(match._id), prepareInsert(next));
    }
}

/** $merge's `let` evaluated against the source document (default: {new: "$$ROOT"}). */
function mergeVariables(letSpec, src, opts) {
    const spec = letSpec === undefined ? { new: "$$ROOT" } : letSpec;
    if (!isDoc(spec)) fail(CODES.TypeMismatch, "$merge 'let' must be an object");
    const vars = {};
    for (const [name, expr] of Object.entries(spec)) vars[name] = runPipeline([src], [{ $replaceWith: { v: expr } }], opts)[0]?.v;
    return vars;
}
