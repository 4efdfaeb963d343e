"""What the README and the docs point at exists: files, sections and environment variables."""

import re
from pathlib import Path

import pytest

from tools.processes import ROOT

DOCS = [
    ROOT / "README.md",
    ROOT / "docs" / "deploy.md",
    ROOT / "docs" / "azure-from-laptop.md",
    ROOT / "docs" / "settings.md",
]
LINK = re.compile(r"\]\(([^)\s]+)\)")
VARIABLE = re.compile(r"\b((?:PRODUCER|CONSUMER)_[A-Z0-9_]*[A-Z0-9*])")
NOT_SETTINGS = {"PRODUCER_URL"}
"""Names with the prefix that are not app settings (``azd`` stores the producer's URL)."""


def anchors(markdown: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", markdown.read_text(encoding="utf-8"), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists() or (path.suffix == ".md" and anchor not in {"", *anchors(path)}):
            broken.append(target)
    assert broken == [], f"{doc.name} links to missing files or sections: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_named_variables_exist(doc: Path) -> None:
    reference = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    known = set(re.findall(r"^\| `([A-Z0-9_]+)`", reference, re.M))
    unknown = []
    for name in set(VARIABLE.findall(doc.read_text(encoding="utf-8"))) - NOT_SETTINGS:
        if name.endswith("*"):
            if not any(variable.startswith(name.rstrip("*")) for variable in known):
                unknown.append(name)
        elif name not in known:
            unknown.append(name)
    assert sorted(unknown) == [], f"{doc.name} names variables no settings class reads"
