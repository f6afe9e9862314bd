#!/bin/sh
# Redis service entry point: writes the ACL file from the secrets, then runs the image's
# entrypoint (which drops to the redis user) with the service's command.
#   default     off
#   admin       everything: the test suites' admin login (TG_EXT_REDIS)
#   tenantgate  only ACL SETUSER: with allow_scripts tenantgate uses it for nothing else
#               (README, "Redis scripts"); sessions log in as per-tenant users it provisions
set -eu
umask 077
admin=$(cat /run/secrets/redis-admin-password)
svc=$(cat /run/secrets/redis-tenantgate-password)
cat > /data/users.acl <<ACL
user default off
user admin on >$admin ~* &* +@all
user tenantgate on >$svc -@all +acl|setuser
ACL
chown redis:redis /data/users.acl
exec docker-entrypoint.sh "$@"
