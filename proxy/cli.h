/*
 * Subcommands of the tenantgate binary other than `run` and `check`.
 */
#ifndef TG_PROXY_CLI_H
#define TG_PROXY_CLI_H

/*
 * `tenantgate token --hs256-secret-file F --tenant T [--ttl 1h] [--claim k=v]...
 *  [--tenant-claim NAME]`: prints an HS256 development token on stdout.
 * argv[0] is "token". Returns the process exit code (0, or 2 on usage errors).
 */
int tg_cli_token(int argc, char **argv);

/*
 * `tenantgate tenant -c FILE suspend|activate|show TENANT` and `... revoke-jti JTI
 * [--exp UNIX_SECONDS]`: writes the tenant registry named by the config and
 * publishes the invalidation. argv[0] is "tenant". Returns the exit code (0; 1 on
 * errors; 2 on usage errors).
 */
int tg_cli_tenant(int argc, char **argv);

#endif
