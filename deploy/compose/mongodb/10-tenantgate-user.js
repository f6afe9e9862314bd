// MongoDB service, first start only (/docker-entrypoint-initdb.d, run by the image's
// entrypoint with the root login, on its temporary standalone mongod): tenantgate's service
// user, SCRAM-SHA-256 only (tenantgate's backend login), with read/write and index rights on
// every database -- database isolation creates one database per tenant.
const fs = require("fs");
const pwd = fs.readFileSync("/run/secrets/mongo-tenantgate-password", "utf8").trim();
db.getSiblingDB("admin").createUser({
  user: "tenantgate",
  pwd: pwd,
  mechanisms: ["SCRAM-SHA-256"],
  roles: [
    { role: "readWriteAnyDatabase", db: "admin" },
    { role: "dbAdminAnyDatabase", db: "admin" },
  ],
});
