#!/bin/sh
# Neo4j service health: a statement over Bolt as the neo4j user.
NEO4J_USERNAME=neo4j NEO4J_PASSWORD=$(cat /run/secrets/neo4j-password) \
    cypher-shell -a bolt://127.0.0.1:7687 'RETURN 1' >/dev/null
