"""The uninstall hook under GitOps and the NOTES that say how to follow it (issue 12): the hook Job
and its identity carry Argo CD's PreDelete hook annotations next to Helm's pre-delete ones, in the
same order and with the same clean-up (helm template, no control plane); NOTES.txt says how to
follow the hook Job's log (`helm install --dry-run=client`, which asks the control plane for its
version)."""

from __future__ import annotations

import pytest
import yaml

from chart_tools import CHART_DIR, VALUE_SETS, find

RELEASE, NAMESPACE = "bg", "longhorn-system"
HOOK = "bg-backup-guard-uninstall"
HOOK_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "Job")
# Helm's hook-delete-policy words and Argo CD's for the same clean-up.
ARGO_POLICY = {"before-hook-creation": "BeforeHookCreation", "hook-succeeded": "HookSucceeded",
               "hook-failed": "HookFailed"}


@pytest.fixture(scope="module")
def defaults(helm):
    return helm.render()


def test_hook_job_and_its_rbac_carry_argo_cd_predelete_annotations_next_to_helms(defaults):
    for kind in HOOK_KINDS:
        annotations = find(defaults, kind, HOOK)["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-delete", kind
        assert annotations["argocd.argoproj.io/hook"] == "PreDelete", kind
        helm_policy = annotations["helm.sh/hook-delete-policy"].split(",")
        argo_policy = annotations["argocd.argoproj.io/hook-delete-policy"].split(",")
        assert sorted(argo_policy) == sorted(ARGO_POLICY[p] for p in helm_policy), (kind, annotations)
        # Argo CD orders hooks of one phase by sync wave, as Helm by hook weight.
        assert annotations["argocd.argoproj.io/sync-wave"] == annotations["helm.sh/hook-weight"], \
            (kind, annotations)


def test_argo_cd_creates_the_hooks_identity_before_the_job(defaults):
    job_wave = int(find(defaults, "Job", HOOK)["metadata"]["annotations"][
        "argocd.argoproj.io/sync-wave"])
    for kind in HOOK_KINDS[:-1]:
        wave = int(find(defaults, kind, HOOK)["metadata"]["annotations"][
            "argocd.argoproj.io/sync-wave"])
        assert wave < job_wave, kind


def test_only_the_uninstall_hook_is_an_argo_cd_hook(defaults):
    """The server's own objects stay ordinary Application resources (a hook is not managed)."""
    hooks = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in defaults
                   if "argocd.argoproj.io/hook" in (o["metadata"].get("annotations") or {}))
    assert hooks == sorted(f"{k}/{HOOK}" for k in HOOK_KINDS), hooks


def hook_enabled(values) -> bool:
    return (yaml.safe_load(values.read_text()) or {}).get("uninstallHook", {}).get("enabled", True)


HOOK_SETS = [(n, v) for n, v in VALUE_SETS if hook_enabled(v)]


@pytest.mark.parametrize("values", [v for _, v in HOOK_SETS], ids=[n for n, _ in HOOK_SETS])
def test_notes_say_how_to_follow_the_hook_jobs_log(cluster_helm, values):
    out = cluster_helm("install", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE, "--dry-run=client",
               "-f", values).stdout
    notes = out[out.index("NOTES:"):]
    assert "<no value>" not in notes, notes
    assert f"kubectl -n {NAMESPACE} logs -f job/{HOOK}" in notes, notes
    assert "PreDelete" in notes and "spec.uninstall.disableHooks" in notes, notes


def test_notes_say_nothing_of_the_hook_when_it_is_disabled(cluster_helm):
    assert len(HOOK_SETS) < len(VALUE_SETS), "a value set without the hook was expected"
    out = cluster_helm("install", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE, "--dry-run=client",
               "--set", "uninstallHook.enabled=false").stdout
    notes = out[out.index("NOTES:"):]
    assert "logs -f job/" not in notes, notes
