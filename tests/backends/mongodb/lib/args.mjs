// Typed access to command fields with mongod's IDL error messages, and the
// per-command allow-lists of fields (an unknown field is error 40415, as in
// mongod: a proxy that injects a misspelt or misplaced field is caught).

import { Long, Binary } from "bson";
import { CODES, fail } from "./errors.mjs";

// Fields any command may carry (sessions, transactions, read/write concerns, drivers' extras).
export const GENERIC_FIELDS = new Set([
    "$db", "lsid", "txnNumber", "autocommit", "startTransaction", "stmtId", "stmtIds", "$clusterTime",
    "$readPreference", "readConcern", "writeConcern", "comment", "maxTimeMS", "apiVersion", "apiStrict",
    "apiDeprecationErrors", "$audit", "$client", "mayBypassWriteBlocking", "$queryOptions", "clientOperationKey",
]);

export function typeName(v) {
    if (v === null) return "null";
    if (v === undefined) return "missing";
    if (Array.isArray(v)) return "array";
    if (typeof v === "number") return Number.isInteger(v) ? "int" : "double";
    if (typeof v === "string") return "string";
    if (typeof v === "boolean") return "bool";
    if (v instanceof Long) return "long";
    if (v instanceof Binary) return "binData";
    if (v instanceof Date) return "date";
    if (v._bsontype) return v._bsontype.toLowerCase();
    return "object";
}

function wrongType(cmd, field, v, expected) {
    fail(CODES.TypeMismatch, `BSON field '${cmd}.${field}' is the wrong type '${typeName(v)}', expected type${expected.includes(",") ? "s" : ""} '${expected}'`);
}

export function checkFields(cmd, body, allowed) {
    for (const k of Object.keys(body)) {
        if (k === cmd || GENERIC_FIELDS.has(k) || allowed.includes(k)) continue;
        fail(40415, `BSON field '${cmd}.${k}' is an unknown field.`);
    }
}

/** Like checkFields for a sub-document (an update or delete statement): no generic fields. */
export function checkSubFields(where, doc, allowed) {
    for (const k of Object.keys(doc)) if (!allowed.includes(k)) fail(40415, `BSON field '${where}.${k}' is an unknown field.`);
}

export function isDoc(v) {
    return v !== null && typeof v === "object" && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
}

/** An optional sub-document field (object), or undefined. */
export function docArg(cmd, body, field, { required = false } = {}) {
    const v = body[field];
    if (v === undefined || (v === null && !required)) {
        if (required) fail(40414, `BSON field '${cmd}.${field}' is missing but a required field`);
        return undefined;
    }
    if (!isDoc(v)) wrongType(cmd, field, v, "object");
    return v;
}

export function arrayArg(cmd, body, field, { required = false } = {}) {
    const v = body[field];
    if (v === undefined) {
        if (required) fail(40414, `BSON field '${cmd}.${field}' is missing but a required field`);
        return undefined;
    }
    if (!Array.isArray(v)) wrongType(cmd, field, v, "array");
    return v;
}

export function boolArg(cmd, body, field, dflt = false) {
    const v = body[field];
    if (v === undefined || v === null) return dflt;
    if (typeof v === "boolean") return v;
    if (typeof v === "number") return v !== 0;
    if (v instanceof Long) return !v.isZero();
    wrongType(cmd, field, v, "bool");
}

/** An optional integral number (int, long, or a whole double), checked against min. */
export function intArg(cmd, body, field, { min, dflt } = {}) {
    let v = body[field];
    if (v === undefined || v === null) return dflt;
    if (v instanceof Long) v = v.toNumber();
    if (typeof v !== "number") wrongType(cmd, field, v, "[long, int, decimal, double]");
    if (!Number.isFinite(v)) fail(CODES.BadValue, `BSON field '${cmd}.${field}' value must be finite`);
    v = Math.trunc(v);
    if (min !== undefined && v < min) fail(51024, `BSON field '${field}' value must be >= ${min}, actual value '${v}'`);
    return v;
}

export function stringArg(cmd, body, field, { required = false } = {}) {
    const v = body[field];
    if (v === undefined) {
        if (required) fail(40414, `BSON field '${cmd}.${field}' is missing but a required field`);
        return undefined;
    }
    if (typeof v !== "string") wrongType(cmd, field, v, "string");
    return v;
}
