"""README.md and docs/*.md: every relative link resolves, and no path of the old layout is left."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
STALE = re.compile(r"spark_apps|instashop\.stack|stack/setup|instashop\.config\b")


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a `# comment` in code is no heading
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked here
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists() or (anchor and anchor not in anchors(resolved)):
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken


def test_no_path_of_the_old_layout():
    stale = [
        f"{p.relative_to(REPO)}:{n}"
        for p in PAGES
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if STALE.search(line)
    ]
    assert not stale
