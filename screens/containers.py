"""Container hardening: privileges, capabilities, no-new-privileges, log rotation."""

from __future__ import annotations

from ._base import FixStepScreen


class ContainersScreen(FixStepScreen):
    """Compose settings that limit what a compromised container can do."""

    STEP = "containers"
    NAME = "Container hardening"
    CSS_PATH = "containers.tcss"
    INTRO = ("Limit what a container can do if the API is ever compromised. "
             "Each fix edits the compose file; the preview shows the lines.")
    HELP = ("- **DKR-002** removes `privileged: true` (full access to the host's devices).\n"
            "- **DKR-003** sets `no-new-privileges` so setuid programs cannot gain rights.\n"
            "- **DKR-006** drops dangerous added capabilities such as SYS_ADMIN.\n"
            "- **DKR-008** caps Docker's logs (json-file max-size) so they cannot fill the disk.\n"
            "- **DKR-001** (off by default) removes the Docker socket mount: a container holding it controls the "
            "host, but some setups need it, so it is your call.\n\n"
            "Image tags (DKR-004) and sensitive host paths (DKR-007) are explained only: changing them needs a "
            "decision dester-harden cannot make for you.")
