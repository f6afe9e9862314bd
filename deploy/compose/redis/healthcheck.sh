#!/bin/sh
# Redis service health: PING as the admin user (the password via the environment, not argv).
REDISCLI_AUTH=$(cat /run/secrets/redis-admin-password) redis-cli --user admin ping | grep -q PONG
