// Bolt's transport layer: the opening handshake and chunked message framing.
//
// Handshake: the client sends the magic 60 60 B0 17 and four 32-bit version
// proposals, each laid out as [reserved, range, minor, major]: "major.minor
// and the `range` minors below it". The server answers with the first proposal
// (in the client's order) that it supports, choosing the highest minor inside
// that proposal's range, as 00 00 minor major; or 00 00 00 00 and closes.
// The 5.7+ "manifest" proposal (major 0xFF) is not supported, so it is passed
// over like any unknown version and the client's other proposals are used.
//
// Framing: a message is a sequence of chunks (2-byte big-endian size, then
// that many bytes) ended by a zero-size chunk. A zero-size chunk with no
// message before it is a keep-alive (NOOP) and is skipped.

export const MAGIC = Buffer.from([0x60, 0x60, 0xb0, 0x17]);
export const HANDSHAKE_LEN = 20;
export const MAX_CHUNK = 0xffff;

export class FramingError extends Error {}

// supported: [[major, minor], ...]. Returns [major, minor] or null.
export function negotiate(request, supported) {
  for (let i = 0; i < 4; i++) {
    const off = 4 + i * 4;
    const range = request[off + 1];
    const minor = request[off + 2];
    const major = request[off + 3];
    if (major === 0 && minor === 0) continue;
    let best = null;
    for (const [ma, mi] of supported) {
      if (ma === major && mi <= minor && mi >= minor - range && (best === null || mi > best[1])) best = [ma, mi];
    }
    if (best) return best;
  }
  return null;
}

export function versionReply(version) {
  return version ? Buffer.from([0, 0, version[1], version[0]]) : Buffer.alloc(4);
}

// Reassembles messages from chunks. push() returns the messages completed by
// the bytes given; it throws FramingError once a message would exceed
// maxMessage bytes (checked against each chunk's declared size, before its
// body is buffered).
export class ChunkDecoder {
  constructor(maxMessage) {
    this.maxMessage = maxMessage;
    this.pending = Buffer.alloc(0);
    this.parts = [];
    this.partsLen = 0;
  }

  push(data) {
    this.pending = this.pending.length ? Buffer.concat([this.pending, data]) : data;
    const out = [];
    let pos = 0;
    for (;;) {
      if (this.pending.length - pos < 2) break;
      const size = this.pending.readUInt16BE(pos);
      if (size === 0) {
        pos += 2;
        if (this.parts.length) {
          out.push(this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts));
          this.parts = [];
          this.partsLen = 0;
        }
        continue;
      }
      if (this.partsLen + size > this.maxMessage) {
        throw new FramingError(`message larger than ${this.maxMessage} bytes`);
      }
      if (this.pending.length - pos - 2 < size) break;
      this.parts.push(Buffer.from(this.pending.subarray(pos + 2, pos + 2 + size)));
      this.partsLen += size;
      pos += 2 + size;
    }
    this.pending = this.pending.subarray(pos);
    return out;
  }
}

// One encoded message as chunks, ending with the zero-size chunk.
export function frame(message) {
  const nChunks = Math.max(1, Math.ceil(message.length / MAX_CHUNK));
  const out = Buffer.allocUnsafe(message.length + nChunks * 2 + 2);
  let o = 0;
  for (let i = 0; i < message.length; i += MAX_CHUNK) {
    const n = Math.min(MAX_CHUNK, message.length - i);
    o = out.writeUInt16BE(n, o);
    message.copy(out, o, i, i + n);
    o += n;
  }
  out.writeUInt16BE(0, o);
  return out.subarray(0, o + 2);
}
