"""Whether the Node drain can run here: ``node``, and ``benchmarks/node``'s packages.

The Node row of the drain table is a reference, not a requirement: when
``node`` is missing, or the packages are not installed and ``npm ci`` cannot
install them (no ``npm``, no registry), the row says why it was not run
and nothing fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from .databases import ROOT

NODE_DIR = ROOT / "benchmarks" / "node"
#: planton's ``createPlanton`` needs ``async``/``await`` and ES modules; pg 8 wants 18+.
MIN_NODE_MAJOR = 18
#: ``npm ci`` may have to download the packages: give up after this long.
NPM_TIMEOUT = 300


def node_version() -> str | None:
    """``v20.11.1``, or None when there is no working ``node``."""
    if shutil.which("node") is None:
        return None
    try:
        found = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None


def package_versions() -> dict[str, str]:
    """The packages ``benchmarks/node/package.json`` pins, by name (``planton``, ``pg``)."""
    try:
        manifest = json.loads((NODE_DIR / "package.json").read_text())
    except (OSError, ValueError):
        return {}
    return dict(manifest.get("dependencies", {}))


def installed() -> bool:
    """Whether ``npm ci`` has put the packages in ``benchmarks/node/node_modules``."""
    return all((NODE_DIR / "node_modules" / name).is_dir() for name in package_versions())


def node_unavailable() -> str | None:
    """Why the Node drain cannot run (for its row), or None when it can.

    Installs the packages with ``npm ci`` when they are missing; that is
    the only thing done here, and a failure is a reason, not an error.
    """
    version = node_version()
    if version is None:
        return "node not found"
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        return f"node {version} not understood"
    if major < MIN_NODE_MAJOR:
        return f"node {version}, {MIN_NODE_MAJOR}+ needed"
    if not package_versions():
        return "benchmarks/node/package.json unreadable"
    if installed():
        return None
    if shutil.which("npm") is None:
        return "benchmarks/node/node_modules absent and npm not found"
    command = ["npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"]
    try:
        subprocess.run(command, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=True)
    except subprocess.CalledProcessError as error:
        return f"npm ci failed, exit {error.returncode}"
    except (OSError, subprocess.SubprocessError) as error:
        return f"npm ci failed: {type(error).__name__}"
    return None if installed() else "npm ci left benchmarks/node/node_modules incomplete"


def versions_line() -> str:
    """``Node v20.11.1 (planton 3.2.4, pg 8.23.1)`` for the header, or ``Node not found``."""
    version = node_version()
    if version is None:
        return "Node not found"
    pinned = package_versions()
    packages = ", ".join(f"{name} {pinned[name]}" for name in ("planton", "pg") if name in pinned)
    return f"Node {version} ({packages})" if packages else f"Node {version}"
