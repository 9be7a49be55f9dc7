"""The README (the front door) and the MkDocs site under docs/: short, built strictly, every page in
the nav, and no text that speaks of the project's history instead of the project."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
MKDOCS_YML = REPO / "mkdocs.yml"

TEST_COMMAND = 'pip install -e ".[all,dev]" && pytest'
RUN_COMMAND = 'pip install -e ".[all]" && edgeseg run'

# What user-facing text must not say: issue numbers, notes about what was not remeasured, links to
# places outside the repository, and "the previous/new default" history.
FORBIDDEN = {
    "an issue number": re.compile(r"\bissues?\s+\d+", re.IGNORECASE),
    '"not rerun"': re.compile(r"not\s+rerun", re.IGNORECASE),
    "a link to ../shared": re.compile(r"\.\./shared"),
    '"previous/new default"': re.compile(r"\b(previous|new)\s+default\b", re.IGNORECASE),
}

MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def user_texts() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def nav_pages(nav) -> list[str]:
    """Every page file a mkdocs `nav` names, however deeply nested."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(MKDOCS_YML), "-d", str(site)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr}\n{result.stdout}"
    assert (site / "index.html").is_file()
    assert (site / "design" / "index.html").is_file()


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; the front door stays at 250 or fewer"


def test_readme_has_the_two_commands_verbatim():
    lines = [line.strip() for line in README.read_text(encoding="utf-8").splitlines()]
    assert TEST_COMMAND in lines, "CI runs the README's test command verbatim"
    assert RUN_COMMAND in lines


def test_no_history_in_user_text():
    found = []
    for path in user_texts():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for what, pattern in FORBIDDEN.items():
                if pattern.search(line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {what}: {line.strip()}")
    assert not found, "\n".join(found)


def test_every_docs_page_is_in_the_nav():
    config = yaml.safe_load(MKDOCS_YML.read_text(encoding="utf-8"))
    assert config["docs_dir"] == "docs"
    listed = nav_pages(config["nav"])
    assert len(listed) == len(set(listed)), f"a page is listed twice: {listed}"
    pages = sorted(path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md"))
    missing = [page for page in pages if page not in listed]
    assert not missing, f"docs pages not in mkdocs.yml's nav: {missing}"
    absent = [page for page in listed if not (DOCS / page).is_file()]
    assert not absent, f"mkdocs.yml's nav lists pages that do not exist: {absent}"


def test_readme_links_stay_in_the_repository_and_resolve():
    targets = MARKDOWN_LINK.findall(README.read_text(encoding="utf-8"))
    docs_links = [t for t in targets if t.startswith("docs/")]
    assert docs_links, "the README links to the docs pages"
    broken = []
    for target in targets:
        if re.match(r"[a-z]+://", target) or target.startswith("#"):
            continue
        path = (REPO / target.split("#")[0]).resolve()
        if REPO not in path.parents or not path.exists():
            broken.append(target)
    assert not broken, f"README links outside the repository or to nothing: {broken}"
    linked = {t.split("#")[0] for t in docs_links}
    assert "docs/design.md" in linked
