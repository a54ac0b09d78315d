"""matchConditions of the mutating webhook (manifests/webhooks.yaml.tmpl, the chart's
files/mutating-match-conditions.yaml), on the real API server: it does not call the webhook for a
SystemBackup being deleted, nor for an update that only removes finalizers from one the mutator
would leave unchanged, so those writes never depend on backup-guard being up. It still calls it
for a CREATE, for other updates, and when our finalizer itself is removed (the mutator puts it
back).

The proof is the API server's own count of webhook calls
(`apiserver_admission_webhook_admission_duration_seconds_count`, from its /metrics) and its count
of requests a match condition excluded (`apiserver_admission_match_condition_exclusions_total`).
"""

from bg_e2e import FINALIZER, MUTATOR, owner_refs, unique

CALLS = "apiserver_admission_webhook_admission_duration_seconds_count"
EXCLUSIONS = "apiserver_admission_match_condition_exclusions_total"
FOREIGN = "example.com/hold"


class MutatorCounts:
    """The API server's counts for the mutating webhook, read before and after some requests."""

    def __init__(self, apiserver_metrics):
        self.scrape = apiserver_metrics
        self.before = self.scrape()

    def delta(self):
        after = self.scrape()

        def diff(metric, **labels):
            return (after.sum(metric, name=MUTATOR, type="admit", **labels)
                    - self.before.sum(metric, name=MUTATOR, type="admit", **labels))
        return {op: (diff(CALLS, operation=op), diff(EXCLUSIONS, operation=op))
                for op in ("CREATE", "UPDATE")}


def created_system_backup(lh, finalizers=(FOREIGN,)):
    """A mutated SystemBackup (our finalizer, the default policy, the owner reference) that also
    carries a foreign finalizer."""
    name = unique("sb")
    body = lh.body("SystemBackup", name)
    body["metadata"]["finalizers"] = list(finalizers)
    created = lh.create(body)
    assert created["metadata"]["finalizers"] == [*finalizers, FINALIZER], created["metadata"]
    assert owner_refs(created, "BackupTarget"), created["metadata"]
    assert created["spec"]["volumeBackupPolicy"] == "if-not-present"
    return name


def test_mutating_webhook_is_called_for_a_system_backup_create(lh, apiserver_metrics):
    lh.default_target()
    counts = MutatorCounts(apiserver_metrics)
    created_system_backup(lh)
    assert counts.delta()["CREATE"] == (1, 0)


def test_mutating_webhook_is_not_called_for_an_update_that_only_removes_finalizers(
        lh, apiserver_metrics):
    lh.default_target()
    name = created_system_backup(lh)
    counts = MutatorCounts(apiserver_metrics)
    updated = lh.patch("SystemBackup", name, {"metadata": {"finalizers": [FINALIZER]}})
    assert updated["metadata"]["finalizers"] == [FINALIZER]
    assert counts.delta()["UPDATE"] == (0, 1), "the API server called the webhook"

    # Any other change is still seen: a label.
    counts = MutatorCounts(apiserver_metrics)
    lh.patch("SystemBackup", name, {"metadata": {"labels": {"team": "storage"}}})
    assert counts.delta()["UPDATE"] == (1, 0)


def test_mutating_webhook_is_not_called_for_a_system_backup_being_deleted(lh, apiserver_metrics):
    lh.default_target()
    name = created_system_backup(lh)
    counts = MutatorCounts(apiserver_metrics)
    lh.delete("SystemBackup", name)  # held by both finalizers: it gets a deletionTimestamp
    assert lh.get("SystemBackup", name)["metadata"].get("deletionTimestamp")
    lh.patch("SystemBackup", name, {"metadata": {"labels": {"team": "storage"}}})
    lh.patch("SystemBackup", name, {"metadata": {"finalizers": [FOREIGN]}})
    lh.patch("SystemBackup", name, {"metadata": {"finalizers": []}})
    assert lh.get_or_none("SystemBackup", name) is None
    delta = counts.delta()
    # Our three updates were excluded, and so was the processor's release of its finalizer (and any
    # retry of it) when it came before the second one: a SystemBackup never uploaded is released at
    # once, so the count is 3 or more.
    assert delta["CREATE"] == (0, 0) and delta["UPDATE"][0] == 0, \
        f"the API server called the webhook for an object being deleted: {delta}"
    assert delta["UPDATE"][1] >= 3, delta


def test_removing_our_finalizer_from_a_live_system_backup_still_calls_the_webhook(
        lh, apiserver_metrics):
    """Not a no-op for the mutator: it puts the longhorn.io finalizer back."""
    lh.default_target()
    name = created_system_backup(lh)
    counts = MutatorCounts(apiserver_metrics)
    updated = lh.patch("SystemBackup", name, {"metadata": {"finalizers": [FOREIGN]}})
    assert updated["metadata"]["finalizers"] == [FOREIGN, FINALIZER]
    assert counts.delta()["UPDATE"] == (1, 0)
