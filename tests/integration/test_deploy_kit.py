"""The deployment kit (deploy/docker, deploy/k8s) checked as far as this machine allows:
there is no container engine or cluster here, so the manifests are parsed and their
required fields asserted, the classic overlay's JSON patch is applied, the sidecar's
config passes `tenantgate check --offline`, and the image's runtime libraries are
compared with what the built binary links."""

import copy
import glob
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

import tghelpers as h

ROOT = os.environ.get("TG_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
K8S = os.path.join(ROOT, "deploy", "k8s")
DOCKERFILE = os.path.join(ROOT, "deploy", "docker", "Dockerfile")


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
    assert re.search(r"^RUN deploy/build\.sh ", text, re.M)
    with open(os.path.join(ROOT, "tests", "run.sh")) as f:
        assert re.search(r"^deploy/build\.sh ", f.read(), re.M)
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
