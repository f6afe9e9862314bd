// MongoDB server error codes (the subset this backend raises) and the error
// class every command handler throws. A thrown MongoError becomes
// {ok: 0, errmsg, code, codeName}; inside a write batch it becomes one entry
// of writeErrors.

export const CODES = {
    InternalError: 1,
    BadValue: 2,
    FailedToParse: 9,
    TypeMismatch: 14,
    InvalidLength: 16,
    Unauthorized: 13,
    AuthenticationFailed: 18,
    IllegalOperation: 20,
    NamespaceNotFound: 26,
    CursorNotFound: 43,
    InvalidIdField: 53,
    NamespaceExists: 48,
    CommandNotFound: 59,
    ImmutableField: 66,
    InvalidOptions: 72,
    InvalidNamespace: 73,
    IndexOptionsConflict: 85,
    IndexKeySpecsConflict: 86,
    ConflictingOperationInProgress: 117,
    TransactionTooOld: 225,
    NoSuchTransaction: 251,
    TransactionCommitted: 256,
    MechanismUnavailable: 334,
    UnsupportedOpQueryCommand: 352,
    DuplicateKey: 11000,
    BSONObjectTooLarge: 10334,
};

const NAMES = Object.fromEntries(Object.entries(CODES).map(([k, v]) => [v, k]));

export function codeName(code) {
    return NAMES[code] || `Location${code}`;
}

export class MongoError extends Error {
    /** extra: more fields of the error document (e.g. keyPattern, keyValue). */
    constructor(code, message, extra = {}) {
        super(message);
        this.code = code;
        this.extra = extra;
    }

    toDoc() {
        return { ok: 0, errmsg: this.message, code: this.code, codeName: codeName(this.code), ...this.extra };
    }

    toWriteError(index) {
        return { index, code: this.code, ...this.extra, errmsg: this.message };
    }
}

export function fail(code, message, extra) {
    throw new MongoError(code, message, extra);
}

/** Wraps an error thrown by mingo (bad operator, bad expression) as a MongoDB error. */
export function fromEngine(e) {
    if (e instanceof MongoError) return e;
    const msg = e && e.message ? e.message : String(e);
    if (/unregistered pipeline operator|unknown pipeline/i.test(msg)) {
        const m = /(\$\w+)/.exec(msg);
        return new MongoError(40324, `Unrecognized pipeline stage name: '${m ? m[1] : "?"}'`);
    }
    if (/unknown (query|update) operator|Unknown update operator/i.test(msg)) {
        return new MongoError(CODES.BadValue, msg);
    }
    return new MongoError(CODES.BadValue, msg);
}
