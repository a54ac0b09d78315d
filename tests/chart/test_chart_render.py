"""The chart renders what docs/CONTRACT.md and issue 5 ask for: helm lint, the values schema, and the rendered
objects of every certificate mode (no control plane needed)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from chart_tools import CHART_DIR, E2E_DIR, ROOT, VALUE_SETS, find, kinds, parse_manifests

RELEASE, NAMESPACE = "bg", "longhorn-system"
FULLNAME = "bg-backup-guard"
MUTATING, VALIDATING = f"{FULLNAME}-mutating", f"{FULLNAME}-validating"
APP_VERSION = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]


def container(objects, kind="Deployment"):
    return find(objects, kind)["spec"]["template"]["spec"]["containers"][0]


def webhook_configs(objects):
    return [find(objects, "MutatingWebhookConfiguration"),
            find(objects, "ValidatingWebhookConfiguration")]


def flag_values(args, flag):
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


# ---- lint and schema ------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [v for _, v in VALUE_SETS], ids=[n for n, _ in VALUE_SETS])
def test_helm_lint_strict_passes(helm, values):
    helm("lint", "--strict", CHART_DIR, "--namespace", NAMESPACE, "-f", values)


@pytest.mark.parametrize("args, message", [
    (["--set", "replicaCont=3"], "additional properties 'replicaCont' not allowed"),
    (["--set", "webhook.failurPolicy=Fail"], "additional properties 'failurPolicy' not allowed"),
    (["--set", "certificates.certmanager.duration=1h"], "additional properties 'certmanager'"),
    (["--set", "webhook.failurePolicy=fail"], "/webhook/failurePolicy"),
    (["--set", "certificates.mode=cert-manager"], "/certificates/mode"),
    (["--set", "webhook.timeoutSeconds=31"], "/webhook/timeoutSeconds"),
    (["--set", "logLevel=verbose"], "/logLevel"),
    (["--set", "webhook.url=https://127.0.0.1:9443/prefix"], "/webhook/url"),
    (["--set", "monitoring.serviceMonitor.enable=true"], "additional properties 'enable'"),
    (["--set", "certificates.mode=existingSecret"], "certificates.existingSecret.name is required"),
    (["--set", "shutdown.terminationGracePeriodSeconds=25"],
     "must exceed shutdown.preStopDelaySeconds + shutdown.graceSeconds"),
    (["--set", "image.digest=latest"], "/image/digest"),
    (["--set", "securityContext.runAsUser=nobody"], "/securityContext/runAsUser"),
    (["--set", "podSecurityContext.fsGroup=-1"], "/podSecurityContext/fsGroup"),
    (["--set", "securityContext.readOnlyRootFilesytem=true"],
     "additional properties 'readOnlyRootFilesytem' not allowed"),
    (["--set", "readinessProbe.periodSeconds=often"], "/readinessProbe/periodSeconds"),
    (["--set", "livenessProbe.httpGett.path=/x"], "additional properties 'httpGett' not allowed"),
    (["--set-json", 'topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"zone"}]'],
     "missing property 'whenUnsatisfiable'"),
    (["--set-json", 'topologySpreadConstraints={"maxSkew":1}'], "/topologySpreadConstraints"),
    (["--set-json", 'extraEnv=[{"value":"x"}]'], "missing property 'name'"),
    (["--set-json", 'extraEnv={"TZ":"UTC"}'], "/extraEnv"),
    (["--set", "serviceAccount.create=maybe"], "/serviceAccount/create"),
    (["--set", "serviceAccount.create=false"],
     "serviceAccount.name is required with serviceAccount.create=false"),
    (["--set", "networkPolicy.enabled=yes"], "/networkPolicy/enabled"),
    (["--set", "networkPolicy.enabled=true"], "networkPolicy.apiServer.cidrs is required"),
    (["--set-json", 'networkPolicy.apiServer.cidrs=["10.0.0.1"]'],
     "/networkPolicy/apiServer/cidrs/0"),
    (["--set-json", 'networkPolicy.apiServer.ports=[0]'], "/networkPolicy/apiServer/ports/0"),
    (["--set-json", 'webhook.namespaceSelector={"matchLabels":{"a":1}}'],
     "/webhook/namespaceSelector/matchLabels/a"),
    (["--set", "webhook.objectSelector.matchExpressions[0].key=a",
      "--set", "webhook.objectSelector.matchExpressions[0].operator=Is"],
     "/webhook/objectSelector/matchExpressions/0/operator"),
    (["--set", "webhook.matchConditions=sometimes"], "/webhook/matchConditions"),
    (["--set", "hostNetwork=true", "--set", "ports.webhook=10250"], "the kubelet's port"),
    (["--set", "ports.webhook=443"], "a non-root server cannot bind it"),
    (["--set", "hostNetwork=1"], "/hostNetwork"),
    (["--set", "podDisruptionBudget.maxUnavailable=half"], "/podDisruptionBudget/maxUnavailable"),
    (["--set", "podDisruptionBudget.unhealthyPodEvictionPolicy=Never"],
     "/podDisruptionBudget/unhealthyPodEvictionPolicy"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_values_schema_and_checks_reject_mistakes(helm, args, message):
    proc = helm("template", RELEASE, CHART_DIR, "--namespace", NAMESPACE, *args, check=False)
    assert proc.returncode != 0, f"helm template {args} should fail"
    assert message in proc.stderr, proc.stderr


# ---- the default render ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def defaults(helm):
    return helm.render()


def test_defaults_render_the_expected_objects(defaults):
    assert kinds(defaults) == sorted([
        "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding", "Deployment",
        "Job", "MutatingWebhookConfiguration", "PodDisruptionBudget", "Role", "Role",
        "RoleBinding", "RoleBinding", "Service", "ServiceAccount", "ServiceAccount",
        "ValidatingWebhookConfiguration"])


def test_deployment_has_two_replicas_anti_affinity_and_surge_only_rollout(defaults):
    spec = find(defaults, "Deployment")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    preferred = spec["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert preferred[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == \
        spec["selector"]["matchLabels"]


def test_pod_drains_before_it_is_killed(defaults):
    pod = find(defaults, "Deployment")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["/backup-guard", "sleep", "5s"]
    grace = int(flag_values(c["args"], "--shutdown-grace")[0].removesuffix("s"))
    assert pod["terminationGracePeriodSeconds"] > 5 + grace
    # The probes have a port of their own, apart from the webhook port's connection cap.
    assert flag_values(c["args"], "--health-probe-bind-address") == [":8081"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "probes",
                                             "scheme": "HTTP"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "probes",
                                            "scheme": "HTTP"}


def test_container_is_hardened(defaults):
    pod = find(defaults, "Deployment")["spec"]["template"]["spec"]
    job_pod = find(defaults, "Job")["spec"]["template"]["spec"]
    for p in (pod, job_pod):
        assert p["automountServiceAccountToken"] is True
        sc = p["containers"][0]["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert p["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_image_and_resources_come_from_values(helm, defaults):
    c = container(defaults)
    assert c["image"] == f"backup-guard:{APP_VERSION}"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}
    c = container(helm.render("--set", "image.repository=registry.example/bg",
                              "--set", "image.tag=1.2.3", "--set", "image.pullPolicy=Always",
                              "--set", "resources.limits.memory=1Gi"))
    assert c["image"] == "registry.example/bg:1.2.3"
    assert c["imagePullPolicy"] == "Always"
    assert c["resources"]["limits"] == {"memory": "1Gi"}


def test_self_managed_mode_args_and_no_ca_bundle(defaults):
    args = container(defaults)["args"]
    assert args[:9] == ["serve", "--listen", ":9443", "--metrics-listen", ":8080",
                        "--namespace", NAMESPACE, "--log-level", "info"]
    assert flag_values(args, "--cert-secret") == [f"{FULLNAME}-tls"]
    assert flag_values(args, "--service-name") == [FULLNAME]
    assert flag_values(args, "--mutating-webhook-configuration") == [MUTATING]
    assert flag_values(args, "--validating-webhook-configuration") == [VALIDATING]
    assert "--tls-cert-file" not in args
    assert "volumes" not in find(defaults, "Deployment")["spec"]["template"]["spec"]
    for config in webhook_configs(defaults):
        for hook in config["webhooks"]:
            assert "caBundle" not in hook["clientConfig"], "the server owns caBundle"
            assert hook["clientConfig"]["service"] == {
                "name": FULLNAME, "namespace": NAMESPACE, "port": 443,
                "path": hook["clientConfig"]["service"]["path"]}
        assert "cert-manager.io/inject-ca-from" not in config["metadata"].get("annotations", {})


def test_self_managed_extra_dns_names_become_cert_dns_flags(helm):
    args = container(helm.render("--set", "certificates.extraDnsNames={a.example,b.example}"))["args"]
    assert flag_values(args, "--cert-dns") == ["a.example", "b.example"]


def test_self_managed_certificate_names_the_service_where_it_is(helm):
    """The server names the Service in its --namespace with cluster.local; a Service in another
    namespace or another cluster domain needs its names passed explicitly."""
    args = container(helm.render("-f", dict(VALUE_SETS)["separate-storage-namespace"],
                                 "--set", "certificates.clusterDomain=corp.local"))["args"]
    assert flag_values(args, "--cert-dns") == [
        f"{FULLNAME}.{NAMESPACE}", f"{FULLNAME}.{NAMESPACE}.svc",
        f"{FULLNAME}.{NAMESPACE}.svc.corp.local"]


def test_service_exposes_443_to_the_webhook_port_and_metrics(defaults):
    ports = {p["name"]: p for p in find(defaults, "Service")["spec"]["ports"]}
    assert ports["https"]["port"] == 443 and ports["https"]["targetPort"] == "webhook"
    assert ports["metrics"]["port"] == 8080 and ports["metrics"]["targetPort"] == "metrics"
    c_ports = {p["name"]: p["containerPort"] for p in container(defaults)["ports"]}
    assert c_ports == {"webhook": 9443, "metrics": 8080, "probes": 8081}


def test_pod_disruption_budget_only_with_more_than_one_replica(helm, defaults):
    assert find(defaults, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert "PodDisruptionBudget" not in kinds(helm.render("--set", "replicaCount=1"))


def test_crds_are_off_by_default(defaults):
    assert "CustomResourceDefinition" not in kinds(defaults)


# ---- webhook configurations ------------------------------------------------------------------------

def e2e_webhooks() -> list[dict]:
    text = (E2E_DIR / "manifests" / "webhooks.yaml.tmpl").read_text()
    for placeholder, value in {"@URL@": "https://x", "@CA_BUNDLE@": "", "@FAILURE_POLICY@": "Fail",
                               "@TIMEOUT_SECONDS@": "10"}.items():
        text = text.replace(placeholder, value)
    return parse_manifests(text)


# The Kubernetes version of the e2e control plane (tests/e2e/tools/kube/go.mod): what the e2e tests exercise.
E2E_KUBE_VERSION = re.search(r"^\s*k8s\.io/kubernetes v(\S+)", (
    E2E_DIR / "tools" / "kube" / "go.mod").read_text(), re.M).group(1)


def test_webhook_rules_match_the_e2e_configurations(helm):
    """The chart registers exactly what the e2e tests exercise (tests/e2e/manifests), on the e2e
    control plane's Kubernetes version (matchConditions included)."""
    want = {o["kind"]: o for o in e2e_webhooks()}
    for config in webhook_configs(helm.render("--kube-version", E2E_KUBE_VERSION)):
        expected = want[config["kind"]]["webhooks"]
        got = config["webhooks"]
        assert [h["name"] for h in got] == [h["name"] for h in expected]
        for g, e in zip(got, expected):
            for key in ("rules", "sideEffects", "admissionReviewVersions", "timeoutSeconds",
                        "failurePolicy", "matchPolicy", "namespaceSelector"):
                assert g[key] == e[key], f"{config['kind']} {key}"
            for key in ("objectSelector", "matchConditions"):
                assert (g.get(key) or None) == (e.get(key) or None), f"{config['kind']} {key}"
            assert g["clientConfig"]["service"]["path"] == \
                e["clientConfig"]["url"].removeprefix("https://x")


def test_failure_policy_and_timeout_come_from_values(helm):
    objects = helm.render("--set", "webhook.failurePolicy=Ignore",
                          "--set", "webhook.timeoutSeconds=3")
    for config in webhook_configs(objects):
        assert config["webhooks"][0]["failurePolicy"] == "Ignore"
        assert config["webhooks"][0]["timeoutSeconds"] == 3


def test_namespace_selector_excludes_kube_system(defaults):
    for config in webhook_configs(defaults):
        assert config["webhooks"][0]["namespaceSelector"] == {"matchExpressions": [{
            "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]}


def test_url_mode_calls_the_url_instead_of_the_service(helm):
    objects = helm.render("--set", "webhook.url=https://localhost:9443/")
    mutating, validating = webhook_configs(objects)
    assert mutating["webhooks"][0]["clientConfig"] == {
        "url": "https://localhost:9443/v1/webhook/mutation"}
    assert validating["webhooks"][0]["clientConfig"] == {
        "url": "https://localhost:9443/v1/webhook/validation"}


# ---- certificate modes -----------------------------------------------------------------------------

def test_cert_manager_mode_issues_a_certificate_and_injects_the_ca(helm):
    objects = helm.render("--set", "certificates.mode=certManager")
    issuers = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Issuer"}
    assert issuers == {f"{FULLNAME}-selfsigned": {"selfSigned": {}},
                       f"{FULLNAME}-ca": {"ca": {"secretName": f"{FULLNAME}-ca"}}}
    ca = find(objects, "Certificate", f"{FULLNAME}-ca")["spec"]
    assert ca["isCA"] is True and ca["issuerRef"]["name"] == f"{FULLNAME}-selfsigned"
    serving = find(objects, "Certificate", f"{FULLNAME}-serving")["spec"]
    assert serving["secretName"] == f"{FULLNAME}-tls"
    assert serving["issuerRef"] == {"name": f"{FULLNAME}-ca", "kind": "Issuer",
                                    "group": "cert-manager.io"}
    assert serving["dnsNames"] == [FULLNAME, f"{FULLNAME}.{NAMESPACE}",
                                   f"{FULLNAME}.{NAMESPACE}.svc",
                                   f"{FULLNAME}.{NAMESPACE}.svc.cluster.local"]
    for config in webhook_configs(objects):
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
            f"{NAMESPACE}/{FULLNAME}-serving"
        assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    assert_mounts_certificate_files(objects, f"{FULLNAME}-tls")


def test_cert_manager_mode_with_an_issuer_ref_makes_no_issuers(helm):
    objects = helm.render("-f", dict(VALUE_SETS)["cert-manager-issuer"])
    assert "Issuer" not in kinds(objects)
    serving = find(objects, "Certificate")["spec"]
    assert serving["issuerRef"] == {"name": "corporate-ca", "kind": "ClusterIssuer",
                                    "group": "cert-manager.io"}
    assert serving["dnsNames"][-1] == "backup-guard.example.com"


def test_existing_secret_mode_mounts_it_and_sets_the_ca_bundle(helm):
    objects = helm.render("-f", dict(VALUE_SETS)["existing-secret"])
    assert "Certificate" not in kinds(objects)
    for config in webhook_configs(objects):
        assert config["webhooks"][0]["clientConfig"]["caBundle"] == \
            "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="
    assert_mounts_certificate_files(objects, "my-backup-guard-tls")


def assert_mounts_certificate_files(objects, secret):
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert flag_values(args, "--tls-cert-file") == ["/certs/tls.crt"]
    assert flag_values(args, "--tls-key-file") == ["/certs/tls.key"]
    assert "--cert-secret" not in args
    assert pod["volumes"] == [{"name": "certs", "secret": {"secretName": secret}}]
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "certs", "mountPath": "/certs", "readOnly": True}]
    # Without self-managed certificates the server needs neither Secrets nor webhook writes.
    role = find(objects, "Role", FULLNAME)
    assert all("secrets" not in r["resources"] for r in role["rules"])
    assert all(not n.endswith("-served") for r in role["rules"] for n in r.get("resourceNames", []))
    # Nor anything cluster-wide: no ClusterRole for the server at all.
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")
                and o["metadata"]["name"] == FULLNAME]


# ---- RBAC ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [v for _, v in VALUE_SETS], ids=[n for n, _ in VALUE_SETS])
def test_rbac_has_no_wildcards(helm, values):
    for o in helm.render("-f", values):
        if o["kind"] in ("Role", "ClusterRole"):
            for rule in o["rules"]:
                for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                    assert "*" not in rule.get(key, []), f"{o['kind']} {o['metadata']['name']}"
                    assert not any("*" in v for v in rule.get(key, [])), rule


def rules_by_resource(role):
    """{resource: [(sorted verbs, resourceNames or None), ...]}"""
    out = {}
    for rule in role["rules"]:
        for r in rule["resources"]:
            out.setdefault(r, []).append((sorted(rule["verbs"]), rule.get("resourceNames")))
    return out


def test_server_role_grants_exactly_what_the_server_uses(defaults):
    """No update (serve never PUTs a longhorn.io object), no delete of BackupTargets or Volumes
    (the processor deletes only a target's children), no patch of the Secret or the webhook
    configurations (they are read and PUT), no CRDs (serve never reads them)."""
    role = find(defaults, "Role", FULLNAME)
    assert role["metadata"]["namespace"] == NAMESPACE
    rules = rules_by_resource(role)
    assert set(rules) == {"backuptargets", "backupvolumes", "backups", "systembackups",
                          "backupbackingimages", "volumes", "settings", "leases", "secrets"}
    for r in ("backupvolumes", "backups", "systembackups", "backupbackingimages"):
        assert rules[r] == [(sorted(["get", "list", "watch", "patch", "delete"]), None)], r
    for r in ("backuptargets", "volumes"):
        assert rules[r] == [(sorted(["get", "list", "watch", "patch"]), None)], r
    assert rules["settings"] == [(["get", "list", "watch"], None)]
    assert rules["leases"] == [(["create"], None), (["get", "update"], [FULLNAME]),
                               (["get", "patch"], [f"{FULLNAME}-tls-served"])]
    assert rules["secrets"] == [(["create"], None), (["get", "update"], [f"{FULLNAME}-tls"])]
    cluster = rules_by_resource(find(defaults, "ClusterRole", FULLNAME))
    assert cluster == {
        "mutatingwebhookconfigurations": [(["get", "update"], [MUTATING])],
        "validatingwebhookconfigurations": [(["get", "update"], [VALIDATING])],
    }
    for binding in ("RoleBinding", "ClusterRoleBinding"):
        b = find(defaults, binding, FULLNAME)
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME,
                                  "namespace": NAMESPACE}]


def test_server_args_use_the_lease_the_role_names(defaults):
    args = container(defaults)["args"]
    assert flag_values(args, "--leader-election-id") == [FULLNAME]


def test_storage_namespace_moves_the_role_and_the_namespace_flag(helm):
    objects = helm.render("-f", dict(VALUE_SETS)["separate-storage-namespace"])
    assert flag_values(container(objects)["args"], "--namespace") == ["bg-storage"]
    assert find(objects, "Role", FULLNAME)["metadata"]["namespace"] == "bg-storage"
    assert find(objects, "RoleBinding", FULLNAME)["metadata"]["namespace"] == "bg-storage"
    assert find(objects, "Deployment")["metadata"]["namespace"] == NAMESPACE
    assert "Job" not in kinds(objects)


# ---- uninstall hook --------------------------------------------------------------------------------

def test_uninstall_hook_job_runs_the_uninstall_with_its_own_service_account(defaults):
    job = find(defaults, "Job")
    name = f"{FULLNAME}-uninstall"
    assert job["metadata"]["name"] == name
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-delete"
    assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == name and pod["restartPolicy"] == "Never"
    c = pod["containers"][0]
    assert c["image"] == f"backup-guard:{APP_VERSION}"
    assert c["args"] == ["uninstall", "--namespace", NAMESPACE, "--skip-unless-confirmed",
                         "--remove-webhook-configurations", f"{MUTATING},{VALIDATING}",
                         "--receipt", "/receipt/receipt.json"]
    # The Job's pods must not look like webhook pods to the Service or the budget.
    selector = find(defaults, "Service")["spec"]["selector"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert not all(labels.get(k) == v for k, v in selector.items())


def test_uninstall_hook_identity_exists_before_the_job_and_is_scoped(defaults):
    name = f"{FULLNAME}-uninstall"
    job_weight = int(find(defaults, "Job")["metadata"]["annotations"]["helm.sh/hook-weight"])
    for kind in ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
        o = find(defaults, kind, name)
        assert o["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
        assert int(o["metadata"]["annotations"]["helm.sh/hook-weight"]) < job_weight
    role = rules_by_resource(find(defaults, "Role", name))
    for r in ("volumes", "backuptargets", "backupvolumes", "backups", "systembackups",
              "backupbackingimages", "engines", "replicas", "nodes"):
        assert role[r] == [(["delete", "get", "list", "patch"], None)], r
    assert role["settings"] == [(["get", "list"], None)]
    assert sorted(role["configmaps"]) == [(["create"], None),
                                          (["patch"], ["backup-guard-uninstall-receipt"])]
    cluster = rules_by_resource(find(defaults, "ClusterRole", name))
    assert cluster["customresourcedefinitions"] == [(["get", "list"], None)]
    for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        assert cluster[kind] == [(["delete"], [MUTATING, VALIDATING])]


@pytest.mark.parametrize("extra", [[], ["--set-json", "uninstallHook.extraResources=[]"]],
                         ids=["defaults", "no-extra-resources"])
def test_uninstall_hook_rbac_names_every_kind_of_the_engines_v1_10_crds(helm, extra):
    """The uninstall's RBAC pre-flight checks get, list, patch and delete on every longhorn.io
    kind whose CRD exists: the hook's Role grants them for all 22 kinds of the engine at v1.10.0
    (settings: get and list only; the uninstall never writes them), whatever extraResources says."""
    engine = {crd["spec"]["names"]["plural"] for crd in _engine_crds("v1.10.0").values()}
    assert len(engine) == 22, sorted(engine)
    name = f"{FULLNAME}-uninstall"
    role = rules_by_resource(find(helm.render(*extra), "Role", name))
    missing = sorted(r for r in engine - {"settings"}
                     if role.get(r) != [(["delete", "get", "list", "patch"], None)])
    assert not missing, f"the hook's Role lacks get, list, patch and delete on {missing}"
    assert role["settings"] == [(["get", "list"], None)]


def test_uninstall_hook_can_be_disabled(helm):
    objects = helm.render("--set", "uninstallHook.enabled=false")
    assert "Job" not in kinds(objects)
    assert not [o for o in objects if o["metadata"]["name"].endswith("-uninstall")]


# ---- CRDs and monitoring ---------------------------------------------------------------------------

def _shipped_crds() -> dict:
    return {o["metadata"]["name"]: o for o in
            parse_manifests((CHART_DIR / "files" / "crds.yaml").read_text())}


def _engine_crds(version: str = "v1.10.0") -> dict:
    path = subprocess.run([str(ROOT / "tests" / "engine" / "engine-crds.sh"), version],
                          capture_output=True, text=True, check=True).stdout.strip()
    return {o["metadata"]["name"]: o for o in parse_manifests(Path(path).read_text())}


def _declared_fields(schema: dict, prefix: str = ""):
    """(path, type, required names) of every property a structural schema declares."""
    for name, prop in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield path, prop.get("type"), tuple(sorted(prop.get("required") or []))
        yield from _declared_fields(prop, path)


def _v1beta2_schema(crd: dict) -> dict:
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta2"]
    return version["schema"]["openAPIV3Schema"]


def test_shipped_crds_declare_every_field_with_the_engines_name_and_type():
    """The CRD subset the chart can install (files/crds.yaml) declares only fields the engine's own
    v1.10.0 CRDs have, each with the engine's type and required list: an object written for one
    is valid for the other (Volume's spec.Standby with its capital S, BackupBackingImage's required
    spec.userCreated, Backup's spec.backupBlockSize)."""
    engine = _engine_crds()
    wrong = []
    for name, crd in _shipped_crds().items():
        assert name in engine, f"{name} is not one of the engine's CRDs"
        assert crd["spec"]["names"] == engine[name]["spec"]["names"] | {
            k: v for k, v in crd["spec"]["names"].items() if k not in engine[name]["spec"]["names"]}
        theirs = {path: (typ, req) for path, typ, req in
                  _declared_fields(_v1beta2_schema(engine[name]))}
        for path, typ, req in _declared_fields(_v1beta2_schema(crd)):
            if path == "metadata":
                continue
            if path not in theirs:
                wrong.append(f"{name}: {path} is not in the engine's schema")
            elif theirs[path][0] != typ:
                wrong.append(f"{name}: {path} is {typ}, the engine's is {theirs[path][0]}")
            elif req != theirs[path][1] and set(req) - set(theirs[path][1]):
                wrong.append(f"{name}: {path} requires {req}, the engine's only {theirs[path][1]}")
            elif theirs[path][1] and not set(theirs[path][1]) <= set(req):
                # A field the engine requires must be required here too, so that an object
                # this subset admits is one the engine's CRD admits.
                wrong.append(f"{name}: {path} must require {theirs[path][1]}, not {req}")
    assert not wrong, "\n".join(wrong)


def test_crds_are_the_shipped_subset_and_kept_on_uninstall(helm):
    objects = helm.render("--set", "crds.install=true")
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    shipped = _shipped_crds()
    assert sorted(o["metadata"]["name"] for o in crds) == sorted(shipped)
    for crd in crds:
        assert crd["spec"] == shipped[crd["metadata"]["name"]]["spec"]
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    objects = helm.render("--set", "crds.install=true", "--set", "crds.keep=false")
    assert all("annotations" not in o["metadata"]
               for o in objects if o["kind"] == "CustomResourceDefinition")


def test_monitoring_objects_are_off_by_default_and_follow_the_values(helm, defaults):
    assert not {"ServiceMonitor", "PrometheusRule"} & set(kinds(defaults))
    objects = helm.render("-f", dict(VALUE_SETS)["monitoring"])
    monitor = find(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == \
        find(objects, "Service")["spec"]["selector"]
    rule = find(objects, "PrometheusRule")
    file_rules = yaml.safe_load((CHART_DIR / "files" / "prometheus-rules.yaml").read_text())
    assert rule["spec"] == file_rules


def test_prometheus_rules_alert_on_errors_stuck_deletions_and_certificate_expiry():
    rules = yaml.safe_load((CHART_DIR / "files" / "prometheus-rules.yaml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert 'backup_guard_admission_requests_total{code=~"5.."}' in \
        alerts["BackupGuardWebhookErrors"]["expr"]
    stuck = alerts["BackupGuardObjectsStuckDeleting"]
    assert re.search(r"backup_guard_objects_deleting_oldest_age_seconds\)? > 600", stuck["expr"])
    assert stuck["for"] == "10m"
    assert "backup_guard_certificate_expiry_timestamp_seconds" in \
        alerts["BackupGuardCertificateExpiresSoon"]["expr"]
    assert "- time() < 7 * 24 * 3600" in alerts["BackupGuardCertificateExpiresSoon"]["expr"]


# ---- configurability (issue 16) --------------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32


def pod_spec(objects, kind="Deployment"):
    return find(objects, kind)["spec"]["template"]["spec"]


def test_image_digest_wins_over_the_tag(helm):
    objects = helm.render("--set", "image.repository=registry.example/bg",
                          "--set", "image.tag=1.2.3", "--set", f"image.digest={DIGEST}")
    assert container(objects)["image"] == f"registry.example/bg@{DIGEST}"
    assert container(objects, "Job")["image"] == f"registry.example/bg@{DIGEST}"


def test_default_security_contexts_fix_the_uid_in_the_container_only(defaults):
    for kind in ("Deployment", "Job"):
        pod = pod_spec(defaults, kind)
        assert pod["securityContext"] == {"runAsNonRoot": True,
                                          "seccompProfile": {"type": "RuntimeDefault"}}
        sc = pod["containers"][0]["securityContext"]
        assert (sc["runAsUser"], sc["runAsGroup"]) == (65532, 65532)


def test_null_run_as_user_sets_no_uid_for_openshift(helm):
    """OpenShift's restricted-v2 assigns a UID from the namespace's range and refuses any other."""
    objects = helm.render("--set", "securityContext.runAsUser=null",
                          "--set", "securityContext.runAsGroup=null")
    for kind in ("Deployment", "Job"):
        pod = pod_spec(objects, kind)
        for sc in (pod["securityContext"], pod["containers"][0]["securityContext"]):
            assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(sc), sc
        assert pod["containers"][0]["securityContext"]["runAsNonRoot"] is True


def test_security_contexts_can_be_replaced(helm):
    objects = helm.render("--set-json", 'podSecurityContext={"fsGroup":2000}',
                          "--set-json", 'securityContext={"runAsUser":1001,"privileged":false}')
    pod = pod_spec(objects)
    assert pod["securityContext"]["fsGroup"] == 2000
    assert pod["containers"][0]["securityContext"]["runAsUser"] == 1001
    assert pod["containers"][0]["securityContext"]["privileged"] is False


def test_probes_come_from_values(helm, defaults):
    c = container(defaults)
    assert c["readinessProbe"]["periodSeconds"] == 5
    assert c["livenessProbe"]["initialDelaySeconds"] == 10
    c = container(helm.render("--set", "readinessProbe.periodSeconds=2",
                              "--set", "livenessProbe.failureThreshold=3",
                              "--set", "livenessProbe.httpGet.path=/readyz"))
    assert c["readinessProbe"]["periodSeconds"] == 2
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["failureThreshold"] == 3
    # The default probes use the plain-HTTP probe port (--health-probe-bind-address).
    assert c["livenessProbe"]["httpGet"] == {"path": "/readyz", "port": "probes",
                                            "scheme": "HTTP"}
    c = container(helm.render("--set", "livenessProbe=null"))
    assert "livenessProbe" not in c and "readinessProbe" in c


def test_topology_spread_constraints_select_the_pods_unless_given_a_selector(helm, defaults):
    assert "topologySpreadConstraints" not in pod_spec(defaults)
    objects = helm.render("--set-json", 'topologySpreadConstraints=['
                          '{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone",'
                          '"whenUnsatisfiable":"ScheduleAnyway"},'
                          '{"maxSkew":2,"topologyKey":"kubernetes.io/hostname",'
                          '"whenUnsatisfiable":"DoNotSchedule",'
                          '"labelSelector":{"matchLabels":{"app":"x"}}}]')
    spec = find(objects, "Deployment")["spec"]
    zone, host = spec["template"]["spec"]["topologySpreadConstraints"]
    assert zone == {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": spec["selector"]["matchLabels"]}}
    assert host["labelSelector"] == {"matchLabels": {"app": "x"}}


def test_extra_env_reaches_the_server_container(helm, defaults):
    assert "env" not in container(defaults)
    env = [{"name": "TZ", "value": "UTC"},
           {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    assert container(helm.render("--set-json", f"extraEnv={json.dumps(env)}"))["env"] == env


def test_service_account_can_be_an_existing_one(helm, defaults):
    assert find(defaults, "ServiceAccount", FULLNAME)
    objects = helm.render("--set", "serviceAccount.create=false",
                          "--set", "serviceAccount.name=platform-sa")
    assert not [o for o in objects if o["kind"] == "ServiceAccount"
                and not o["metadata"]["name"].endswith("-uninstall")]
    assert pod_spec(objects)["serviceAccountName"] == "platform-sa"
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        assert find(objects, kind, FULLNAME)["subjects"] == [
            {"kind": "ServiceAccount", "name": "platform-sa", "namespace": NAMESPACE}]
    objects = helm.render("--set", "serviceAccount.name=named-sa")
    assert find(objects, "ServiceAccount", "named-sa")
    assert pod_spec(objects)["serviceAccountName"] == "named-sa"


def test_network_policy_is_off_by_default_and_admits_only_what_the_server_needs(helm, defaults):
    assert "NetworkPolicy" not in kinds(defaults)
    objects = helm.render("--set", "networkPolicy.enabled=true",
                          "--set-json", 'networkPolicy.apiServer.cidrs=["10.0.0.10/32"]')
    policy = find(objects, "NetworkPolicy", FULLNAME)["spec"]
    assert policy["podSelector"]["matchLabels"] == \
        find(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    webhook, metrics = policy["ingress"]
    assert webhook == {"ports": [{"port": "webhook", "protocol": "TCP"}]}  # from anywhere
    assert metrics == {"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"port": "metrics", "protocol": "TCP"}]}
    assert policy["egress"] == [{"to": [{"ipBlock": {"cidr": "10.0.0.10/32"}}],
                                 "ports": [{"port": 443, "protocol": "TCP"},
                                           {"port": 6443, "protocol": "TCP"}]}]
    # The uninstall hook's pod is not selected: it is not a server pod.
    job_labels = find(objects, "Job")["spec"]["template"]["metadata"]["labels"]
    assert not all(job_labels.get(k) == v for k, v in policy["podSelector"]["matchLabels"].items())


def test_webhook_selectors_come_from_values_and_kube_system_stays_out(helm, defaults):
    for config in webhook_configs(defaults):
        assert config["webhooks"][0]["objectSelector"] == {}
    objects = helm.render("--set-json", 'webhook.namespaceSelector={"matchLabels":{"storage":"on"}}',
                          "--set-json", 'webhook.objectSelector={"matchExpressions":[{"key":'
                          '"skip-backup-guard","operator":"DoesNotExist"}]}')
    for config in webhook_configs(objects):
        hook = config["webhooks"][0]
        assert hook["namespaceSelector"] == {"matchLabels": {"storage": "on"}, "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]}
        assert hook["objectSelector"] == {"matchExpressions": [
            {"key": "skip-backup-guard", "operator": "DoesNotExist"}]}


def test_webhook_port_is_configurable_for_private_gke(helm):
    """Private GKE clusters let the control plane reach pods on 443 and 10250 only."""
    objects = helm.render("--set", "ports.webhook=10250")
    c = container(objects)
    assert flag_values(c["args"], "--listen") == [":10250"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["webhook"] == 10250
    https = {p["name"]: p for p in find(objects, "Service")["spec"]["ports"]}["https"]
    assert (https["port"], https["targetPort"]) == (443, "webhook")
    assert "hostNetwork" not in pod_spec(objects)


def test_host_network_uses_the_nodes_ports_on_distinct_nodes(helm, defaults):
    assert "hostNetwork" not in pod_spec(defaults)
    pod = pod_spec(helm.render("--set", "hostNetwork=true", "--set", "ports.webhook=9445"))
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert flag_values(pod["containers"][0]["args"], "--listen") == [":9445"]
    required = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required[0]["topologyKey"] == "kubernetes.io/hostname"


def test_pod_disruption_budget_max_unavailable_and_unhealthy_pod_eviction_policy(helm, defaults):
    assert "unhealthyPodEvictionPolicy" not in find(defaults, "PodDisruptionBudget")["spec"]
    spec = find(helm.render("--set", "podDisruptionBudget.maxUnavailable=1",
                            "--set", "podDisruptionBudget.unhealthyPodEvictionPolicy=AlwaysAllow"),
                "PodDisruptionBudget")["spec"]
    assert spec["maxUnavailable"] == 1 and "minAvailable" not in spec
    assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    spec = find(helm.render("--set", "podDisruptionBudget.maxUnavailable=0"),
                "PodDisruptionBudget")["spec"]
    assert spec["maxUnavailable"] == 0 and "minAvailable" not in spec
    spec = find(helm.render("--set", "podDisruptionBudget.maxUnavailable=50%"),
                "PodDisruptionBudget")["spec"]
    assert spec["maxUnavailable"] == "50%"


# ---- matchConditions -------------------------------------------------------------------------------

def test_mutating_webhook_has_match_conditions_from_kubernetes_1_30(helm):
    conditions = yaml.safe_load((CHART_DIR / "files" / "mutating-match-conditions.yaml").read_text())
    assert [c["name"] for c in conditions] == ["not-being-deleted", "not-only-removing-finalizers"]
    for version in ("1.30.0", "1.34.3"):
        mutating, validating = webhook_configs(helm.render("--kube-version", version))
        assert mutating["webhooks"][0]["matchConditions"] == conditions, version
        assert "matchConditions" not in validating["webhooks"][0]
    for args in (["--kube-version", "1.29.9"],
                 ["--kube-version", "1.34.3", "--set", "webhook.matchConditions=false"]):
        mutating, _ = webhook_configs(helm.render(*args))
        assert "matchConditions" not in mutating["webhooks"][0], args
