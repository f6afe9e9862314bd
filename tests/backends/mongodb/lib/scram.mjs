// SCRAM-SHA-256 server side (RFC 5802, RFC 7677) as MongoDB runs it inside
// saslStart/saslContinue, with node:crypto only.
//
//   saslStart    client-first  "n,,n=<user>,r=<cnonce>"
//             <- server-first  "r=<cnonce><snonce>,s=<salt>,i=<iterations>"
//   saslContinue client-final  "c=biws,r=<nonce>,p=<proof>"
//             <- server-final  "v=<server signature>"   (done when skipEmptyExchange)
//   [saslContinue empty        <- empty, done]
//
// Only the one configured user exists, on the admin database. Passwords are
// prepared with Unicode NFKC, which is what SASLprep does for the ASCII and
// common non-ASCII passwords the tests use (no full stringprep tables here).

import crypto from "node:crypto";

export const MECHANISM = "SCRAM-SHA-256";
export const ITERATIONS = 15000; // mongod's default scramSHA256IterationCount

const H = (data) => crypto.createHash("sha256").update(data).digest();
const HMAC = (key, data) => crypto.createHmac("sha256", key).update(data).digest();

export class ScramError extends Error {}

/** The server's stored credentials for one user (derived once at start). */
export class ScramCredentials {
    constructor(user, password, iterations = ITERATIONS) {
        this.user = user;
        this.salt = crypto.randomBytes(28);
        this.iterations = iterations;
        const salted = crypto.pbkdf2Sync(Buffer.from(password.normalize("NFKC"), "utf8"), this.salt, iterations, 32, "sha256");
        this.storedKey = H(HMAC(salted, "Client Key"));
        this.serverKey = HMAC(salted, "Server Key");
    }
}

function parseAttrs(text) {
    const out = [];
    for (const part of text.split(",")) {
        const m = /^([A-Za-z])=(.*)$/s.exec(part);
        if (!m) throw new ScramError(`malformed SCRAM attribute '${part.slice(0, 16)}'`);
        out.push([m[1], m[2]]);
    }
    return out;
}

function decodeSaslName(s) {
    if (/=(?!2C|3D)/.test(s)) throw new ScramError("malformed SCRAM user name");
    return s.replace(/=2C/g, ",").replace(/=3D/g, "=");
}

const PRINTABLE_NONCE = /^[\x21-\x2b\x2d-\x7e]+$/;

/** One SCRAM conversation; step() takes the client's bytes and returns the server's. */
export class ScramConversation {
    constructor(creds) {
        this.creds = creds;
        this.state = "start";
        this.user = null;
    }

    /** Returns {payload: Buffer, done: bool}; throws ScramError on a malformed or failed step. */
    step(payload, skipEmptyExchange) {
        const text = Buffer.from(payload).toString("utf8");
        if (this.state === "start") return this.first(text);
        if (this.state === "final") return this.final(text, skipEmptyExchange);
        if (this.state === "verified") {
            if (text.length !== 0) throw new ScramError("unexpected SCRAM message after the final one");
            this.state = "done";
            return { payload: Buffer.alloc(0), done: true };
        }
        throw new ScramError("SCRAM conversation already finished");
    }

    first(text) {
        const m = /^([ny]),(a=[^,]*)?,(.*)$/s.exec(text);
        if (!m) throw new ScramError("malformed SCRAM client-first message (channel binding is not supported)");
        if (m[2]) throw new ScramError("SCRAM authorization identity is not supported");
        this.gs2 = text.slice(0, text.length - m[3].length);
        this.clientFirstBare = m[3];
        const attrs = parseAttrs(this.clientFirstBare);
        if (attrs.length < 2 || attrs[0][0] !== "n" || attrs[1][0] !== "r") {
            throw new ScramError("malformed SCRAM client-first message");
        }
        if (attrs.slice(2).some(([k]) => k === "m")) throw new ScramError("SCRAM extensions are not supported");
        this.user = decodeSaslName(attrs[0][1]);
        const cnonce = attrs[1][1];
        if (!PRINTABLE_NONCE.test(cnonce)) throw new ScramError("malformed SCRAM nonce");
        this.nonce = cnonce + crypto.randomBytes(24).toString("base64");
        this.serverFirst = `r=${this.nonce},s=${this.creds.salt.toString("base64")},i=${this.creds.iterations}`;
        this.state = "final";
        return { payload: Buffer.from(this.serverFirst), done: false };
    }

    final(text, skipEmptyExchange) {
        const attrs = parseAttrs(text);
        const get = (k) => attrs.find(([a]) => a === k)?.[1];
        if (attrs.length < 3 || attrs[0][0] !== "c" || attrs[1][0] !== "r" || attrs[attrs.length - 1][0] !== "p") {
            throw new ScramError("malformed SCRAM client-final message");
        }
        if (Buffer.from(get("c"), "base64").toString("latin1") !== this.gs2) {
            throw new ScramError("SCRAM channel binding mismatch");
        }
        if (get("r") !== this.nonce) throw new ScramError("SCRAM nonce mismatch");
        const withoutProof = text.slice(0, text.lastIndexOf(",p="));
        const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
        const proof = Buffer.from(get("p"), "base64");
        const signature = HMAC(this.creds.storedKey, authMessage);
        this.state = "failed";
        if (this.user !== this.creds.user || proof.length !== signature.length) throw new ScramError("Authentication failed.");
        const clientKey = Buffer.alloc(proof.length);
        for (let i = 0; i < proof.length; i++) clientKey[i] = proof[i] ^ signature[i];
        if (!crypto.timingSafeEqual(H(clientKey), this.creds.storedKey)) throw new ScramError("Authentication failed.");
        const serverSig = HMAC(this.creds.serverKey, authMessage).toString("base64");
        this.state = skipEmptyExchange ? "done" : "verified";
        return { payload: Buffer.from(`v=${serverSig}`), done: !!skipEmptyExchange, authenticated: true };
    }
}
