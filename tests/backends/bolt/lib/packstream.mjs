// PackStream v1: the value encoding inside Bolt messages.
//
// Decoding is strict and bounded: a value never claims more elements than the
// bytes left could hold, nesting is limited, strings must be valid UTF-8, map
// keys must be strings, and 16-bit structure sizes (0xDC/0xDD, not part of v1)
// are refused. Any violation throws PackStreamError.
//
// Values, both ways:
//   null, boolean, string          as themselves
//   Integer                        number (safe range) or bigint (outside it)
//   Float                          Float (a wrapper, so 1.0 stays a float)
//   Bytes                          Buffer
//   List                           Array
//   Map                            object without prototype (a repeated key: the last one wins)
//   Structure                      Structure {tag, fields}
// The encoder also takes a plain non-integral number as a Float.

export class PackStreamError extends Error {}

export class Float {
  constructor(value) {
    this.value = value;
  }
}

export class Structure {
  constructor(tag, fields) {
    this.tag = tag;
    this.fields = fields;
  }
}

export const MAX_DEPTH = 64;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function isInt(v) {
  return (typeof v === 'number' && Number.isInteger(v)) || typeof v === 'bigint';
}

// ---- decoding -------------------------------------------------------------------------------

class Reader {
  constructor(buf) {
    this.buf = buf;
    this.pos = 0;
  }

  need(n) {
    if (n > this.buf.length - this.pos) throw new PackStreamError('value runs past the end of the message');
  }

  u8() {
    this.need(1);
    return this.buf[this.pos++];
  }

  take(n) {
    this.need(n);
    const s = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  size(bytes) {
    this.need(bytes);
    let n;
    if (bytes === 1) n = this.buf.readUInt8(this.pos);
    else if (bytes === 2) n = this.buf.readUInt16BE(this.pos);
    else n = this.buf.readUInt32BE(this.pos);
    this.pos += bytes;
    return n;
  }

  // A container of n entries needs at least n (or 2n for a map) more bytes.
  count(n, perEntry) {
    if (n * perEntry > this.buf.length - this.pos) throw new PackStreamError('container larger than the message');
    return n;
  }
}

function readInt(r, bytes) {
  r.need(bytes);
  let v;
  if (bytes === 1) v = r.buf.readInt8(r.pos);
  else if (bytes === 2) v = r.buf.readInt16BE(r.pos);
  else if (bytes === 4) v = r.buf.readInt32BE(r.pos);
  else {
    const big = r.buf.readBigInt64BE(r.pos);
    v = big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
  }
  r.pos += bytes;
  return v;
}

function readString(r, n) {
  try {
    return utf8.decode(r.take(n));
  } catch (e) {
    if (e instanceof PackStreamError) throw e;
    throw new PackStreamError('string is not valid UTF-8');
  }
}

function readList(r, n, depth) {
  r.count(n, 1);
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = readValue(r, depth + 1);
  return out;
}

function readMap(r, n, depth) {
  r.count(n, 2);
  const out = Object.create(null);
  for (let i = 0; i < n; i++) {
    const k = readValue(r, depth + 1);
    if (typeof k !== 'string') throw new PackStreamError('map key is not a string');
    out[k] = readValue(r, depth + 1);
  }
  return out;
}

function readStruct(r, n, depth) {
  r.count(n, 1);
  const tag = r.u8();
  const fields = new Array(n);
  for (let i = 0; i < n; i++) fields[i] = readValue(r, depth + 1);
  return new Structure(tag, fields);
}

function readValue(r, depth) {
  if (depth > MAX_DEPTH) throw new PackStreamError('values nested too deeply');
  const m = r.u8();
  if (m < 0x80) return m;
  if (m >= 0xf0) return m - 0x100;
  const hi = m & 0xf0;
  const lo = m & 0x0f;
  if (hi === 0x80) return readString(r, lo);
  if (hi === 0x90) return readList(r, lo, depth);
  if (hi === 0xa0) return readMap(r, lo, depth);
  if (hi === 0xb0) return readStruct(r, lo, depth);
  switch (m) {
    case 0xc0: return null;
    case 0xc1: {
      r.need(8);
      const v = r.buf.readDoubleBE(r.pos);
      r.pos += 8;
      return new Float(v);
    }
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc8: return readInt(r, 1);
    case 0xc9: return readInt(r, 2);
    case 0xca: return readInt(r, 4);
    case 0xcb: return readInt(r, 8);
    case 0xcc: return Buffer.from(r.take(r.size(1)));
    case 0xcd: return Buffer.from(r.take(r.size(2)));
    case 0xce: return Buffer.from(r.take(r.size(4)));
    case 0xd0: return readString(r, r.size(1));
    case 0xd1: return readString(r, r.size(2));
    case 0xd2: return readString(r, r.size(4));
    case 0xd4: return readList(r, r.size(1), depth);
    case 0xd5: return readList(r, r.size(2), depth);
    case 0xd6: return readList(r, r.size(4), depth);
    case 0xd8: return readMap(r, r.size(1), depth);
    case 0xd9: return readMap(r, r.size(2), depth);
    case 0xda: return readMap(r, r.size(4), depth);
    default:
      throw new PackStreamError(`unknown marker 0x${m.toString(16)}`);
  }
}

// Decodes exactly one value that fills buf; trailing bytes are an error.
export function decode(buf) {
  const r = new Reader(buf);
  const v = readValue(r, 0);
  if (r.pos !== buf.length) throw new PackStreamError('trailing bytes after the value');
  return v;
}

// ---- encoding -------------------------------------------------------------------------------

class Writer {
  constructor() {
    this.buf = Buffer.allocUnsafe(256);
    this.len = 0;
  }

  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = Buffer.allocUnsafe(cap);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  u8(v) {
    this.reserve(1);
    this.buf[this.len++] = v;
  }

  header(tiny, base8, n, what) {
    if (tiny !== null && n < 16) return this.u8(tiny | n);
    if (base8 !== null && n < 0x100) {
      this.u8(base8);
      return this.u8(n);
    }
    if (n < 0x10000) {
      this.u8(base8 + 1);
      this.reserve(2);
      this.len = this.buf.writeUInt16BE(n, this.len);
      return undefined;
    }
    if (n <= 0xffffffff) {
      this.u8(base8 + 2);
      this.reserve(4);
      this.len = this.buf.writeUInt32BE(n, this.len);
      return undefined;
    }
    throw new PackStreamError(`${what} too large`);
  }

  bytes(b) {
    this.reserve(b.length);
    b.copy(this.buf, this.len);
    this.len += b.length;
  }

  int(v) {
    let big = typeof v === 'bigint' ? v : BigInt(v);
    if (big < INT64_MIN || big > INT64_MAX) throw new PackStreamError('integer outside the 64-bit range');
    if (big >= -16n && big < 128n) return this.u8(Number(big) & 0xff);
    const n = Number(big);
    if (big >= -128n && big < 128n) {
      this.u8(0xc8);
      this.reserve(1);
      this.len = this.buf.writeInt8(n, this.len);
    } else if (big >= -32768n && big < 32768n) {
      this.u8(0xc9);
      this.reserve(2);
      this.len = this.buf.writeInt16BE(n, this.len);
    } else if (big >= -(2n ** 31n) && big < 2n ** 31n) {
      this.u8(0xca);
      this.reserve(4);
      this.len = this.buf.writeInt32BE(n, this.len);
    } else {
      this.u8(0xcb);
      this.reserve(8);
      this.len = this.buf.writeBigInt64BE(big, this.len);
    }
    return undefined;
  }

  float(v) {
    this.u8(0xc1);
    this.reserve(8);
    this.len = this.buf.writeDoubleBE(v, this.len);
  }

  value(v, depth = 0) {
    if (depth > MAX_DEPTH) throw new PackStreamError('values nested too deeply');
    if (v === null || v === undefined) return this.u8(0xc0);
    if (v === true) return this.u8(0xc3);
    if (v === false) return this.u8(0xc2);
    if (typeof v === 'bigint') return this.int(v);
    if (typeof v === 'number') return Number.isInteger(v) ? this.int(v) : this.float(v);
    if (v instanceof Float) return this.float(v.value);
    if (typeof v === 'string') {
      const b = Buffer.from(v, 'utf8');
      this.header(0x80, 0xd0, b.length, 'string');
      return this.bytes(b);
    }
    if (Buffer.isBuffer(v) || v instanceof Uint8Array) {
      const b = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      this.header(null, 0xcc, b.length, 'byte array');
      return this.bytes(b);
    }
    if (Array.isArray(v)) {
      this.header(0x90, 0xd4, v.length, 'list');
      for (const e of v) this.value(e, depth + 1);
      return undefined;
    }
    if (v instanceof Structure) {
      if (v.fields.length > 15) throw new PackStreamError('structure with more than 15 fields');
      this.u8(0xb0 | v.fields.length);
      this.u8(v.tag);
      for (const f of v.fields) this.value(f, depth + 1);
      return undefined;
    }
    if (typeof v === 'object') {
      const keys = Object.keys(v);
      this.header(0xa0, 0xd8, keys.length, 'map');
      for (const k of keys) {
        this.value(k, depth + 1);
        this.value(v[k], depth + 1);
      }
      return undefined;
    }
    throw new PackStreamError(`cannot encode a ${typeof v}`);
  }

  result() {
    return this.buf.subarray(0, this.len);
  }
}

export function encode(value) {
  const w = new Writer();
  w.value(value);
  return w.result();
}
