// A quick check of the test backend with the official Node.js driver (npm
// `mongodb`, a devDependency here), run by tests/integration/test_mongo_backend.py:
//
//   node check_node_driver.mjs <port> <user> <password>
//
// Exits 0 after printing "node driver: ok"; any failed assertion exits 1.

import assert from "node:assert/strict";
import { MongoClient, MongoServerError } from "mongodb";

const [port, user, password] = process.argv.slice(2);
const uri = (u, p) => `mongodb://${encodeURIComponent(u)}:${encodeURIComponent(p)}@127.0.0.1:${port}/` +
    "?authSource=admin&authMechanism=SCRAM-SHA-256&directConnection=true&serverSelectionTimeoutMS=10000";

const events = [];
const client = new MongoClient(uri(user, password), { monitorCommands: true });
client.on("commandStarted", (e) => events.push(e.commandName));
await client.connect();
try {
    const db = client.db("nodecheck");
    const docs = db.collection("docs");
    await docs.drop().catch(() => {});

    // insertMany goes out as one insert with `documents` as a kind 1 sequence.
    const ins = await docs.insertMany(Array.from({ length: 300 }, (_, i) => ({ i, kind: i % 3 === 0 ? "fizz" : "plain" })));
    assert.equal(ins.insertedCount, 300);

    // A cursor spanning batches: 300 documents in batches of 64 need getMore.
    const before = events.filter((n) => n === "getMore").length;
    const all = await docs.find({}, { sort: { i: 1 }, batchSize: 64 }).toArray();
    assert.equal(all.length, 300);
    assert.deepEqual(all.slice(0, 3).map((d) => d.i), [0, 1, 2]);
    assert.ok(events.filter((n) => n === "getMore").length - before >= 4, "getMore was used");

    const bulk = await docs.bulkWrite([
        { insertOne: { document: { i: 1000 } } },
        { updateOne: { filter: { i: 1 }, update: { $set: { touched: true } } } },
        { updateOne: { filter: { i: 2000 }, update: { $set: { created: true } }, upsert: true } },
        { deleteMany: { filter: { i: { $gte: 290, $lt: 300 } } } },
    ]);
    assert.equal(bulk.insertedCount, 1);
    assert.equal(bulk.modifiedCount, 1);
    assert.equal(bulk.upsertedCount, 1);
    assert.equal(bulk.deletedCount, 10);

    assert.equal(await docs.countDocuments({ kind: "fizz" }), 97);
    assert.equal(await docs.estimatedDocumentCount(), 292);
    assert.deepEqual((await docs.distinct("kind")).sort(), ["fizz", "plain"]);

    await db.collection("kinds").insertMany([{ _id: "fizz", label: "F" }, { _id: "plain", label: "P" }]);
    const joined = await docs.aggregate([
        { $match: { i: { $lt: 3 } } },
        { $lookup: { from: "kinds", localField: "kind", foreignField: "_id", as: "k" } },
        { $sort: { i: 1 } },
        { $project: { _id: 0, i: 1, label: { $first: "$k.label" } } },
    ]).toArray();
    assert.deepEqual(joined, [{ i: 0, label: "F" }, { i: 1, label: "P" }, { i: 2, label: "P" }]);

    const after = await docs.findOneAndUpdate({ i: 5 }, { $inc: { i: 100 } }, { returnDocument: "after" });
    assert.equal(after.i, 105);

    // A transaction: lsid, txnNumber, startTransaction, autocommit and commitTransaction.
    const session = client.startSession();
    try {
        await session.withTransaction(async () => {
            await docs.insertOne({ tx: 1 }, { session });
            await docs.updateOne({ tx: 1 }, { $set: { tx: 2 } }, { session });
        });
    } finally {
        await session.endSession();
    }
    assert.ok(events.includes("commitTransaction"));
    assert.equal(await docs.countDocuments({ tx: 2 }), 1);

    const names = (await db.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name).sort();
    assert.deepEqual(names, ["docs", "kinds"]);
    const dbs = (await client.db("admin").admin().listDatabases()).databases.map((d) => d.name);
    assert.ok(dbs.includes("nodecheck"));

    await assert.rejects(db.command({ noSuchCommand: 1 }), (e) => e instanceof MongoServerError && e.code === 59);
} finally {
    await client.close();
}

const bad = new MongoClient(uri(user, password + "x"));
await assert.rejects(bad.connect(), (e) => /Authentication failed/.test(e.message) || e.code === 18);
await bad.close();
console.log("node driver: ok");
