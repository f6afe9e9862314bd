"""A target is one path from the load generator to a real server.

Every workload of a kind runs against every target of that kind, in the same
run, with the same parameters. `direct` is the baseline every ratio divides by.
A proxy target names the PID whose CPU time is charged to it (one proxy process
may serve several targets, e.g. tenantgate's postgres and redis listeners; the
runs are sequential, so the CPU delta of one run belongs to that run).
"""

from dataclasses import dataclass, field
from typing import Optional

KINDS = ("postgres", "redis", "mongodb", "bolt")


@dataclass
class Target:
    name: str  # row label, e.g. "direct", "tenantgate-tcp", "haproxy"
    kind: str  # "postgres" | "redis" | "mongodb" | "bolt"
    host: str
    port: int
    pid: Optional[int] = None  # proxy process charged with CPU; None for direct
    proc: object = None  # procs.Proc of the proxy, to check it is still alive
    # Client credentials. PostgreSQL: user/password (PGPASSWORD)/dbname.
    # Redis: password (AUTH) and optional ACL user. MongoDB: user/password,
    # SCRAM-SHA-256 on admin, or PLAIN on $external when extra["auth"] is "jwt".
    # Bolt: basic user/password, or the bearer token in `password` when
    # extra["auth"] is "jwt". A tenantgate protocol listener puts the tenant's
    # JWT in `password`. extra["self_scope"] ("field=tenant"): the MongoDB and
    # Bolt load generators scope their own commands (the path has no tenantgate).
    user: Optional[str] = None
    password: Optional[str] = None
    dbname: Optional[str] = None
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    @property
    def is_direct(self):
        return self.pid is None
