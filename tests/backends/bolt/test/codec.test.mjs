// The backend's own codecs, with node's test runner (run from test_bolt_backend.py).
import assert from 'node:assert/strict';
import test from 'node:test';

import { ChunkDecoder, FramingError, frame, negotiate } from '../lib/framing.mjs';
import { Float, PackStreamError, Structure, decode, encode } from '../lib/packstream.mjs';
import { parseType } from '../lib/values.mjs';

const hex = (b) => Buffer.from(b).toString('hex');

test('integers use the smallest encoding and round-trip at every boundary', () => {
  const cases = [
    [0, '00'], [127, '7f'], [-16, 'f0'], [-17, 'c8ef'], [128, 'c90080'], [-128, 'c880'],
    [32767, 'c97fff'], [32768, 'ca00008000'], [-32769, 'caffff7fff'],
    [2 ** 31, 'cb0000000080000000'], [2n ** 63n - 1n, 'cb7fffffffffffffff'], [-(2n ** 63n), 'cb8000000000000000'],
  ];
  for (const [v, h] of cases) {
    assert.equal(hex(encode(v)), h, String(v));
    const back = decode(encode(v));
    assert.equal(BigInt(back), BigInt(v));
  }
  assert.equal(typeof decode(encode(2 ** 53)), 'bigint');
  assert.throws(() => encode(2n ** 63n), PackStreamError);
});

test('containers, strings, bytes, floats and structures round-trip', () => {
  const long = 'x'.repeat(70000);
  const v = [null, true, false, new Float(1), 'é', long, Buffer.from([1, 2]), { a: [1, { b: 'c' }] },
    new Structure(0x4e, [1, ['L'], {}]), Array.from({ length: 300 }, (_, i) => i)];
  const back = decode(encode(v));
  assert.equal(back[3].value, 1);
  assert.ok(back[3] instanceof Float);
  assert.equal(back[5], long);
  assert.deepEqual([...back[6]], [1, 2]);
  assert.deepEqual(JSON.parse(JSON.stringify(back[7])), { a: [1, { b: 'c' }] });
  assert.equal(back[8].tag, 0x4e);
  assert.equal(back[9].length, 300);
  assert.equal(hex(encode(1.5)), 'c13ff8000000000000');
});

test('malformed input is refused', () => {
  const bad = ['c7', 'dc0100', '85616263', 'a10101', '8280ff', '0000', 'd6ffffffff', 'cb0102', 'b101'];
  for (const h of bad) assert.throws(() => decode(Buffer.from(h, 'hex')), PackStreamError, h);
  assert.throws(() => decode(Buffer.from('91'.repeat(100) + '01', 'hex')), PackStreamError);
  // a repeated key: the last one wins; "__proto__" is an ordinary key
  const m = decode(Buffer.from('a2816101816102', 'hex'));
  assert.equal(m.a, 2);
  const p = decode(encode({ ['__proto__']: 1 }));
  assert.equal(Object.getPrototypeOf(p), null);
});

test('chunks reassemble across reads, keep-alives are skipped, oversize fails early', () => {
  const msg = encode(new Structure(0x10, ['x'.repeat(70000), {}, {}]));
  const framed = frame(msg);
  assert.equal(framed.readUInt16BE(0), 0xffff);
  const d = new ChunkDecoder(1 << 20);
  const got = [];
  const all = Buffer.concat([Buffer.from('0000', 'hex'), framed]);
  for (let i = 0; i < all.length; i += 1000) got.push(...d.push(all.subarray(i, i + 1000)));
  assert.equal(got.length, 1);
  assert.ok(got[0].equals(msg));
  const small = new ChunkDecoder(100);
  assert.throws(() => small.push(Buffer.from('0065', 'hex')), FramingError);
});

test('version negotiation honours ranges and the client order', () => {
  const supported = [[5, 6], [5, 4], [5, 0], [4, 4]];
  const req = (...p) => Buffer.concat([Buffer.from('6060b017', 'hex'), ...p.map((x) => Buffer.from(x, 'hex')),
    Buffer.alloc(16 - 4 * p.length)]);
  assert.deepEqual(negotiate(req('000001ff', '00080805'), supported), [5, 6]);
  assert.deepEqual(negotiate(req('00010505'), supported), [5, 4]);
  assert.deepEqual(negotiate(req('00000505', '00020404'), supported), [4, 4]);
  assert.equal(negotiate(req('00000003'), supported), null);
});

test('kuzu type strings', () => {
  assert.deepEqual(parseType('INT64[]'), { kind: 'LIST', of: { kind: 'INT64' } });
  const s = parseType('STRUCT(a b INT64, c STRUCT(d DOUBLE[3]), e DECIMAL(5, 2))');
  assert.equal(s.kind, 'STRUCT');
  assert.deepEqual([...s.fields.keys()], ['a b', 'c', 'e']);
  assert.equal(s.fields.get('c').fields.get('d').of.kind, 'DOUBLE');
  assert.equal(s.fields.get('e').kind, 'DOUBLE');
  assert.deepEqual(parseType('MAP(STRING, INT64)').value, { kind: 'INT64' });
});
