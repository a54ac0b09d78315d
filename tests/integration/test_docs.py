"""The operator's documents stay true: every repository path they name exists, the contract they cite is
in the repository, and every flag a command accepts is documented in the README."""
import os
import re
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("BACKUP_GUARD_BIN", os.path.join(ROOT, "build", "backup-guard"))

OPERATOR_DOCS = ["README.md", "CHANGELOG.md", "charts/backup-guard/README.md", "docs/CONTRACT.md",
                 "docs/TROUBLESHOOTING.md", "docs/ARCHITECTURE.md"]
# Top-level folders whose paths a document may name; a backticked path under one of them must exist.
REPO_FOLDERS = ("docs/", "charts/", "tests/", "tools/", "bench/", "fuzz/", "cmd/", "kube/",
                "processor/", "webhook/", "certs/", "validators/", "mutators/", "common/")
COMMANDS = [["serve"], ["uninstall"], ["diagnose"], ["verify"], ["certs", "generate"]]


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def named_paths(text):
    for token in re.findall(r"`([^`\s]+)`", text):
        token = token.rstrip(".,:;)")
        if token.startswith(REPO_FOLDERS) and not any(c in token for c in "<>*{}$"):
            yield token.split("::")[0].split("#")[0]


@pytest.mark.parametrize("doc", OPERATOR_DOCS)
def test_every_repository_path_a_document_names_exists(doc):
    def exists(p):  # a module may be named without its extension (`webhook/http1`)
        return any(os.path.exists(os.path.join(ROOT, p + ext)) for ext in ("", ".h", ".cc"))
    missing = sorted({p for p in named_paths(read(doc)) if not exists(p)})
    assert not missing, f"{doc} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", ["README.md", "charts/backup-guard/README.md", "docs/ARCHITECTURE.md"])
def test_the_contract_cited_is_the_one_in_the_repository(doc):
    text = read(doc)
    assert "SPEC.md" not in text, f"{doc} cites SPEC.md, which is not in the repository"
    assert os.path.exists(os.path.join(ROOT, "docs", "CONTRACT.md"))


def test_readme_opens_with_what_an_operator_needs():
    headings = [h for h in re.findall(r"^## (.+)$", read("README.md"), re.M)]
    for wanted in ["Quick start", "Configuration", "Upgrade notes", "Troubleshooting"]:
        assert wanted in headings, headings
    assert headings.index("Quick start") < headings.index("Developing"), headings
    assert headings.index("Troubleshooting") < headings.index("Developing"), headings


def test_changelog_has_the_unreleased_changes_and_the_chart_version():
    changelog = read("CHANGELOG.md")
    assert changelog.startswith("# Changelog")
    assert "## Unreleased" in changelog
    version = re.search(r"^version:\s*(\S+)", read("charts/backup-guard/Chart.yaml"), re.M).group(1)
    assert f"## {version}" in changelog, version


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_flag_of_every_command_is_in_the_readme(command):
    proc = subprocess.run([BINARY, *command, "--help"], capture_output=True, text=True, timeout=10,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    flags = set(re.findall(r"^\s+(--[a-z0-9-]+)", proc.stdout, re.M))
    assert flags, proc.stdout
    readme = read("README.md")
    undocumented = sorted(f for f in flags if f"`{f}" not in readme and f"{f} " not in readme)
    assert not undocumented, f"backup-guard {' '.join(command)}: flags missing from README.md: {undocumented}"
