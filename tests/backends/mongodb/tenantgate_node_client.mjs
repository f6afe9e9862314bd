// The official Node.js driver (npm `mongodb`, a devDependency here) through tenantgate,
// run by tests/integration/test_mongo_proxy.py:
//
//   node tenantgate_node_client.mjs <port> <PLAIN|MONGODB-OIDC> <jwt> <db>
//
// PLAIN sends the JWT as the password on $external; MONGODB-OIDC hands it to the driver
// from an OIDC callback (the machine workflow). CRUD, a bulk write (kind 1 sequences),
// an upsert, a cursor spanning batches and an aggregation; prints one JSON line with
// what it saw, then "node client: ok". Any failed assertion exits 1.

import assert from "node:assert/strict";
import { MongoClient } from "mongodb";

const [port, mechanism, jwt, dbName] = process.argv.slice(2);
let callbacks = 0;
const common = { serverSelectionTimeoutMS: 10000, monitorCommands: true };
const client = mechanism === "PLAIN"
    ? new MongoClient(`mongodb://tenant:${encodeURIComponent(jwt)}@127.0.0.1:${port}/${dbName}` +
          "?authMechanism=PLAIN&authSource=%24external", common)
    : new MongoClient(`mongodb://127.0.0.1:${port}/${dbName}?authMechanism=MONGODB-OIDC`, {
          ...common,
          authMechanismProperties: {
              OIDC_CALLBACK: async () => {
                  callbacks++;
                  return { accessToken: jwt };
              },
          },
      });
const events = [];
client.on("commandStarted", (e) => events.push(e.commandName));
await client.connect();
try {
    const db = client.db(dbName);
    const docs = db.collection("nodedocs");
    const hello = await db.admin().command({ hello: 1 });
    assert.equal(hello.isWritablePrimary, true);
    assert.equal(hello.setName, undefined);
    assert.equal(hello.hosts, undefined);

    const ins = await docs.insertMany(Array.from({ length: 250 }, (_, i) => ({ i })));
    assert.equal(ins.insertedCount, 250);
    const all = await docs.find({}, { sort: { i: 1 }, batchSize: 40 }).toArray();
    assert.equal(all.length, 250);
    assert.ok(events.includes("getMore"), "the cursor spanned batches");

    const bulk = await docs.bulkWrite([
        { insertOne: { document: { i: 1000 } } },
        { updateOne: { filter: { i: 1 }, update: { $set: { touched: true } } } },
        { updateOne: { filter: { i: 2000 }, update: { $set: { created: true } }, upsert: true } },
        { deleteMany: { filter: { i: { $gte: 240, $lt: 250 } } } },
    ]);
    assert.equal(bulk.insertedCount, 1);
    assert.equal(bulk.modifiedCount, 1);
    assert.equal(bulk.upsertedCount, 1);
    assert.equal(bulk.deletedCount, 10);

    const agg = await docs.aggregate([
        { $match: { i: { $lt: 5 } } },
        { $group: { _id: null, n: { $sum: 1 } } },
    ]).toArray();
    assert.equal(agg[0].n, 5);
    const count = await docs.countDocuments({});
    const upserted = await docs.findOne({ i: 2000 });
    assert.equal(upserted.created, true);
    console.log(JSON.stringify({ count, callbacks, tenantField: upserted.tenant_id ?? null }));
    console.log("node client: ok");
} finally {
    await client.close();
}
