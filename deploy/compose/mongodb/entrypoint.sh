#!/bin/bash
# MongoDB service entry point. mongod insists that its keyFile be readable by its own user
# only, and a compose file secret is bind-mounted with the host's owner and mode: so a
# private copy is made (as root, before the image's entrypoint drops to the mongodb user).
set -euo pipefail
install -m 0400 -o mongodb -g mongodb /run/secrets/mongo-keyfile /etc/mongo-keyfile
exec docker-entrypoint.sh "$@"
