"""axe-core, Deque's accessibility rules engine, for the browser tests.

The engine is one JavaScript file from the npm registry's axe-core package. ``make test`` fetches
the pinned version once (``python -m tests.axe_core``) into the virtual environment and checks it
against the registry's published sha512 before anything runs it; a file that does not match is
refused. Tests inject it with Playwright's ``evaluate``, which the pages' strict CSP does not
govern, so the pages are checked under the same policy users get.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

AXE_CORE_VERSION = "4.14.1"
# The `dist.integrity` of axe-core@4.14.1 in https://registry.npmjs.org/axe-core.
AXE_CORE_INTEGRITY = (
    "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
)
TARBALL_URL = f"https://registry.npmjs.org/axe-core/-/axe-core-{AXE_CORE_VERSION}.tgz"

ROOT = Path(__file__).resolve().parent.parent
AXE_CORE_PATH = ROOT / ".venv" / f"axe-core-{AXE_CORE_VERSION}" / "axe.min.js"

# What the browser tests fail on; "moderate" and "minor" findings are printed, not failed.
FAILING_IMPACTS = ("serious", "critical")


def _integrity_check(tarball: bytes) -> None:
    algorithm, _, expected = AXE_CORE_INTEGRITY.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode()
    if actual != expected:
        raise SystemExit(
            f"axe-core {AXE_CORE_VERSION} from {TARBALL_URL} does not match the registry's integrity "
            f"{AXE_CORE_INTEGRITY} (got {algorithm}-{actual}); refusing to use it."
        )


def axe_core_fetch(path: Path = AXE_CORE_PATH) -> Path:
    """The engine's file, fetched and checked the first time."""
    if path.exists():
        return path
    print(f"fetching axe-core {AXE_CORE_VERSION} from the npm registry", file=sys.stderr)
    with urllib.request.urlopen(TARBALL_URL, timeout=60) as response:
        tarball = response.read()
    _integrity_check(tarball)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        source = archive.extractfile("package/axe.min.js")
        if source is None:
            raise SystemExit(f"axe-core {AXE_CORE_VERSION}: the package has no axe.min.js")
        script = source.read()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(script)
    partial.replace(path)
    return path


def axe_violations(page, *, impacts: tuple[str, ...] = FAILING_IMPACTS) -> list[dict]:
    """Run axe on the page as it is now; the violations of the given impacts, each as
    {"id", "impact", "help", "nodes": [target selectors and failure summaries]}."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_CORE_PATH.read_text(encoding="utf-8") + "\n;undefined")
    results = page.evaluate(
        """async () => {
            const results = await axe.run(document, {resultTypes: ["violations"]});
            return results.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map(n => ({target: n.target.join(" "), summary: n.failureSummary})),
            }));
        }"""
    )
    return [v for v in results if v["impact"] in impacts]


def violations_text(violations: list[dict]) -> str:
    lines = []
    for violation in violations:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"]:
            summary = " ".join((node["summary"] or "").split())
            lines.append(f"    {node['target']}: {summary[:300]}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(axe_core_fetch())
