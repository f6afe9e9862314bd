// MongoDB query, update and aggregation semantics, delegated to mingo, with
// what mingo leaves to a server: checking operator and stage names, compiling
// server-side JavaScript ($where, $function, $accumulator) in a separate V8
// context, copying stored documents before mingo mutates them, resolving
// $lookup/$unionWith/$graphLookup collection names in the same database, and
// building upsert documents from a query's equality conditions.

import vm from "node:vm";
import * as mingo from "mingo";
import { BSONRegExp, Code } from "bson";
import { CODES, MongoError, fail, fromEngine } from "./errors.mjs";
import { clone, valueKey } from "./store.mjs";

// The stages mingo implements; $out and $merge are the server's (crud.mjs).
export const STAGES = new Set([
    "$addFields", "$bucket", "$bucketAuto", "$count", "$densify", "$documents", "$facet", "$fill",
    "$graphLookup", "$group", "$limit", "$lookup", "$match", "$project", "$redact", "$replaceRoot",
    "$replaceWith", "$sample", "$set", "$setWindowFields", "$skip", "$sort", "$sortByCount",
    "$unionWith", "$unset", "$unwind",
]);
const UPDATE_STAGES = new Set(["$addFields", "$set", "$project", "$unset", "$replaceRoot", "$replaceWith"]);
export const UPDATE_OPERATORS = new Set([
    "$set", "$unset", "$inc", "$mul", "$rename", "$setOnInsert", "$min", "$max", "$currentDate",
    "$push", "$addToSet", "$pop", "$pull", "$pullAll", "$bit",
]);

// ---- server-side JavaScript --------------------------------------------------------------------

const sandbox = vm.createContext(Object.create(null));

function compileJs(src, what) {
    const code = src instanceof Code ? src.code : src;
    if (typeof code === "function") return code;
    if (typeof code !== "string") fail(CODES.TypeMismatch, `${what} must be a string or JavaScript code`);
    const text = /^\s*function\b/.test(code) ? `(${code})` : `(function() { return (${code}); })`;
    try {
        return vm.runInContext(text, sandbox, { timeout: 1000 });
    } catch (e) {
        fail(139, `SyntaxError in ${what}: ${e.message}`);
    }
}

/** PCRE's anchors \A, \z and \Z (which MongoDB's regexes have and JavaScript's lack) as lookarounds. */
function pcreAnchors(pattern) {
    let out = "";
    let inClass = false;
    for (let i = 0; i < pattern.length; i++) {
        const ch = pattern[i];
        if (ch === "\\" && i + 1 < pattern.length) {
            const next = pattern[++i];
            if (!inClass && next === "z") out += "(?![\\s\\S])";
            else if (!inClass && next === "Z") out += "(?=\\n?(?![\\s\\S]))";
            else if (!inClass && next === "A") out += "(?<![\\s\\S])";
            else out += ch + next;
            continue;
        }
        if (ch === "[") inClass = true;
        else if (ch === "]") inClass = false;
        out += ch;
    }
    return out;
}

/** A BSON regular expression as a JavaScript one (flags JavaScript lacks, such as x and l, dropped). */
function jsRegExp(r) {
    const flags = [...new Set(r.options.split("").filter((f) => "imsu".includes(f)))].join("");
    try {
        return new RegExp(pcreAnchors(r.pattern), flags);
    } catch (e) {
        fail(51091, `Regular expression is invalid: ${e.message}`);
    }
}

/**
 * A copy of a filter/pipeline with its JavaScript compiled into functions mingo
 * can call and its BSON regular expressions turned into JavaScript ones.
 */
export function compileScripts(v) {
    if (Array.isArray(v)) return v.map(compileScripts);
    if (v instanceof BSONRegExp) return jsRegExp(v);
    if (v === null || typeof v !== "object" || Object.getPrototypeOf(v) !== Object.prototype) return v;
    const out = {};
    for (const [k, x] of Object.entries(v)) {
        if (k === "$where") out[k] = compileJs(x, "$where");
        else if (k === "$function" && x && typeof x === "object") {
            out[k] = { ...compileScripts(x), body: compileJs(x.body, "$function") };
        } else if (k === "$accumulator" && x && typeof x === "object") {
            const acc = compileScripts(x);
            for (const f of ["init", "accumulate", "merge", "finalize"]) if (x[f] !== undefined) acc[f] = compileJs(x[f], `$accumulator.${f}`);
            out[k] = acc;
        } else out[k] = compileScripts(x);
    }
    return out;
}

// ---- options -----------------------------------------------------------------------------------

/** mingo options for one command in database `db`: names resolve to copies of that db's collections. */
export function engineOptions(store, db, variables) {
    return {
        collectionResolver: (name) => {
            const c = store.collection(db, name);
            return c ? c.all().map(clone) : [];
        },
        scriptEnabled: true,
        useStrictMode: true,
        variables: variables || undefined,
    };
}

// ---- queries -----------------------------------------------------------------------------------

/** mongod's checks mingo does not make: $and/$or/$nor take a non-empty array of objects. */
function checkFilter(filter) {
    for (const [k, v] of Object.entries(filter)) {
        if (k === "$and" || k === "$or" || k === "$nor") {
            if (!Array.isArray(v) || v.length === 0) fail(CODES.BadValue, `${k} must be a nonempty array`);
            for (const sub of v) {
                if (sub === null || typeof sub !== "object" || Array.isArray(sub)) fail(CODES.BadValue, `${k} argument's entries must be objects`);
                checkFilter(sub);
            }
        }
    }
}

/** A sort specification: each value 1, -1 or {$meta: ...}. */
export function checkSort(sort) {
    if (!sort) return;
    for (const [k, v] of Object.entries(sort)) {
        if (v === 1 || v === -1 || (v && typeof v === "object" && "$meta" in v)) continue;
        fail(15974, `Illegal key in $sort specification: ${k}: ${JSON.stringify(v)}`);
    }
}

/** A compiled filter: test(doc) -> bool. Bad operators become BadValue errors. */
export function matcher(filter, opts) {
    if (filter === undefined || filter === null) filter = {};
    if (typeof filter !== "object" || Array.isArray(filter)) fail(CODES.TypeMismatch, "filter must be an object");
    checkFilter(filter);
    try {
        const q = new mingo.Query(compileScripts(filter), opts);
        return { query: q, test: (d) => q.test(d) };
    } catch (e) {
        throw fromEngine(e);
    }
}

/** Documents of `docs` matching filter, sorted, skipped, limited and projected (copies). */
export function runFind(docs, { filter, sort, skip, limit, projection }, opts) {
    checkSort(sort);
    try {
        const m = matcher(filter, opts);
        let matched = docs.filter(m.test);
        const copies = matched.map(clone);
        let cur = mingo.find(copies, {}, projection && Object.keys(projection).length ? projection : undefined, opts);
        if (sort && Object.keys(sort).length) cur = cur.sort(sort);
        if (skip) cur = cur.skip(skip);
        if (limit) cur = cur.limit(limit);
        return cur.all();
    } catch (e) {
        throw fromEngine(e);
    }
}

/** Sorts documents (copies not needed: sort does not mutate them). */
export function sortDocs(docs, sort, opts) {
    checkSort(sort);
    if (!sort || Object.keys(sort).length === 0) return docs;
    try {
        return mingo.find(docs, {}, undefined, opts).sort(sort).all();
    } catch (e) {
        throw fromEngine(e);
    }
}

export function project(doc, projection, opts) {
    if (!projection || Object.keys(projection).length === 0) return doc;
    try {
        return mingo.find([clone(doc)], {}, projection, opts).all()[0];
    } catch (e) {
        throw fromEngine(e);
    }
}

// ---- pipelines ---------------------------------------------------------------------------------

/** Checks stage names and $lookup/$unionWith/$graphLookup shapes, recursively. */
export function checkPipeline(pipeline, { nested = false, allowed = STAGES } = {}) {
    if (!Array.isArray(pipeline)) fail(CODES.TypeMismatch, "'pipeline' option must be specified as an array");
    pipeline.forEach((stage, i) => {
        if (stage === null || typeof stage !== "object" || Array.isArray(stage)) {
            fail(CODES.TypeMismatch, "Each element of the 'pipeline' array must be an object");
        }
        const keys = Object.keys(stage);
        if (keys.length !== 1) fail(40323, "A pipeline stage specification object must contain exactly one field.");
        const name = keys[0];
        const spec = stage[name];
        if ((name === "$out" || name === "$merge") && !nested && allowed === STAGES) {
            if (i !== pipeline.length - 1) fail(40601, `${name} can only be the final stage in the pipeline`);
            return;
        }
        if (!allowed.has(name)) {
            if (allowed !== STAGES && STAGES.has(name)) fail(CODES.InvalidOptions, `${name} is not allowed to be used within an update`);
            fail(40324, `Unrecognized pipeline stage name: '${name}'`);
        }
        if (name === "$lookup") {
            if (!spec || typeof spec !== "object") fail(CODES.FailedToParse, "the $lookup stage specification must be an object");
            if (spec.from !== undefined && typeof spec.from !== "string") fail(CODES.FailedToParse, "$lookup 'from' field must be a string");
            if (spec.from === undefined && !(Array.isArray(spec.pipeline) && spec.pipeline[0]?.$documents)) {
                fail(CODES.FailedToParse, "missing 'from' option to $lookup stage specification");
            }
            if (typeof spec.as !== "string") fail(CODES.FailedToParse, "must specify 'as' field for a $lookup");
            if (spec.pipeline !== undefined) checkPipeline(spec.pipeline, { nested: true });
        } else if (name === "$graphLookup") {
            if (!spec || typeof spec.from !== "string") fail(40103, "$graphLookup 'from' must be a string");
        } else if (name === "$unionWith") {
            const coll = typeof spec === "string" ? spec : spec?.coll;
            if (typeof coll !== "string") fail(CODES.FailedToParse, "$unionWith 'coll' must be a string");
            if (typeof spec === "object" && spec.pipeline !== undefined) checkPipeline(spec.pipeline, { nested: true });
        } else if (name === "$facet") {
            if (!spec || typeof spec !== "object") fail(40169, "the $facet specification must be a non-empty object");
            for (const sub of Object.values(spec)) checkPipeline(sub, { nested: true });
        }
    });
}

/**
 * MongoDB 5.0's concise correlated $lookup (localField/foreignField *and* a
 * pipeline: the equality match, then the pipeline) spelled as the let/pipeline
 * form mingo runs; nested pipelines ($lookup, $unionWith, $facet) likewise.
 */
function normalizeLookups(pipeline) {
    if (!Array.isArray(pipeline)) return pipeline;
    return pipeline.map((stage) => {
        const name = Object.keys(stage)[0];
        const spec = stage[name];
        if (name === "$lookup" && spec && typeof spec === "object") {
            const out = { ...spec };
            if (Array.isArray(spec.pipeline)) out.pipeline = normalizeLookups(spec.pipeline);
            if (Array.isArray(spec.pipeline) && typeof spec.localField === "string" && typeof spec.foreignField === "string") {
                delete out.localField;
                delete out.foreignField;
                out.let = { ...(spec.let || {}), tgLocalField: `$${spec.localField}` };
                const ff = `$${spec.foreignField}`;
                const eq = { $cond: [{ $isArray: "$$tgLocalField" }, { $in: [ff, "$$tgLocalField"] }, { $eq: [ff, "$$tgLocalField"] }] };
                out.pipeline = [{ $match: { $expr: eq } }, ...out.pipeline];
            }
            return { [name]: out };
        }
        if (name === "$unionWith" && spec && typeof spec === "object" && Array.isArray(spec.pipeline)) {
            return { [name]: { ...spec, pipeline: normalizeLookups(spec.pipeline) } };
        }
        if (name === "$facet" && spec && typeof spec === "object") {
            return { [name]: Object.fromEntries(Object.entries(spec).map(([k, v]) => [k, normalizeLookups(v)])) };
        }
        return stage;
    });
}

/** Runs a checked pipeline over copies of docs. */
export function runPipeline(docs, pipeline, opts) {
    try {
        return mingo.aggregate(docs.map(clone), compileScripts(normalizeLookups(pipeline)), opts);
    } catch (e) {
        throw fromEngine(e);
    }
}

// ---- updates -----------------------------------------------------------------------------------

/** "replacement", "operators" or "pipeline"; throws FailedToParse on a mix. */
export function updateKind(u) {
    if (Array.isArray(u)) return "pipeline";
    if (u === null || typeof u !== "object") fail(CODES.FailedToParse, "Update argument must be either an object or an array");
    const keys = Object.keys(u);
    if (keys.length === 0 || !keys[0].startsWith("$")) {
        for (const k of keys) if (k.startsWith("$")) fail(CODES.FailedToParse, `The dollar ($) prefixed field '${k}' in '${k}' is not allowed in the context of an update's replacement document.`);
        return "replacement";
    }
    for (const k of keys) {
        if (!UPDATE_OPERATORS.has(k)) {
            fail(CODES.FailedToParse, `Unknown modifier: ${k}. Expected a valid update modifier or pipeline-style update specified as an array`);
        }
        if (u[k] === null || typeof u[k] !== "object" || Array.isArray(u[k])) {
            fail(CODES.FailedToParse, `Modifiers operate on fields but we found type ${Array.isArray(u[k]) ? "array" : typeof u[k]} instead.`);
        }
    }
    return "operators";
}

/**
 * Applies update `u` to a copy of doc. Returns the new document (or the same
 * object when nothing changed). isInsert: an upsert's new document ($setOnInsert applies).
 */
export function applyUpdate(doc, u, { kind, arrayFilters, condition, isInsert, opts }) {
    let out;
    if (kind === "replacement") {
        if (u._id !== undefined && doc._id !== undefined && !sameValue(u._id, doc._id)) immutableId();
        out = { _id: doc._id !== undefined ? doc._id : u._id };
        for (const k of Object.keys(u)) if (k !== "_id") out[k] = u[k];
        if (out._id === undefined) delete out._id;
        return clone(out);
    }
    out = clone(doc);
    if (kind === "pipeline") {
        checkPipeline(u, { allowed: UPDATE_STAGES });
        try {
            out = mingo.aggregate([out], compileScripts(u), opts)[0];
        } catch (e) {
            throw fromEngine(e);
        }
        if (doc._id !== undefined && !sameValue(out._id, doc._id)) immutableId();
        return out;
    }
    const mod = {};
    for (const [op, fields] of Object.entries(u)) {
        if (op === "$setOnInsert") {
            if (isInsert) mod.$set = { ...(mod.$set || {}), ...fields };
            continue;
        }
        mod[op] = op === "$set" && mod.$set ? { ...mod.$set, ...fields } : fields;
    }
    for (const fields of Object.values(mod)) {
        for (const path of Object.keys(fields)) if ((path === "_id" || path.startsWith("_id.")) && !isInsert) idPathTouched(mod, doc);
    }
    // mingo refuses any $set of _id; mongod allows it on an upsert's new document and as a no-op.
    if (mod.$set && Object.prototype.hasOwnProperty.call(mod.$set, "_id")) {
        const { _id, ...rest } = mod.$set;
        if (out._id === undefined) out = { _id: clone(_id), ...out };
        mod.$set = rest;
    }
    try {
        if (Object.keys(mod).length) mingo.update(out, mod, arrayFilters || [], condition, { queryOptions: opts });
    } catch (e) {
        if (e instanceof MongoError) throw e;
        fail(/immutable field/.test(e.message) ? CODES.ImmutableField : CODES.BadValue, e.message);
    }
    if (doc._id !== undefined && !sameValue(out._id, doc._id)) immutableId();
    return out;
}

function idPathTouched(mod, doc) {
    // $set of _id to its current value is allowed; anything else on _id is not.
    for (const [op, fields] of Object.entries(mod)) {
        for (const [path, val] of Object.entries(fields)) {
            if (path !== "_id" && !path.startsWith("_id.")) continue;
            if (op === "$set" && path === "_id" && sameValue(val, doc._id)) continue;
            immutableId();
        }
    }
}

function immutableId() {
    fail(CODES.ImmutableField, "Performing an update on the path '_id' would modify the immutable field '_id'");
}

export function sameValue(a, b) {
    return valueKey(a) === valueKey(b);
}

/** The document an upsert starts from: the query's equality conditions (top level and $and). */
export function upsertSeed(q, opts) {
    const sets = {};
    const walk = (cond) => {
        if (!cond || typeof cond !== "object") return;
        for (const [k, v] of Object.entries(cond)) {
            if (k === "$and" && Array.isArray(v)) v.forEach(walk);
            else if (k.startsWith("$")) continue;
            else if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype && Object.keys(v).some((x) => x.startsWith("$"))) {
                if (Object.prototype.hasOwnProperty.call(v, "$eq")) sets[k] = v.$eq;
            } else sets[k] = v;
        }
    };
    walk(q);
    const seed = {};
    if (Object.prototype.hasOwnProperty.call(sets, "_id")) {
        seed._id = clone(sets._id);
        delete sets._id;
    }
    if (Object.keys(sets).length) {
        try {
            mingo.update(seed, { $set: clone(sets) }, [], undefined, { queryOptions: opts });
        } catch (e) {
            fail(CODES.BadValue, e.message);
        }
    }
    return seed;
}
