"""The test copy of an install's compose file, and where that file is."""

from __future__ import annotations

import re
from pathlib import Path

import yaml


def compose_file(install_dir: Path) -> Path:
    """The compose file of an install: the CLI layout's, or the newer layout's ``docker/`` one."""
    for rel in ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml",
                "docker/docker-compose.yml"):
        if (install_dir / rel).is_file():
            return install_dir / rel
    raise FileNotFoundError(f"no compose file in {install_dir}")


def prepare_compose(text: str, project: str, interval: str = "1s", api_healthcheck: bool = True,
                    start_period: str = "20s") -> str:
    """The test copy of a compose file: a unique project name, fast healthchecks, an API healthcheck.

    Text edits, not a YAML round trip, so the copy keeps the original's comments and layout (the
    fixers under test edit that text). Docker 20.10 has no ``start_interval``: the intervals are
    shortened instead (DesterLib's 30 s would make every deploy take half a minute), and a
    ``start_period`` where a healthcheck has none keeps a slow first start on a loaded machine from
    counting as unhealthy (a success inside it counts at once).
    """
    out = [re.sub(r"^(\s+interval:\s*)\S+", rf"\g<1>{interval}", ln) for ln in text.splitlines(keepends=True)]
    names = [i for i, ln in enumerate(out) if re.match(r"name\s*:", ln)]
    if names:
        out[names[0]] = f"name: {project}\n"
    else:
        top = next((i for i, ln in enumerate(out) if re.match(r"[A-Za-z]", ln)), 0)
        out.insert(top, f"name: {project}\n")
    data = yaml.safe_load("".join(out)) or {}
    api = (data.get("services") or {}).get("api")
    if api_healthcheck and isinstance(api, dict) and "healthcheck" not in api:
        at = next(i for i, ln in enumerate(out) if re.match(r"^(\s+)api:\s*(#.*)?$", ln))
        nxt = next(ln for ln in out[at + 1:] if ln.strip() and not ln.lstrip().startswith("#"))
        ind = nxt[: len(nxt) - len(nxt.lstrip())]
        out[at + 1:at + 1] = [
            f"{ind}healthcheck:\n",
            f'{ind}  test: ["CMD-SHELL", "wget -q --spider http://localhost:3001/health || exit 1"]\n',
            f"{ind}  interval: {interval}\n", f"{ind}  timeout: 5s\n", f"{ind}  retries: 3\n"]
    i = 0
    while i < len(out):
        head = re.match(r"^(\s+)healthcheck:\s*(#.*)?$", out[i])
        i += 1
        if not head:
            continue
        depth = len(head.group(1))
        children = []
        while i < len(out) and (not out[i].strip() or len(out[i]) - len(out[i].lstrip()) > depth):
            if out[i].strip():
                children.append(i)
            i += 1
        if children and not any(re.match(r"\s+start_period\s*:", out[c]) for c in children):
            last = children[-1]
            ind = out[children[0]][: len(out[children[0]]) - len(out[children[0]].lstrip())]
            out.insert(last + 1, f"{ind}start_period: {start_period}\n")
            i += 1
    result = "".join(out)
    yaml.safe_load(result)  # still YAML
    return result
