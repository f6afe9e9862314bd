#!/bin/bash
# MongoDB service health. On its first run it initiates the replica set: one member, named
# by the service's name on the compose network (the address tenantgate's backend uses).
# Healthy once this member is the primary.
set -euo pipefail
exec mongosh --quiet --host 127.0.0.1 --authenticationDatabase admin -u root \
    -p "$(cat /run/secrets/mongo-root-password)" --eval '
try {
  rs.status();
} catch (e) {
  if (e.codeName !== "NotYetInitialized") throw e;
  rs.initiate({ _id: "rs0", members: [{ _id: 0, host: "mongodb:27017" }] });
}
if (!db.hello().isWritablePrimary) quit(1);'
