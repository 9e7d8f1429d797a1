"""Backups and monitoring: what the security guide asks for, and how to set it up."""

from __future__ import annotations

from ._base import InfoStepScreen


class BackupsScreen(InfoStepScreen):
    """Database backups (OPS-001) and watching the API's logs (OPS-002)."""

    STEP = "backups"
    NAME = "Backups and monitoring"
    CSS_PATH = "backups.tcss"
    INTRO = ("A hardened server still needs a way back: a nightly pg_dump kept outside the data volume, and an eye "
             "on the API's logs. dester-harden does not schedule backups yet; this is where you stand.")
    HELP = ("- **OPS-001** looks for a recent database dump. A cron line such as\n"
            "  `0 3 * * * docker compose -f ~/.desterlib/docker-compose.yml exec -T postgres pg_dump -U desterlib "
            "desterlib | gzip > ~/backups/desterlib-$(date +\\%F).sql.gz` keeps one a day.\n"
            "- **OPS-002** reads the API's logs for leaked secrets and bursts of requests; it needs the running "
            "system (the live-system step).")
