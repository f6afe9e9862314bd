#!/usr/bin/env node
// tenantgate's MongoDB test backend: a small MongoDB-wire-compatible server,
// in memory, for tenantgate's tests only -- never a substitute for MongoDB.
//
//   node server.mjs --port P --user U --password W [--host 127.0.0.1] [--set-name tgrs0]
//                   [--trace FILE]
//
// Prints "listening on <port>" once it accepts connections (port 0 picks a
// free one). --trace appends every command received to FILE, one Extended
// JSON line each ({conn, op, flags, body} with SASL payloads blanked), so a
// test can check exactly what a proxy forwarded. One Connection per socket handles its messages strictly in
// order, like mongod's one operation at a time per connection:
//
//   socket --data--> FrameReader --frames--> decodeMessage
//      OP_MSG     --> runCommand --> OP_MSG reply (none when moreToCome)
//      OP_QUERY   --> hello/isMaster only --> OP_REPLY
//      other      --> the connection is closed (OP_COMPRESSED, legacy ops, malformed)
//
// Modules: lib/wire.mjs (codec), lib/scram.mjs (SCRAM-SHA-256), lib/commands.mjs
// (dispatch, handshake, admin), lib/crud.mjs (reads, writes, aggregate),
// lib/cursors.mjs, lib/store.mjs (databases in memory), lib/engine.mjs (mingo).

import fs from "node:fs";
import net from "node:net";
import { parseArgs } from "node:util";
import { EJSON, ObjectId, Timestamp } from "bson";
import {
    FrameReader, ProtocolError, decodeMessage, encodeMsg, encodeReply, OP_MSG, OP_QUERY, OP_COMPRESSED,
    MSG_CHECKSUM_PRESENT, MSG_MORE_TO_COME, REPLY_AWAIT_CAPABLE, REPLY_QUERY_FAILURE,
} from "./lib/wire.mjs";
import { ScramCredentials } from "./lib/scram.mjs";
import { Store } from "./lib/store.mjs";
import { CursorRegistry } from "./lib/cursors.mjs";
import { runCommand } from "./lib/commands.mjs";
import { CODES, codeName } from "./lib/errors.mjs";

const HANDSHAKE = new Set(["hello", "isMaster", "ismaster"]);
// Pipelined requests queued per connection before its socket is paused.
const HIGH_WATER = 64;

function log(line) {
    process.stderr.write(`mongodb-test-backend: ${line}\n`);
}

class Connection {
    constructor(server, socket, id) {
        this.server = server;
        this.socket = socket;
        this.id = id;
        this.reader = new FrameReader();
        this.chain = Promise.resolve();
        this.pending = 0;
        this.closed = false;
        this.closeCallbacks = [];
        this.authenticated = false;
        this.user = null;
        this.sasl = null;
        this.saslIds = 0;
        this.sawClientMetadata = false;
        socket.setNoDelay(true);
        socket.on("data", (chunk) => this.onData(chunk));
        socket.on("error", () => {});
        socket.on("close", () => {
            this.closed = true;
            for (const cb of this.closeCallbacks.splice(0)) cb();
        });
    }

    log(line) {
        log(`conn${this.id}: ${line}`);
    }

    onClose(cb) {
        if (this.closed) cb();
        else this.closeCallbacks.push(cb);
    }

    abort(reason) {
        if (this.closed) return;
        this.log(`closing: ${reason}`);
        this.closed = true;
        this.socket.destroy();
    }

    onData(chunk) {
        if (this.closed) return;
        let frames;
        try {
            frames = this.reader.push(chunk);
        } catch (e) {
            this.abort(e.message);
            return;
        }
        for (const frame of frames) {
            this.pending++;
            if (this.pending >= HIGH_WATER) this.socket.pause();
            this.chain = this.chain.then(() => this.handle(frame)).catch((e) => this.abort(`internal error: ${e.stack || e}`)).finally(() => {
                this.pending--;
                if (this.pending < HIGH_WATER / 4 && !this.closed) this.socket.resume();
            });
        }
    }

    send(bytes) {
        if (!this.closed) this.socket.write(bytes);
    }

    async handle(frame) {
        if (this.closed) return;
        let msg;
        try {
            msg = decodeMessage(frame);
        } catch (e) {
            if (!(e instanceof ProtocolError)) throw e;
            this.abort(`malformed message: ${e.message} (${frame.length} bytes, header ${frame.subarray(0, 16).toString("hex")})`);
            return;
        }
        if (this.server.trace) this.server.trace(this.id, msg);
        if (msg.op === OP_MSG) {
            const reply = await runCommand(this.server, this, msg.body);
            if (msg.flags & MSG_MORE_TO_COME) return;
            this.send(encodeMsg(this.server.nextRequestId(), msg.requestId, reply, msg.flags & MSG_CHECKSUM_PRESENT));
        } else if (msg.op === OP_QUERY) {
            await this.handleQuery(msg);
        } else if (msg.op === OP_COMPRESSED) {
            this.abort("OP_COMPRESSED refused: this server advertises no compressors");
        } else {
            this.abort(`unsupported opcode ${msg.op}`);
        }
    }

    /** OP_QUERY serves only the legacy handshake (hello/isMaster on <db>.$cmd), answered with OP_REPLY. */
    async handleQuery(msg) {
        const dot = msg.ns.indexOf(".");
        const db = dot > 0 ? msg.ns.slice(0, dot) : "";
        const coll = dot > 0 ? msg.ns.slice(dot + 1) : "";
        const reply = (doc, flags = REPLY_AWAIT_CAPABLE) => this.send(encodeReply(this.server.nextRequestId(), msg.requestId, doc, flags));
        if (coll !== "$cmd") {
            const code = 5739101;
            reply({ $err: "OP_QUERY is no longer supported. The client driver may require an upgrade.", code, ok: 0 }, REPLY_AWAIT_CAPABLE | REPLY_QUERY_FAILURE);
            return;
        }
        let cmd = msg.query;
        if (cmd.$query && typeof cmd.$query === "object") cmd = cmd.$query;
        else if (cmd.query && typeof cmd.query === "object" && Object.keys(cmd)[0] === "query") cmd = cmd.query;
        const name = Object.keys(cmd)[0];
        if (!HANDSHAKE.has(name)) {
            const code = CODES.UnsupportedOpQueryCommand;
            reply({ ok: 0, errmsg: `Unsupported OP_QUERY command: ${name}. The client driver may require an upgrade.`, code, codeName: codeName(code) });
            return;
        }
        reply(await runCommand(this.server, this, cmd, db));
    }
}

/** A function appending one Extended JSON line per received command to path. */
function tracer(path) {
    const fd = fs.openSync(path, "a");
    return (conn, msg) => {
        const body = msg.op === OP_MSG ? msg.body : msg.op === OP_QUERY ? msg.query : null;
        if (!body) return;
        const shown = { ...body };
        for (const k of ["payload", "speculativeAuthenticate"]) if (k in shown) shown[k] = "<redacted>";
        const line = { conn, op: msg.op, flags: msg.flags, ns: msg.ns, body: shown };
        fs.writeSync(fd, EJSON.stringify(line, { relaxed: false }) + "\n");
    };
}

function main() {
    const { values } = parseArgs({
        options: {
            host: { type: "string", default: "127.0.0.1" },
            port: { type: "string" },
            user: { type: "string" },
            password: { type: "string" },
            "set-name": { type: "string", default: "tgrs0" },
            trace: { type: "string" },
        },
        strict: true,
    });
    if (values.port === undefined || !values.user || values.password === undefined) {
        process.stderr.write("usage: node server.mjs --port P --user U --password W [--host H] [--set-name S] [--trace FILE]\n");
        process.exit(2);
    }
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
        process.stderr.write(`invalid --port ${values.port}\n`);
        process.exit(2);
    }
    const store = new Store();
    // What a fresh replica-set member has: admin's FCV document, local's startup log, config.
    store.ensureCollection("admin", "system.version").insert({ _id: "featureCompatibilityVersion", version: "6.0" });
    store.ensureCollection("local", "startup_log").insert({ _id: `tenantgate-test-backend-${Date.now()}`, startTime: new Date(), pid: process.pid });
    store.ensureCollection("config", "system.sessions");
    let requestId = 0;
    let connections = 0;
    const server = {
        host: values.host,
        port,
        setName: values["set-name"],
        processId: new ObjectId(),
        electionId: new ObjectId("7fffffff0000000000000001"),
        creds: new ScramCredentials(values.user, values.password),
        store,
        cursors: new CursorRegistry(),
        sessions: new Map(),
        nextRequestId: () => (requestId = (requestId + 1) & 0x7fffffff),
        timestamp: () => new Timestamp({ t: store.clusterTime.t, i: store.clusterTime.i }),
        trace: values.trace ? tracer(values.trace) : null,
    };
    const listener = net.createServer((socket) => new Connection(server, socket, ++connections));
    listener.on("error", (e) => {
        log(`listen failed: ${e.message}`);
        process.exit(1);
    });
    listener.listen({ host: values.host, port, exclusive: true }, () => {
        server.port = listener.address().port;
        process.stdout.write(`listening on ${server.port}\n`);
    });
    const stop = () => {
        listener.close();
        process.exit(0);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
}

main();
