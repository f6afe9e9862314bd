// In-memory databases, collections and indexes.
//
//   Store --name--> Database --name--> Collection { docs: Map<idKey, doc>, indexes }
//
// A stored document is never mutated: a write builds a new object (clone +
// change) and swaps it in, so cursors holding earlier results keep a stable
// snapshot. Documents are kept in insertion order (a Map keeps the slot of a
// replaced key), which is the "natural order" finds return without a sort.
// Unique indexes (_id always) are enforced on every write; other indexes are
// recorded for listIndexes only.

import { ObjectId, UUID, EJSON, calculateObjectSize, Long, Decimal128, Int32, Double } from "bson";
import { CODES, MongoError, fail } from "./errors.mjs";

const DB_INVALID = /[/\\. "$\0]/;

export function validateDbName(db) {
    if (db === "$external") return; // the virtual database of external (PLAIN, X.509, OIDC) users
    if (typeof db !== "string" || db.length === 0 || DB_INVALID.test(db)) {
        fail(CODES.InvalidNamespace, `Invalid database name: '${db}'`);
    }
    if (Buffer.byteLength(db) >= 64) fail(CODES.InvalidNamespace, `db name is too long: '${db}'`);
}

export function validateCollName(db, coll) {
    if (typeof coll !== "string") fail(CODES.InvalidNamespace, "collection name has invalid type");
    if (coll.length === 0 || coll.includes("$") || coll.includes("\0") || coll.startsWith(".")) {
        fail(CODES.InvalidNamespace, `Invalid collection name: ${db}.${coll}`);
    }
    if (Buffer.byteLength(`${db}.${coll}`) > 255) fail(CODES.InvalidNamespace, `Fully qualified namespace is too long: ${db}.${coll}`);
}

/** A plain-object/array deep copy; BSON value objects (ObjectId, Binary, ...) are shared, they are immutable. */
export function clone(v) {
    if (Array.isArray(v)) return v.map(clone);
    if (v instanceof Date) return new Date(v.getTime());
    if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
        const out = {};
        for (const k of Object.keys(v)) out[k] = clone(v[k]);
        return out;
    }
    return v;
}

/** A string equal for values MongoDB's _id index treats as equal (1, 1.0 and Long(1) alike). */
export function valueKey(v) {
    if (v === undefined || v === null) return "z:";
    if (typeof v === "number") return `n:${v}`;
    if (typeof v === "string") return `s:${v}`;
    if (typeof v === "boolean") return `b:${v}`;
    if (typeof v === "bigint") return `n:${v}`;
    if (v instanceof ObjectId) return `o:${v.toHexString()}`;
    if (v instanceof Date) return `t:${v.getTime()}`;
    if (v instanceof Long) return `n:${Number.isSafeInteger(v.toNumber()) ? v.toNumber() : v.toString()}`;
    if (v instanceof Int32 || v instanceof Double) return `n:${v.valueOf()}`;
    if (v instanceof Decimal128) return `n:${Number(v.toString())}`;
    if (Array.isArray(v)) return `a:[${v.map(valueKey).join(",")}]`;
    if (Object.getPrototypeOf(v) === Object.prototype) {
        return `d:{${Object.keys(v).map((k) => `${JSON.stringify(k)}:${valueKey(v[k])}`).join(",")}}`;
    }
    return `x:${EJSON.stringify(v, { relaxed: false })}`;
}

/** The value at a dotted path (no array traversal), or undefined. */
export function getPath(doc, path) {
    let cur = doc;
    for (const part of path.split(".")) {
        if (cur === null || typeof cur !== "object") return undefined;
        cur = cur[part];
    }
    return cur;
}

function idKeyOf(doc) {
    return valueKey(doc._id);
}

function formatKeyValue(key, doc) {
    const kv = {};
    for (const f of Object.keys(key)) kv[f] = getPath(doc, f) ?? null;
    return kv;
}

function shortJson(v) {
    return EJSON.stringify(v, { relaxed: true }).replace(/"([A-Za-z_$][\w$]*)":/g, "$1: ").replace(/,/g, ", ");
}

export class Collection {
    constructor(db, name, options = {}) {
        this.db = db;
        this.name = name;
        this.options = options;
        this.uuid = new UUID();
        this.docs = new Map();
        this.indexes = [{ v: 2, key: { _id: 1 }, name: "_id_" }];
    }

    get ns() {
        return `${this.db.name}.${this.name}`;
    }

    /** Every document, in natural order; the array is new, the documents are shared (read-only). */
    all() {
        return Array.from(this.docs.values());
    }

    get(idKey) {
        return this.docs.get(idKey);
    }

    uniqueIndexes() {
        return this.indexes.filter((ix) => ix.unique && ix.name !== "_id_");
    }

    checkUnique(doc, ignoreIdKey) {
        const idk = idKeyOf(doc);
        if (idk !== ignoreIdKey && this.docs.has(idk)) this.dupKey({ _id: 1 }, "_id_", doc);
        for (const ix of this.uniqueIndexes()) {
            const fields = Object.keys(ix.key);
            const want = fields.map((f) => valueKey(getPath(doc, f))).join("|");
            for (const [k, other] of this.docs) {
                if (k === ignoreIdKey) continue;
                if (fields.map((f) => valueKey(getPath(other, f))).join("|") === want) this.dupKey(ix.key, ix.name, doc);
            }
        }
    }

    dupKey(key, name, doc) {
        const kv = formatKeyValue(key, doc);
        throw new MongoError(
            CODES.DuplicateKey,
            `E11000 duplicate key error collection: ${this.ns} index: ${name} dup key: ${shortJson(kv)}`,
            { keyPattern: key, keyValue: kv },
        );
    }

    /** Adds a prepared document (with _id); throws DuplicateKey. */
    insert(doc) {
        this.checkUnique(doc, undefined);
        this.docs.set(idKeyOf(doc), doc);
        this.db.store.tick();
    }

    /** Replaces the document stored under oldIdKey by doc (same _id). */
    replace(oldIdKey, doc) {
        this.checkUnique(doc, oldIdKey);
        this.docs.set(oldIdKey, doc);
        this.db.store.tick();
    }

    remove(idKey) {
        const had = this.docs.delete(idKey);
        if (had) this.db.store.tick();
        return had;
    }

    clear() {
        this.docs.clear();
    }

    dataSize() {
        let n = 0;
        for (const d of this.docs.values()) n += calculateObjectSize(d);
        return n;
    }
}

export class Database {
    constructor(store, name) {
        this.store = store;
        this.name = name;
        this.collections = new Map();
    }
}

export class Store {
    constructor() {
        this.dbs = new Map();
        this.clusterTime = { t: Math.floor(Date.now() / 1000), i: 1 };
    }

    /** Advances the cluster time (seconds, increment) on every write. */
    tick() {
        const now = Math.floor(Date.now() / 1000);
        if (now > this.clusterTime.t) this.clusterTime = { t: now, i: 1 };
        else this.clusterTime = { t: this.clusterTime.t, i: this.clusterTime.i + 1 };
    }

    database(name) {
        return this.dbs.get(name);
    }

    collection(db, name) {
        return this.dbs.get(db)?.collections.get(name);
    }

    /** The collection, created (and its database) when missing. */
    ensureCollection(db, name, options = {}) {
        validateDbName(db);
        validateCollName(db, name);
        let d = this.dbs.get(db);
        if (!d) {
            d = new Database(this, db);
            this.dbs.set(db, d);
        }
        let c = d.collections.get(name);
        if (!c) {
            c = new Collection(d, name, options);
            d.collections.set(name, c);
            this.tick();
        }
        return c;
    }

    dropCollection(db, name) {
        const d = this.dbs.get(db);
        const c = d?.collections.get(name);
        if (!c) return null;
        d.collections.delete(name);
        if (d.collections.size === 0) this.dbs.delete(db);
        this.tick();
        return c;
    }

    dropDatabase(db) {
        const had = this.dbs.delete(db);
        if (had) this.tick();
        return had;
    }
}

/** Moves _id to the front (creating an ObjectId when absent), as mongod does on insert. */
export function prepareInsert(doc) {
    if (doc === null || typeof doc !== "object" || Array.isArray(doc)) fail(CODES.TypeMismatch, "document to insert must be an object");
    const id = Object.prototype.hasOwnProperty.call(doc, "_id") ? doc._id : new ObjectId();
    checkIdValue(id);
    const out = { _id: id };
    for (const k of Object.keys(doc)) if (k !== "_id") out[k] = doc[k];
    return out;
}

export function checkIdValue(id) {
    if (Array.isArray(id)) fail(CODES.InvalidIdField, `The '_id' value cannot be of type array`);
    if (id instanceof RegExp || (id && id._bsontype === "BSONRegExp")) fail(CODES.InvalidIdField, `The '_id' value cannot be of type regex`);
    if (id === undefined) fail(CODES.InvalidIdField, `The '_id' value cannot be undefined`);
}
