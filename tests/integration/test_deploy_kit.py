"""The deployment kit (deploy/docker, deploy/k8s, deploy/compose) checked as far as this
machine allows: there is no container engine or cluster here, so the manifests are parsed
and their required fields asserted, the classic overlay's JSON patch is applied, the
sidecar's config passes `tenantgate check --offline`, and the image's runtime libraries are
compared with what the built binary links.

The compose kit: compose.yaml validated by docker-compose's own schema (`config`, which
needs no daemon), every service with an image or build and a healthcheck, secrets as files
written by run-suites.sh, the compose tenantgate's config passing `check --offline` with
those files, the suites' TG_EXT_* pointing at the published ports, and -- the part that
runs for real -- the PostgreSQL and Redis fixtures taking the external-server path when
TG_EXT_POSTGRES / TG_EXT_REDIS name a local throwaway server."""

import copy
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

import ext_backends
import pgserver
import tghelpers as h

ROOT = os.environ.get("TG_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(ROOT, "deploy", "k8s")
DOCKERFILE = os.path.join(ROOT, "deploy", "docker", "Dockerfile")
COMPOSE_DIR = os.path.join(ROOT, "deploy", "compose")
RUN_SUITES = os.path.join(COMPOSE_DIR, "run-suites.sh")
HERE = os.path.dirname(os.path.abspath(__file__))


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def base_objects():
    kust = load_all(os.path.join(K8S, "base", "kustomization.yaml"))[0]
    objs = []
    for r in kust["resources"]:
        objs += load_all(os.path.join(K8S, "base", r))
    return kust, objs


def one(objs, kind, name):
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def sidecar_config():
    with open(os.path.join(K8S, "base", "tenantgate.yaml")) as f:
        return yaml.safe_load(f)


def test_every_manifest_parses_with_its_identity():
    files = glob.glob(os.path.join(K8S, "**", "*.yaml"), recursive=True)
    assert len(files) >= 5
    for path in files:
        if os.path.basename(path) == "tenantgate.yaml":
            continue  # tenantgate's own config, checked below
        for doc in load_all(path):
            assert doc.get("apiVersion") and doc.get("kind"), path
            if doc["kind"] != "Kustomization":
                assert doc.get("metadata", {}).get("name"), path


def test_kustomizations_name_existing_files():
    for kpath in glob.glob(os.path.join(K8S, "*", "kustomization.yaml")):
        d = os.path.dirname(kpath)
        k = load_all(kpath)[0]
        for r in k.get("resources", []):
            assert os.path.exists(os.path.join(d, r)), (kpath, r)
        for gen in k.get("configMapGenerator", []):
            for f in gen["files"]:
                assert os.path.isfile(os.path.join(d, f)), (kpath, f)


def admin_port():
    return int(sidecar_config()["admin"]["listen"].rsplit(":", 1)[1])


def test_native_sidecar_pod():
    _, objs = base_objects()
    dep = one(objs, "Deployment", "app")
    spec = dep["spec"]["template"]["spec"]
    (tg,) = [c for c in spec["initContainers"] if c["name"] == "tenantgate"]
    assert tg["restartPolicy"] == "Always"
    ports = {p["name"]: p["containerPort"] for p in tg["ports"]}
    assert ports["admin"] == admin_port()
    for probe, path in (("startupProbe", "/startup"), ("livenessProbe", "/liveness"),
                        ("readinessProbe", "/readiness")):
        assert tg[probe]["httpGet"] == {"path": path, "port": "admin"}, probe
    assert tg["resources"]["requests"]["memory"] and tg["resources"]["limits"]["memory"]
    sc = tg["securityContext"]
    assert sc["runAsUser"] != 0 and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    # The drain outlasts the app's: the grace period covers tenantgate's whole drain.
    assert spec["terminationGracePeriodSeconds"] > sidecar_config()["drain_timeout_s"]
    mounts = {m["mountPath"]: m["name"] for m in tg["volumeMounts"]}
    assert mounts["/etc/tenantgate"] == "tenantgate-config"
    assert mounts["/etc/tenantgate/secrets"] == "tenantgate-secrets"
    # Only the sidecar holds the backend credentials.
    (app,) = spec["containers"]
    assert all(m["name"] != "tenantgate-secrets" for m in app.get("volumeMounts", []))
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tenantgate-config"]["configMap"]["name"] == "tenantgate-config"
    assert volumes["tenantgate-secrets"]["secret"]["secretName"] == "tenantgate-secrets"
    assert dep["spec"]["template"]["metadata"]["labels"]["tenantgate.io/sidecar"] == "true"


def test_network_policies_limit_the_app_to_dns_and_database_ports():
    _, objs = base_objects()
    egress = one(objs, "NetworkPolicy", "app-egress-through-tenantgate")
    assert egress["spec"]["policyTypes"] == ["Egress"]
    ports = {p["port"] for rule in egress["spec"]["egress"] for p in rule["ports"]}
    assert ports == {53, 5432, 6379, 27017, 7687}
    ingress = one(objs, "NetworkPolicy", "databases-admit-tenantgate-only")
    (rule,) = ingress["spec"]["ingress"]
    assert rule["from"][0]["podSelector"]["matchLabels"] == {"tenantgate.io/sidecar": "true"}


def _pointer(doc, path):
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    for p in parts[:-1]:
        doc = doc[int(p)] if isinstance(doc, list) else doc[p]
    return doc, parts[-1]


def _json_patch(doc, ops):
    """RFC 6902 add / remove / move, as kustomize applies them."""
    doc = copy.deepcopy(doc)
    for op in ops:
        if op["op"] == "move":
            parent, key = _pointer(doc, op["from"])
            value = parent.pop(int(key)) if isinstance(parent, list) else parent.pop(key)
            op = {"op": "add", "path": op["path"], "value": value}
        parent, key = _pointer(doc, op["path"])
        if op["op"] == "remove":
            del parent[int(key) if isinstance(parent, list) else key]
        elif op["op"] == "add":
            if isinstance(parent, list):
                parent.insert(len(parent) if key == "-" else int(key), op["value"])
            else:
                parent[key] = op["value"]
        else:
            raise AssertionError(f"unsupported op {op['op']}")
    return doc


def test_classic_overlay_makes_an_ordinary_sidecar_container():
    k = load_all(os.path.join(K8S, "classic", "kustomization.yaml"))[0]
    assert k["resources"] == ["../base"]
    _, objs = base_objects()
    dep = one(objs, "Deployment", "app")
    (patch,) = k["patches"]
    assert patch["target"] == {"kind": "Deployment", "name": "app"}
    out = _json_patch(dep, yaml.safe_load(patch["patch"]))
    spec = out["spec"]["template"]["spec"]
    assert "initContainers" not in spec
    names = [c["name"] for c in spec["containers"]]
    assert names == ["app", "tenantgate"]
    tg = spec["containers"][1]
    assert "restartPolicy" not in tg
    sleep = tg["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0].endswith("sleep")
    assert tg["readinessProbe"]["httpGet"]["path"] == "/readiness"
    # preStop sleep + the drain fit in the grace period.
    assert spec["terminationGracePeriodSeconds"] >= int(sleep[1]) + sidecar_config()[
        "drain_timeout_s"]


def _write_secrets(d):
    os.makedirs(d, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "alg": "RS256", "use": "sig"})
    with open(os.path.join(d, "jwks.json"), "w") as f:
        json.dump({"keys": [jwk]}, f)
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "db-ca")])
    import datetime
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    with open(os.path.join(d, "db-ca.crt"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    for name in ("pg-password", "redis-password"):
        with open(os.path.join(d, name), "w") as f:
            f.write("example\n")
    with open(os.path.join(d, "pg-context-key"), "w") as f:
        f.write(os.urandom(32).hex() + "\n")


def test_sidecar_config_passes_check(tmp_path):
    """The ConfigMap's tenantgate.yaml with the Secret's files beside it (as mounted)."""
    shutil.copy(os.path.join(K8S, "base", "tenantgate.yaml"), tmp_path / "tenantgate.yaml")
    _write_secrets(str(tmp_path / "secrets"))
    secret = load_all(os.path.join(K8S, "base", "secret.example.yaml"))[0]
    assert sorted(secret["stringData"]) == sorted(os.listdir(tmp_path / "secrets"))
    r = h.run_tg(["check", "--offline", "-c", str(tmp_path / "tenantgate.yaml")])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok (2 listeners)" in r.stdout


def _dockerfile():
    with open(DOCKERFILE) as f:
        return f.read()


def test_image_builds_with_the_ci_build_script():
    text = _dockerfile()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages[0].startswith("debian:12-slim") and stages[-1] == "debian:12-slim"
    run = re.search(r"^RUN deploy/build\.sh \S+ -DCMAKE_BUILD_TYPE=(\w+)", text, re.M)
    assert run, "the image must build with deploy/build.sh"
    with open(os.path.join(ROOT, "tests", "run.sh")) as f:
        ci = f.read()
    assert re.search(r"^deploy/build\.sh ", ci, re.M)
    # the flags CI tests with, so a warning (-Werror) or a miscompile shows up in CI first
    assert re.search(rf"^\s*type={run.group(1)}$", ci, re.M), run.group(1)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert '"/usr/local/bin/tenantgate"' in re.findall(r"^ENTRYPOINT (.*)$", text, re.M)[-1]


def _package_of(lib_path):
    for candidate in (lib_path, lib_path.replace("/usr/lib/", "/lib/", 1)):
        r = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0]
    return None


def test_image_carries_the_libraries_the_binary_links():
    """Every shared library the binary names (NEEDED) comes from a package the runtime
    stage installs (libc6 is in the base image), and nothing else is installed."""
    if h.SANITIZED:
        # The image ships an optimised build; a sanitizer build links its runtimes and, at
        # -O0, libraries the optimised one inlines. tests/run.sh's normal pass checks it.
        pytest.skip("sanitizer build: the image's libraries are checked by the normal pass")
    runtime = _dockerfile().split("\nFROM ")[-1]
    m = re.search(r"apt-get install -y --no-install-recommends\s*\\?\s*\n?(.*?)\\?\n\s*&&", runtime,
                  re.S)
    assert m, "runtime stage apt-get install not found"
    installed = set(m.group(1).split()) - {"\\"}
    r = subprocess.run(["readelf", "-d", h.TG_BIN], capture_output=True, text=True, check=True)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", r.stdout)
    assert needed
    ldconfig = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
    wanted = set()
    for lib in needed:
        path = re.search(rf"^\s*{re.escape(lib)} \(libc6,x86-64[^)]*\) => (\S+)$", ldconfig,
                         re.M)
        assert path, lib
        pkg = _package_of(os.path.realpath(path.group(1)))
        assert pkg, lib
        wanted.add(pkg.split(":")[0])
    wanted -= {"libc6"}
    assert wanted <= installed, f"missing from the image: {sorted(wanted - installed)}"
    assert installed - wanted == {"ca-certificates"}, sorted(installed - wanted)


# ---- deploy/compose ------------------------------------------------------------------------------

# service: (image prefix, the port the suites use, the variable that carries it)
BACKENDS = {
    "postgres": ("postgres:16", 5432, "TG_EXT_POSTGRES"),
    "redis": ("redis:7.0", 6379, "TG_EXT_REDIS"),
    "mongodb": ("mongo:7.0", 27017, "TG_EXT_MONGODB"),
    "neo4j": ("neo4j:5.", 7687, "TG_EXT_NEO4J"),
}


def compose():
    with open(os.path.join(COMPOSE_DIR, "compose.yaml")) as f:
        return yaml.safe_load(f)


def published(svc):
    """{container port: host port} of a service, asserting every port is on 127.0.0.1."""
    out = {}
    for p in svc.get("ports", []):
        ip, host, container = p.split(":")
        assert ip == "127.0.0.1", p
        out[int(container)] = int(host)
    return out


def compose_secrets(tmp_path):
    """The secret files as run-suites.sh writes them, in tmp_path/secrets."""
    d = tmp_path / "secrets"
    r = subprocess.run(["bash", RUN_SUITES, "--secrets-only", str(d)], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return d


def test_compose_services_have_images_healthchecks_and_pinned_versions():
    c = compose()
    assert set(c["services"]) == set(BACKENDS) | {"tenantgate"}
    for name, svc in c["services"].items():
        assert svc.get("image") or svc.get("build"), name
        test = svc["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
        assert published(svc), name
    for name, (image, _, _) in BACKENDS.items():
        assert c["services"][name]["image"].startswith(image), name
    assert c["services"]["neo4j"]["image"].endswith("-community")
    tg = c["services"]["tenantgate"]
    assert tg["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert os.path.samefile(os.path.join(COMPOSE_DIR, tg["build"]["context"]), ROOT)
    assert tg["depends_on"] == {n: {"condition": "service_healthy"} for n in BACKENDS}
    # a replica set of one, so that tenantgate's topology masking meets a real one
    cmd = c["services"]["mongodb"]["command"]
    assert cmd[cmd.index("--replSet") + 1] == "rs0" and "--keyFile" in cmd
    # the suites' PREPARE TRANSACTION attempts would really work if tenantgate let them through
    assert "max_prepared_transactions=4" in c["services"]["postgres"]["command"]


def test_compose_mounts_existing_scripts_and_the_rls_kit():
    c = compose()
    for name, svc in c["services"].items():
        for v in svc.get("volumes", []):
            src, dst = v.split(":")[:2]
            path = os.path.normpath(os.path.join(COMPOSE_DIR, src))
            assert os.path.exists(path), (name, v)
            if path.endswith(".sh"):
                assert os.access(path, os.X_OK), path
        for field in ("entrypoint", "healthcheck"):
            cmd = svc.get(field, {}).get("test") if field == "healthcheck" else svc.get(field)
            for arg in cmd or []:
                if arg.startswith("/tenantgate/"):  # mounted from ./<service>
                    local = os.path.join(COMPOSE_DIR, name, arg[len("/tenantgate/"):])
                    assert os.access(local, os.X_OK), (name, arg)
    pg = c["services"]["postgres"]
    assert "../sql:/tenantgate-sql:ro" in pg["volumes"]
    (init,) = [v.split(":")[0] for v in pg["volumes"] if "docker-entrypoint-initdb.d" in v]
    with open(os.path.join(COMPOSE_DIR, init)) as f:
        script = f.read()
    assert "-f /tenantgate-sql/tenantgate.sql" in script
    assert "-f /tenantgate-sql/signed_context.sql" in script
    assert "protect_table(" in script
    # the suites create role and database `app` themselves and refuse to reuse them
    assert not re.search(r"\bapp_role=app\b|CREATE DATABASE app\b", script)


def test_compose_secrets_are_files_run_suites_writes(tmp_path):
    c = compose()
    d = compose_secrets(tmp_path)
    top = c["secrets"]
    assert set(top) == set(os.listdir(d))
    for name, spec in top.items():
        assert spec == {"file": "${TG_COMPOSE_SECRETS:-./secrets}/" + name}, name
        assert os.stat(d / name).st_mode & 0o777 == 0o644, name
    assert os.stat(d).st_mode & 0o777 == 0o700
    for name, svc in c["services"].items():
        assert set(svc.get("secrets", [])) <= set(top), name
        for k, v in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|AUTH", k):  # credentials only by file
                assert k.endswith("_FILE") and v.startswith("/run/secrets/"), (name, k)
                assert v[len("/run/secrets/"):] in svc["secrets"], (name, k)
    pw = (d / "neo4j-password").read_text().strip()
    assert (d / "neo4j-auth").read_text().strip() == "neo4j/" + pw and len(pw) >= 8
    for key in ("jwt-secret", "pg-context-key", "redis-acl-key"):
        assert len((d / key).read_text().strip()) >= 32, key
    assert len(set((d / n).read_text() for n in top)) == len(top)  # each one fresh
    with open(DOCKERFILE + ".dockerignore") as f:  # never in the image's build context
        assert "deploy/compose/secrets" in f.read().split()


def test_compose_file_passes_docker_compose_config(tmp_path):
    """docker-compose's own schema validation (`config` needs no daemon)."""
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing (deploy/local/packages.sh lists it)"
    d = compose_secrets(tmp_path)
    env = dict(os.environ, TG_COMPOSE_SECRETS=str(d))
    r = subprocess.run([exe, "-f", os.path.join(COMPOSE_DIR, "compose.yaml"), "config"],
                       capture_output=True, text=True, timeout=120, env=env,
                       stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    resolved = yaml.safe_load(r.stdout)
    for name, spec in resolved["secrets"].items():
        assert spec["file"] == str(d / name), spec


def test_compose_tenantgate_config_passes_check(tmp_path):
    """tenantgate.yaml with the secrets the service mounts, written by run-suites.sh."""
    c = compose()
    tg = c["services"]["tenantgate"]
    assert "./tenantgate.yaml:/etc/tenantgate/tenantgate.yaml:ro" in tg["volumes"]
    assert tg["command"] == ["-c", "/etc/tenantgate/tenantgate.yaml"]
    d = compose_secrets(tmp_path)
    with open(os.path.join(COMPOSE_DIR, "tenantgate.yaml")) as f:
        text = f.read()
    used = set(re.findall(r"_file: /run/secrets/([\w-]+)", text))
    assert used == set(tg["secrets"]), "every mounted secret is used, every used one mounted"
    cfg_path = tmp_path / "tenantgate.yaml"
    cfg_path.write_text(text.replace("/run/secrets/", str(d) + "/"))
    r = h.run_tg(["check", "--offline", "-c", str(cfg_path)])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok (4 listeners)" in r.stdout
    cfg = yaml.safe_load(text)
    protocols = {"postgres": "postgres", "redis": "redis", "mongodb": "mongodb",
                 "bolt": "neo4j"}
    ports = published(tg)
    assert int(cfg["admin"]["listen"].rsplit(":", 1)[1]) in ports
    for lst in cfg["listeners"]:
        service = protocols[lst["protocol"]]
        assert lst["backend"]["address"] == f"{service}:{BACKENDS[service][1]}", lst["name"]
        assert int(lst["listen"].rsplit(":", 1)[1]) in ports, lst["name"]
    assert sorted(protocols) == sorted(lst["protocol"] for lst in cfg["listeners"])
    (graph,) = [lst for lst in cfg["listeners"] if lst["protocol"] == "bolt"]
    assert graph["bolt"]["isolation"] != "database"  # Community: one database
    host, port = graph["bolt"]["advertised_address"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) == ports[int(graph["listen"].rsplit(":", 1)[1])]


def _run_suites_text():
    with open(RUN_SUITES) as f:
        return f.read()


def test_run_suites_sets_exactly_the_variables_the_fixtures_read():
    script = set(re.findall(r"^export (TG_EXT_\w+)=", _run_suites_text(), re.M))
    fixtures = set()
    for path in glob.glob(os.path.join(HERE, "*.py")):
        with open(path) as f:
            fixtures |= set(re.findall(r"\b(TG_EXT_[A-Z0-9_]+)", f.read()))
    assert script == fixtures == set(ext_backends.VARS.values())


def test_run_suites_points_at_the_published_ports():
    c = compose()
    text = _run_suites_text()
    users = {"postgres": c["services"]["postgres"]["environment"]["POSTGRES_USER"],
             "mongodb": c["services"]["mongodb"]["environment"]["MONGO_INITDB_ROOT_USERNAME"],
             "neo4j": "neo4j", "redis": "admin"}
    with open(os.path.join(COMPOSE_DIR, "redis", "entrypoint.sh")) as f:
        assert "user admin on >$admin ~* &* +@all" in f.read()
    for service, (_, port, var) in BACKENDS.items():
        m = re.search(rf'^export {var}="(\w+)://(\w+):\$\w+@([\d.]+):(\d+)', text, re.M)
        assert m, var
        scheme, user, host, host_port = m.groups()
        assert scheme in ext_backends.SCHEMES[service if service != "neo4j" else "neo4j"]
        assert user == users[service], var
        assert host == "127.0.0.1" and int(host_port) == published(c["services"][service])[port]


# ---- the fixtures really take the external path ---------------------------------------------------


def _pytest(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
                          + args, capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=h.scaled(300), stdin=subprocess.DEVNULL)


def _pg_inventory(srv):
    return (srv.sql("SELECT datname FROM pg_database ORDER BY 1"),
            srv.sql("SELECT rolname FROM pg_roles ORDER BY 1"))


def test_pg_suite_uses_a_server_named_by_tg_ext_postgres(tmp_path, monkeypatch):
    """A PostgreSQL suite, pointed at a throwaway server by TG_EXT_POSTGRES: it passes without
    starting one of its own (no server binaries where it looks), sets up and drops its
    databases and roles there, and leaves what was there before alone."""
    monkeypatch.delenv("TG_EXT_POSTGRES", raising=False)
    if not pgserver.find_bindir():
        pytest.skip("PostgreSQL server binaries not found (set TG_PG_BINDIR)")
    with pgserver.PgServer(settings={"log_statement": "ddl"}) as srv:
        srv.sql("CREATE ROLE keep_me; CREATE DATABASE keep_db OWNER keep_me")
        before = _pg_inventory(srv)
        env = dict(os.environ, TG_PG_BINDIR=str(tmp_path / "no-server-binaries-here"),
                   TG_EXT_POSTGRES=f"postgresql://{srv.superuser}:{srv.superuser_password}"
                                   f"@127.0.0.1:{srv.port}")
        r = _pytest([os.path.join(HERE, "test_pg_preflight.py"), "-k",
                     "test_check_ok_after_kit or test_check_backend_tls"], env, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "1 passed, 1 skipped" in r.stdout, r.stdout
        assert "TG_EXT_POSTGRES is set: starts its own server" in r.stdout, r.stdout
        log = srv.log()
        made = re.findall(r'CREATE DATABASE "(pf_\d+_1)"', log)
        assert made, log[-3000:]
        assert f'DROP DATABASE IF EXISTS "{made[0]}"' in log
        assert _pg_inventory(srv) == before


def test_redis_suite_uses_a_server_named_by_tg_ext_redis(tmp_path):
    """Redis suites, pointed at a local redis-server (default user off, an admin user) by
    TG_EXT_REDIS: they pass there, and afterwards only what was there before is left."""
    from redis_fixture import REDIS_SERVER
    import redis

    admin_pw = os.urandom(12).hex()
    acl = tmp_path / "users.acl"
    acl.write_text(f"user default off\nuser admin on >{admin_pw} ~* &* +@all\n"
                   "user keepuser off\n")
    port = h.free_port()
    rs = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save",
                           "", "--appendonly", "no", "--dir", str(tmp_path), "--aclfile",
                           str(acl)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        admin = redis.Redis(host="127.0.0.1", port=port, username="admin", password=admin_pw)
        deadline = time.monotonic() + h.scaled(10)
        while True:
            try:
                admin.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and rs.poll() is None, "redis-server"
                time.sleep(0.05)
        admin.set("keep:me", "1")
        users = sorted(admin.acl_users())
        env = dict(os.environ, TG_EXT_REDIS=f"redis://admin:{admin_pw}@127.0.0.1:{port}")
        r = _pytest([os.path.join(HERE, "test_redis_proxy.py") + "::test_auth_forms_and_prefix",
                     os.path.join(HERE, "test_redis_scripts.py")
                     + "::test_check_probes_the_service_user"], env, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "2 passed" in r.stdout, r.stdout
        stats = admin.info("commandstats")
        assert stats["cmdstat_set"]["calls"] >= 2  # keep:me, and the suite's through tenantgate
        assert stats["cmdstat_acl|setuser"]["calls"] >= 1  # the scripts env's service user
        assert admin.keys("*") == [b"keep:me"]
        assert sorted(admin.acl_users()) == users
    finally:
        rs.terminate()
        try:
            rs.wait(10)
        except subprocess.TimeoutExpired:
            rs.kill()


def test_compose_readme_lists_exactly_the_tests_skipped_against_real_servers():
    import ast

    marked = set()
    for path in glob.glob(os.path.join(HERE, "test_*.py")):
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            for d in getattr(node, "decorator_list", []):
                if isinstance(d, ast.Call) and ast.unparse(d.func).endswith("local_backend"):
                    kind, reason = (a.value for a in d.args)
                    assert kind in ext_backends.VARS, (path, node.name)
                    marked.add((f"{os.path.basename(path)}::{node.name}", kind, reason))
    with open(os.path.join(COMPOSE_DIR, "README.md")) as f:
        listed = set(re.findall(r"^\| `(test_\w+\.py::\w+)` \| (\w+) \| (.+?) \|$", f.read(),
                                re.M))
    assert listed == marked
