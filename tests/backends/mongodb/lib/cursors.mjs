// Server-side cursors: a snapshot of result documents handed out in batches.
//
//   find/aggregate/list* --open()--> Cursor{id, ns, docs, pos}
//        firstBatch = batch(n)       (id 0 when the first batch exhausts it)
//   getMore(id)     --> nextBatch    (closed and forgotten when exhausted)
//   killCursors(id) --> forgotten
//
// Ids are random positive 63-bit integers sent as Int64, like mongod's.
// Cursors are global to the server (any connection of the same user may
// continue one) but bound to the logical session that created them. A batch
// stops at its count or when it would pass 16 MiB (at least one document);
// idle cursors are dropped after 10 minutes.

import crypto from "node:crypto";
import { serialize, Long } from "bson";
import { BSON_SERIALIZE, MAX_BSON_SIZE, RawArray } from "./wire.mjs";

export const DEFAULT_FIRST_BATCH = 101;
const IDLE_MS = 10 * 60 * 1000;
// A batch leaves room for the reply's own fields within one BSON object.
const BATCH_BYTES = MAX_BSON_SIZE - 64 * 1024;

export class Cursor {
    constructor(id, ns, docs, lsidKey, limit) {
        this.id = id;
        this.ns = ns;
        this.docs = docs;
        this.pos = 0;
        this.lsidKey = lsidKey;
        this.remaining = limit > 0 ? limit : Infinity;
        this.lastUsed = Date.now();
    }

    get exhausted() {
        return this.pos >= this.docs.length || this.remaining <= 0;
    }

    /** Serializes up to max documents (Infinity: only the byte cap) and advances. */
    batch(max) {
        const out = [];
        let bytes = 0;
        while (out.length < max && !this.exhausted) {
            const bin = serialize(this.docs[this.pos], BSON_SERIALIZE);
            if (out.length > 0 && bytes + bin.length > BATCH_BYTES) break;
            out.push(bin);
            bytes += bin.length;
            this.pos++;
            this.remaining--;
        }
        this.lastUsed = Date.now();
        return out;
    }
}

export class CursorRegistry {
    constructor() {
        this.cursors = new Map();
        this.timer = setInterval(() => this.sweep(), 60 * 1000);
        this.timer.unref();
    }

    newId() {
        for (;;) {
            const id = crypto.randomBytes(8).readBigUInt64LE(0) & 0x7fffffffffffffffn;
            if (id !== 0n && !this.cursors.has(id)) return id;
        }
    }

    /**
     * Opens a cursor over docs and returns {cursor: {firstBatch, id, ns}}; the
     * cursor is kept only when documents remain after the first batch.
     */
    open(ns, docs, { batchSize, limit = 0, singleBatch = false, lsidKey = null } = {}) {
        const c = new Cursor(this.newId(), ns, docs, lsidKey, limit);
        const first = c.batch(batchSize === undefined ? DEFAULT_FIRST_BATCH : batchSize);
        // singleBatch (and a negative limit in older drivers) close after the first batch.
        let id = 0n;
        if (!c.exhausted && !singleBatch) {
            this.cursors.set(c.id, c);
            id = c.id;
        }
        return { cursor: { firstBatch: new RawArray(first), id: Long.fromBigInt(id), ns } };
    }

    get(id) {
        return this.cursors.get(id);
    }

    /** The next batch of an open cursor; forgets it once exhausted. */
    more(c, batchSize) {
        const next = c.batch(batchSize === undefined || batchSize === 0 ? Infinity : batchSize);
        let id = c.id;
        if (c.exhausted) {
            this.cursors.delete(c.id);
            id = 0n;
        }
        return { cursor: { nextBatch: new RawArray(next), id: Long.fromBigInt(id), ns: c.ns } };
    }

    kill(id) {
        return this.cursors.delete(id);
    }

    sweep() {
        const now = Date.now();
        for (const [id, c] of this.cursors) if (now - c.lastUsed > IDLE_MS) this.cursors.delete(id);
    }
}

/** A cursor id from a request (number, Long or bigint) as a bigint, or null when not an integer. */
export function cursorIdOf(v) {
    if (typeof v === "bigint") return v;
    if (typeof v === "number" && Number.isInteger(v)) return BigInt(v);
    if (v instanceof Long) return v.toBigInt();
    return null;
}
