// kuzu values <-> Bolt values.
//
// kuzu's JavaScript API hands back plain JS values (numbers for both INT64 and
// DOUBLE, Date for DATE and TIMESTAMP, ...), so the column's declared type
// (kuzu's type string, e.g. "STRUCT(a INT64, b DOUBLE[])") drives the
// conversion; node and relationship properties are typed from the tables'
// schema (table_info). Where no type is known, the value's JS shape decides
// (an integral number is an Integer).
//
//   BOOL                          Boolean
//   INT*, UINT*, SERIAL, INT128   Integer (clamped to the 64-bit range)
//   FLOAT, DOUBLE, DECIMAL        Float
//   STRING, UUID                  String
//   BLOB                          Bytes
//   DATE                          Date            (0x44)
//   TIMESTAMP[_MS|_NS|_SEC]       LocalDateTime   (0x64)
//   TIMESTAMP_TZ                  DateTime, UTC   (0x49; 0x46 on 4.4 without the utc patch)
//   INTERVAL                      Duration        (0x45; kuzu gives milliseconds only)
//   LIST, ARRAY                   List
//   STRUCT, MAP                   Map
//   NODE                          Node            (0x4E)
//   REL                           Relationship    (0x52)
//   RECURSIVE_REL (a path)        Path            (0x50)
//   INTERNAL_ID                   Integer (the same number as a node's id)
//
// Ids: kuzu identifies a node or relationship by {table, offset}; the Bolt id
// is table * 2^40 + offset and the element id (5.x) is "<table>:<offset>".
// Null properties are left out of nodes and relationships, as in Neo4j, where a
// property set to null does not exist.

import { Float, Structure, isInt } from './packstream.mjs';

export const TAG = {
  NODE: 0x4e,
  RELATIONSHIP: 0x52,
  UNBOUND_RELATIONSHIP: 0x72,
  PATH: 0x50,
  DATE: 0x44,
  TIME: 0x54,
  LOCAL_TIME: 0x74,
  DATE_TIME: 0x49,
  DATE_TIME_ZONE_ID: 0x69,
  LEGACY_DATE_TIME: 0x46,
  LEGACY_DATE_TIME_ZONE_ID: 0x66,
  LOCAL_DATE_TIME: 0x64,
  DURATION: 0x45,
  POINT_2D: 0x58,
  POINT_3D: 0x59,
};

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const MS_PER_DAY = 86400000;
const INTERNAL_KEYS = new Set(['_label', '_id', '_src', '_dst']);

// ---- kuzu type strings ----------------------------------------------------------------------

// Splits s at `sep` characters that are not inside parentheses.
function splitTop(s, sep) {
  const out = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === sep && depth === 0) {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  out.push(s.slice(start));
  return out;
}

function lastTopSpace(s) {
  let depth = 0;
  let at = -1;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ' ' && depth === 0) at = i;
  }
  return at;
}

// Parses a kuzu type string into {kind, ...}: {kind: 'LIST', of}, {kind:
// 'STRUCT', fields: Map}, {kind: 'MAP', key, value}, or {kind: NAME} for the
// rest; unparseable input gives {kind: 'ANY'}.
export function parseType(str) {
  const s = (str || '').trim();
  if (!s) return { kind: 'ANY' };
  const list = /^(.*)\[\d*\]$/s.exec(s);
  if (list) return { kind: 'LIST', of: parseType(list[1]) };
  const call = /^([A-Z_0-9]+)\((.*)\)$/s.exec(s);
  if (call) {
    const [, name, inner] = call;
    if (name === 'STRUCT' || name === 'UNION') {
      const fields = new Map();
      for (const part of splitTop(inner, ',')) {
        const p = part.trim();
        const sp = lastTopSpace(p);
        if (sp < 0) return { kind: 'ANY' };
        fields.set(p.slice(0, sp), parseType(p.slice(sp + 1)));
      }
      return name === 'STRUCT' ? { kind: 'STRUCT', fields } : { kind: 'ANY' };
    }
    if (name === 'MAP') {
      const parts = splitTop(inner, ',');
      if (parts.length !== 2) return { kind: 'ANY' };
      return { kind: 'MAP', key: parseType(parts[0]), value: parseType(parts[1]) };
    }
    if (name === 'DECIMAL') return { kind: 'DOUBLE' };
    return { kind: 'ANY' };
  }
  return { kind: s };
}

// True when values of this type contain nodes or relationships (so the
// tables' property types are needed to encode them).
export function needsSchema(t) {
  switch (t.kind) {
    case 'NODE':
    case 'REL':
    case 'RECURSIVE_REL':
    case 'ANY':
      return true;
    case 'LIST':
      return needsSchema(t.of);
    case 'STRUCT':
      return [...t.fields.values()].some(needsSchema);
    case 'MAP':
      return needsSchema(t.value);
    default:
      return false;
  }
}

// ---- kuzu -> Bolt ---------------------------------------------------------------------------

const INT_KINDS = new Set(['INT8', 'INT16', 'INT32', 'INT64', 'INT128', 'UINT8', 'UINT16', 'UINT32',
  'UINT64', 'SERIAL']);
const FLOAT_KINDS = new Set(['FLOAT', 'DOUBLE']);
const LOCAL_DATETIME_KINDS = new Set(['TIMESTAMP', 'TIMESTAMP_MS', 'TIMESTAMP_NS', 'TIMESTAMP_SEC']);

function toInt(v) {
  if (typeof v === 'bigint') {
    return v < INT64_MIN ? INT64_MIN : v > INT64_MAX ? INT64_MAX : v;
  }
  if (!Number.isFinite(v)) return 0;
  if (Number.isSafeInteger(v)) return v;
  const big = BigInt(Math.trunc(v));
  return big < INT64_MIN ? INT64_MIN : big > INT64_MAX ? INT64_MAX : big;
}

function entityId(id) {
  if (!id || typeof id !== 'object') return { id: -1, element: '' };
  return { id: id.table * 2 ** 40 + id.offset, element: `${id.table}:${id.offset}` };
}

function secondsNanos(ms) {
  const secs = Math.floor(ms / 1000);
  return [secs, (ms - secs * 1000) * 1e6];
}

// opts: {version: [major, minor], utc: bool, props(label) -> Map name->type or null}
export class BoltValueEncoder {
  constructor(opts) {
    this.elementIds = opts.version[0] >= 5;
    this.utc = opts.version[0] >= 5 || opts.utc;
    this.props = opts.props;
  }

  value(v, t) {
    if (v === null || v === undefined) return null;
    switch (t.kind) {
      case 'BOOL':
        return Boolean(v);
      case 'STRING':
      case 'UUID':
        return String(v);
      case 'BLOB':
        return Buffer.isBuffer(v) ? v : Buffer.from(String(v));
      case 'DATE':
        return v instanceof Date ? this.date(v) : this.any(v);
      case 'TIMESTAMP_TZ':
        return v instanceof Date ? this.dateTime(v) : this.any(v);
      case 'INTERVAL':
        return typeof v === 'number' ? this.duration(v) : this.any(v);
      case 'INTERNAL_ID':
        return entityId(v).id;
      case 'NODE':
        return this.node(v);
      case 'REL':
        return this.rel(v);
      case 'RECURSIVE_REL':
        return this.path(v);
      case 'LIST':
        return Array.isArray(v) ? v.map((e) => this.value(e, t.of)) : this.any(v);
      case 'STRUCT':
        return this.struct(v, t.fields);
      case 'MAP':
        return this.map(v, t.value);
      default:
        break;
    }
    if (INT_KINDS.has(t.kind) && (typeof v === 'number' || typeof v === 'bigint')) return toInt(v);
    if (FLOAT_KINDS.has(t.kind) && typeof v === 'number') return new Float(v);
    if (LOCAL_DATETIME_KINDS.has(t.kind) && v instanceof Date) return this.localDateTime(v);
    return this.any(v);
  }

  // By the value's JS shape alone.
  any(v) {
    if (v === null || v === undefined) return null;
    if (typeof v === 'boolean' || typeof v === 'string') return v;
    if (typeof v === 'bigint') return toInt(v);
    if (typeof v === 'number') return Number.isInteger(v) ? toInt(v) : new Float(v);
    if (v instanceof Date) return this.localDateTime(v);
    if (Buffer.isBuffer(v)) return v;
    if (Array.isArray(v)) return v.map((e) => this.any(e));
    if (typeof v === 'object') {
      if ('_nodes' in v && '_rels' in v) return this.path(v);
      if ('_src' in v && '_dst' in v && '_label' in v) return this.rel(v);
      if ('_label' in v && '_id' in v) return this.node(v);
      return Object.fromEntries(Object.entries(v).map(([k, e]) => [k, this.any(e)]));
    }
    return String(v);
  }

  struct(v, fields) {
    if (typeof v !== 'object' || Array.isArray(v)) return this.any(v);
    return Object.fromEntries(Object.entries(v).map(([k, e]) => {
      const ft = fields.get(k);
      return [k, ft ? this.value(e, ft) : this.any(e)];
    }));
  }

  map(v, valueType) {
    if (typeof v !== 'object' || Array.isArray(v)) return this.any(v);
    return Object.fromEntries(Object.entries(v).map(([k, e]) => [String(k), this.value(e, valueType)]));
  }

  properties(v, label) {
    const types = label ? this.props(label) : null;
    const out = [];
    for (const [k, e] of Object.entries(v)) {
      if (INTERNAL_KEYS.has(k) || e === null || e === undefined) continue;
      const t = types && types.get(k);
      out.push([k, t ? this.value(e, t) : this.any(e)]);
    }
    return Object.fromEntries(out);
  }

  node(v) {
    const { id, element } = entityId(v._id);
    const labels = v._label ? [v._label] : [];
    const fields = [id, labels, this.properties(v, v._label)];
    if (this.elementIds) fields.push(element);
    return new Structure(TAG.NODE, fields);
  }

  rel(v) {
    const { id, element } = entityId(v._id);
    const src = entityId(v._src);
    const dst = entityId(v._dst);
    const fields = [id, src.id, dst.id, v._label || '', this.properties(v, v._label)];
    if (this.elementIds) fields.push(element, src.element, dst.element);
    return new Structure(TAG.RELATIONSHIP, fields);
  }

  unboundRel(v) {
    const { id, element } = entityId(v._id);
    const fields = [id, v._label || '', this.properties(v, v._label)];
    if (this.elementIds) fields.push(element);
    return new Structure(TAG.UNBOUND_RELATIONSHIP, fields);
  }

  // kuzu gives the path's nodes in order and its relationships in order;
  // Bolt wants the distinct nodes and relationships plus an index walk:
  // (rel index, 1-based, negative when traversed against its direction;
  // node index) per step.
  path(v) {
    const nodes = [];
    const nodeIndex = new Map();
    const seq = [];
    for (const n of v._nodes || []) {
      const key = entityId(n._id).element;
      if (!nodeIndex.has(key)) {
        nodeIndex.set(key, nodes.length);
        nodes.push(this.node(n));
      }
      seq.push(nodeIndex.get(key));
    }
    const rels = [];
    const relIndex = new Map();
    const indices = [];
    (v._rels || []).forEach((r, i) => {
      const key = entityId(r._id).element;
      if (!relIndex.has(key)) {
        relIndex.set(key, rels.length);
        rels.push(this.unboundRel(r));
      }
      const prev = (v._nodes || [])[i];
      const forward = !prev || entityId(prev._id).element === entityId(r._src).element;
      const idx = relIndex.get(key) + 1;
      indices.push(forward ? idx : -idx, seq[i + 1] ?? 0);
    });
    return new Structure(TAG.PATH, [nodes, rels, indices]);
  }

  date(d) {
    return new Structure(TAG.DATE, [Math.floor(d.getTime() / MS_PER_DAY)]);
  }

  localDateTime(d) {
    return new Structure(TAG.LOCAL_DATE_TIME, secondsNanos(d.getTime()));
  }

  dateTime(d) {
    // With offset 0 the legacy (seconds in local time) and utc forms carry the same numbers.
    return new Structure(this.utc ? TAG.DATE_TIME : TAG.LEGACY_DATE_TIME, [...secondsNanos(d.getTime()), 0]);
  }

  duration(ms) {
    const [secs, nanos] = secondsNanos(ms);
    return new Structure(TAG.DURATION, [0, 0, secs, nanos]);
  }
}

// ---- Bolt -> kuzu (query parameters) --------------------------------------------------------

export class ParameterError extends Error {}

// Bolt parameter values to what kuzu's JS API takes. A Float whose value is
// integral reaches kuzu as a JS integer (kuzu types it INT64): kuzu's API
// cannot tell 1.0 from 1.
export function toKuzu(v) {
  if (v === null || typeof v === 'boolean' || typeof v === 'string' || isInt(v)) return v;
  if (v instanceof Float) return v.value;
  if (Buffer.isBuffer(v)) return v;
  if (Array.isArray(v)) return v.map(toKuzu);
  if (v instanceof Structure) {
    switch (v.tag) {
      case TAG.DATE:
        return new Date(Number(v.fields[0]) * MS_PER_DAY);
      case TAG.LOCAL_DATE_TIME:
      case TAG.DATE_TIME:
        return new Date(Number(v.fields[0]) * 1000 + Math.floor(Number(v.fields[1]) / 1e6));
      default:
        throw new ParameterError(`parameters of structure type 0x${v.tag.toString(16)} are not supported`);
    }
  }
  if (typeof v === 'object') return Object.fromEntries(Object.keys(v).map((k) => [k, toKuzu(v[k])]));
  throw new ParameterError('unsupported parameter value');
}
