// The MongoDB wire codec: message framing, OP_MSG (flag bits, section kind 0
// body and kind 1 document sequences, CRC-32C checksum), the legacy OP_QUERY
// handshake answered with OP_REPLY, and a small raw-BSON builder so cursor
// batches are serialized once.
//
//   socket bytes --> FrameReader.push() --> frames (header + body)
//                --> decodeMessage()    --> {op, requestId, flags, body, ...}
//   reply object --> encodeMsg()/encodeReply() --> socket bytes
//
// Every length field is checked against the bytes actually present; anything
// that does not parse exactly throws a ProtocolError, after which the server
// closes the connection (as mongod does with a malformed message).

import { deserialize, serialize, Long } from "bson";

export const OP_REPLY = 1;
export const OP_QUERY = 2004;
export const OP_COMPRESSED = 2012;
export const OP_MSG = 2013;

export const MSG_CHECKSUM_PRESENT = 1 << 0;
export const MSG_MORE_TO_COME = 1 << 1;
export const MSG_EXHAUST_ALLOWED = 1 << 16;
// Bits 0-15 are "required": a receiver must refuse a message carrying one it
// does not know. Bits 16-31 are optional and ignored when unknown.
const MSG_KNOWN_REQUIRED = MSG_CHECKSUM_PRESENT | MSG_MORE_TO_COME;

export const HEADER_SIZE = 16;
export const MAX_MESSAGE_SIZE = 48000000;
export const MAX_BSON_SIZE = 16 * 1024 * 1024;

// OP_REPLY responseFlags.
export const REPLY_QUERY_FAILURE = 1 << 1;
export const REPLY_AWAIT_CAPABLE = 1 << 3;

// Promoted values (numbers, strings) suit mingo; Int64 beyond 2^53 stays a Long.
// Regular expressions stay BSONRegExp (all flags kept); engine.mjs turns the ones
// in filters into JavaScript RegExps for matching.
export const BSON_DESERIALIZE = { promoteLongs: true, promoteValues: true, promoteBuffers: false, bsonRegExp: true };
export const BSON_SERIALIZE = { ignoreUndefined: true };

export class ProtocolError extends Error {}

// ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) -------------------------------------

const CRC32C_TABLE = (() => {
    const t = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
        let c = i;
        for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
        t[i] = c >>> 0;
    }
    return t;
})();

export function crc32c(buf, start = 0, end = buf.length) {
    let c = 0xffffffff;
    for (let i = start; i < end; i++) c = CRC32C_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
}

// ---- framing -----------------------------------------------------------------------------------

/** Accumulates socket bytes and yields whole messages; throws on a bad length. */
export class FrameReader {
    constructor(maxSize = MAX_MESSAGE_SIZE) {
        this.chunks = [];
        this.size = 0;
        this.maxSize = maxSize;
    }

    push(chunk) {
        this.chunks.push(chunk);
        this.size += chunk.length;
        const frames = [];
        for (;;) {
            if (this.size < 4) break;
            const head = this.peek(4);
            const len = head.readInt32LE(0);
            // Checked before waiting for the body: a huge length closes at once.
            if (len < HEADER_SIZE || len > this.maxSize) {
                throw new ProtocolError(`message length ${len} out of range`);
            }
            if (this.size < len) break;
            frames.push(this.take(len));
        }
        return frames;
    }

    peek(n) {
        if (this.chunks[0].length < n) this.chunks = [Buffer.concat(this.chunks)];
        return this.chunks[0].subarray(0, n);
    }

    take(n) {
        const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
        const out = all.subarray(0, n);
        const rest = all.subarray(n);
        this.chunks = rest.length ? [rest] : [];
        this.size -= n;
        return out;
    }
}

// ---- decoding ----------------------------------------------------------------------------------

function readDocument(buf, off, end, what) {
    if (end - off < 5) throw new ProtocolError(`${what}: truncated document`);
    const len = buf.readInt32LE(off);
    if (len < 5 || len > end - off || len > MAX_BSON_SIZE + 16 * 1024) {
        throw new ProtocolError(`${what}: document length ${len} out of range`);
    }
    if (buf[off + len - 1] !== 0) throw new ProtocolError(`${what}: document not terminated`);
    let doc;
    try {
        doc = deserialize(buf.subarray(off, off + len), { ...BSON_DESERIALIZE, validation: { utf8: true } });
    } catch (e) {
        throw new ProtocolError(`${what}: invalid BSON (${e.message})`);
    }
    return { doc, len };
}

function readCString(buf, off, end, what) {
    const nul = buf.indexOf(0, off);
    if (nul < 0 || nul >= end) throw new ProtocolError(`${what}: unterminated string`);
    return { str: buf.toString("utf8", off, nul), next: nul + 1 };
}

/**
 * Decodes one whole frame. Returns
 *   {op: OP_MSG, requestId, flags, body}  (kind 1 sequences merged into body as arrays)
 *   {op: OP_QUERY, requestId, flags, ns, skip, limit, query}
 *   {op: <other>, requestId}             for opcodes the caller refuses
 */
export function decodeMessage(frame) {
    const length = frame.readInt32LE(0);
    if (length !== frame.length) throw new ProtocolError("frame length mismatch");
    const requestId = frame.readInt32LE(4);
    const op = frame.readInt32LE(12);
    if (op === OP_MSG) return decodeMsg(frame, requestId);
    if (op === OP_QUERY) return decodeQuery(frame, requestId);
    return { op, requestId };
}

function decodeMsg(frame, requestId) {
    if (frame.length < HEADER_SIZE + 4 + 1) throw new ProtocolError("OP_MSG too short");
    const flags = frame.readUInt32LE(HEADER_SIZE);
    if (flags & 0xffff & ~MSG_KNOWN_REQUIRED) {
        throw new ProtocolError(`OP_MSG has unknown required flag bits 0x${flags.toString(16)}`);
    }
    let end = frame.length;
    if (flags & MSG_CHECKSUM_PRESENT) {
        if (frame.length < HEADER_SIZE + 4 + 1 + 4) throw new ProtocolError("OP_MSG too short for checksum");
        end -= 4;
        const want = frame.readUInt32LE(end);
        const got = crc32c(frame, 0, end);
        if (want !== got) throw new ProtocolError("OP_MSG checksum mismatch");
    }
    let off = HEADER_SIZE + 4;
    let body = null;
    const sequences = [];
    while (off < end) {
        const kind = frame[off++];
        if (kind === 0) {
            if (body) throw new ProtocolError("OP_MSG has more than one body section");
            const { doc, len } = readDocument(frame, off, end, "OP_MSG body");
            body = doc;
            off += len;
        } else if (kind === 1) {
            if (end - off < 4) throw new ProtocolError("OP_MSG sequence truncated");
            const size = frame.readInt32LE(off);
            if (size < 4 + 1 || size > end - off) throw new ProtocolError(`OP_MSG sequence size ${size} out of range`);
            const seqEnd = off + size;
            const { str: id, next } = readCString(frame, off + 4, seqEnd, "OP_MSG sequence");
            if (id.length === 0) throw new ProtocolError("OP_MSG sequence has an empty identifier");
            const docs = [];
            let p = next;
            while (p < seqEnd) {
                const { doc, len } = readDocument(frame, p, seqEnd, `OP_MSG sequence ${id}`);
                docs.push(doc);
                p += len;
            }
            sequences.push([id, docs]);
            off = seqEnd;
        } else {
            throw new ProtocolError(`OP_MSG has unknown section kind ${kind}`);
        }
    }
    if (!body) throw new ProtocolError("OP_MSG has no body section");
    for (const [id, docs] of sequences) {
        if (Object.prototype.hasOwnProperty.call(body, id)) {
            throw new ProtocolError(`OP_MSG field ${id} is both in the body and a sequence`);
        }
        if (sequences.filter(([other]) => other === id).length > 1) {
            throw new ProtocolError(`OP_MSG has two sequences named ${id}`);
        }
        body[id] = docs;
    }
    return { op: OP_MSG, requestId, flags, body };
}

function decodeQuery(frame, requestId) {
    const end = frame.length;
    let off = HEADER_SIZE;
    if (end - off < 4) throw new ProtocolError("OP_QUERY too short");
    const flags = frame.readInt32LE(off);
    off += 4;
    const { str: ns, next } = readCString(frame, off, end, "OP_QUERY collection");
    off = next;
    if (end - off < 8) throw new ProtocolError("OP_QUERY too short");
    const skip = frame.readInt32LE(off);
    const limit = frame.readInt32LE(off + 4);
    off += 8;
    const { doc: query, len } = readDocument(frame, off, end, "OP_QUERY query");
    off += len;
    let fields = null;
    if (off < end) {
        const r = readDocument(frame, off, end, "OP_QUERY returnFieldsSelector");
        fields = r.doc;
        off += r.len;
    }
    if (off !== end) throw new ProtocolError("OP_QUERY has trailing bytes");
    return { op: OP_QUERY, requestId, flags, ns, skip, limit, query, fields };
}

// ---- encoding ----------------------------------------------------------------------------------

/** A document already serialized to BSON, spliced as-is by serializeDoc(). */
export class RawDoc {
    constructor(bytes) {
        this.bytes = bytes;
    }
}

/** A BSON array whose elements are already-serialized documents (a cursor batch). */
export class RawArray {
    constructor(docs) {
        this.docs = docs;
    }
}

function cstring(s) {
    return Buffer.from(s + "\0", "utf8");
}

function rawArrayBytes(docs) {
    const parts = [];
    docs.forEach((d, i) => parts.push(Buffer.from([0x03]), cstring(String(i)), d));
    return wrapElements(parts);
}

function wrapElements(parts) {
    const len = 4 + parts.reduce((n, p) => n + p.length, 0) + 1;
    const head = Buffer.alloc(4);
    head.writeInt32LE(len, 0);
    return Buffer.concat([head, ...parts, Buffer.from([0])], len);
}

/**
 * Serializes a top-level object whose values may be RawDoc/RawArray (at any
 * depth of plain objects); everything else goes through bson.serialize().
 */
export function serializeDoc(obj) {
    if (!containsRaw(obj)) return serialize(obj, BSON_SERIALIZE);
    const parts = [];
    for (const [k, v] of Object.entries(obj)) {
        if (v === undefined) continue;
        if (v instanceof RawDoc) {
            parts.push(Buffer.from([0x03]), cstring(k), v.bytes);
        } else if (v instanceof RawArray) {
            parts.push(Buffer.from([0x04]), cstring(k), rawArrayBytes(v.docs));
        } else if (isPlainObject(v) && containsRaw(v)) {
            parts.push(Buffer.from([0x03]), cstring(k), serializeDoc(v));
        } else {
            const one = serialize({ [k]: v }, BSON_SERIALIZE);
            parts.push(one.subarray(4, one.length - 1));
        }
    }
    return wrapElements(parts);
}

function isPlainObject(v) {
    return v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype;
}

function containsRaw(obj) {
    for (const v of Object.values(obj)) {
        if (v instanceof RawDoc || v instanceof RawArray) return true;
        if (isPlainObject(v) && containsRaw(v)) return true;
    }
    return false;
}

function header(len, requestId, responseTo, op) {
    const h = Buffer.alloc(HEADER_SIZE);
    h.writeInt32LE(len, 0);
    h.writeInt32LE(requestId, 4);
    h.writeInt32LE(responseTo, 8);
    h.writeInt32LE(op, 12);
    return h;
}

/**
 * An OP_MSG reply with one kind 0 section. With MSG_CHECKSUM_PRESENT in flags
 * a CRC-32C is appended (mongod checksums a reply when the request had one).
 */
export function encodeMsg(requestId, responseTo, doc, flags = 0) {
    const body = doc instanceof Buffer ? doc : serializeDoc(doc);
    const sum = flags & MSG_CHECKSUM_PRESENT ? 4 : 0;
    const len = HEADER_SIZE + 4 + 1 + body.length + sum;
    const f = Buffer.alloc(5);
    f.writeUInt32LE(flags >>> 0, 0);
    f[4] = 0;
    const msg = Buffer.concat([header(len, requestId, responseTo, OP_MSG), f, body, Buffer.alloc(sum)], len);
    if (sum) msg.writeUInt32LE(crc32c(msg, 0, len - 4), len - 4);
    return msg;
}

/** An OP_MSG request (used by tests and tools): body plus optional kind 1 sequences. */
export function encodeMsgRequest(requestId, body, sequences = {}, flags = 0) {
    const parts = [Buffer.from([0]), serialize(body, BSON_SERIALIZE)];
    for (const [id, docs] of Object.entries(sequences)) {
        const payload = Buffer.concat([cstring(id), ...docs.map((d) => serialize(d, BSON_SERIALIZE))]);
        const size = Buffer.alloc(4);
        size.writeInt32LE(4 + payload.length, 0);
        parts.push(Buffer.from([1]), size, payload);
    }
    const withChecksum = (flags & MSG_CHECKSUM_PRESENT) !== 0;
    const f = Buffer.alloc(4);
    f.writeUInt32LE(flags >>> 0, 0);
    const len = HEADER_SIZE + 4 + parts.reduce((n, p) => n + p.length, 0) + (withChecksum ? 4 : 0);
    const msg = Buffer.concat([header(len, requestId, 0, OP_MSG), f, ...parts, Buffer.alloc(withChecksum ? 4 : 0)], len);
    if (withChecksum) msg.writeUInt32LE(crc32c(msg, 0, len - 4), len - 4);
    return msg;
}

/** An OP_REPLY to a legacy OP_QUERY: one document, cursor id 0. */
export function encodeReply(requestId, responseTo, doc, responseFlags = REPLY_AWAIT_CAPABLE) {
    const body = serializeDoc(doc);
    const fixed = Buffer.alloc(20);
    fixed.writeInt32LE(responseFlags, 0);
    fixed.writeBigInt64LE(0n, 4);
    fixed.writeInt32LE(0, 12);
    fixed.writeInt32LE(1, 16);
    const len = HEADER_SIZE + fixed.length + body.length;
    return Buffer.concat([header(len, requestId, responseTo, OP_REPLY), fixed, body], len);
}

export { Long };
