"""The check catalog: one definition per check, the single source of truth.

IDs are public API (JSON, SARIF, suppressions, baselines): never rename or
reuse one. ``docs/CHECKS.md`` is generated from this module
(``python -m checks.audit.catalog > docs/CHECKS.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

PROFILES = ("local", "tailscale", "internet")
SEVERITIES = ("critical", "high", "medium", "low", "info")
SEVERITY_RANK = {s: i for i, s in enumerate(reversed(SEVERITIES))}  # info=0 .. critical=4


@dataclass(frozen=True, slots=True)
class Check:
    """A catalog entry."""

    id: str
    title: str
    why: str
    """Why it matters, for someone who self-hosts."""
    fix: str
    """How it is fixed (what ``dester-harden fix`` does, or what to do by hand)."""
    severity: tuple[str, str, str]
    """Severity under the local, tailscale and internet profiles."""
    fixable: bool = True
    """Whether the fix is a change dester-harden can make (else: explained only)."""
    live: bool = False
    """Needs the running system (Docker Engine API, /proc, the firewall)."""
    profiles: tuple[str, ...] = PROFILES
    """Profiles in which the check applies at all."""

    def severity_for(self, profile: str) -> str:
        return self.severity[PROFILES.index(profile)]


def _s(level: str) -> tuple[str, str, str]:
    return (level, level, level)


CATALOG: tuple[Check, ...] = (
    Check("NET-001", "Database or cache port published on all interfaces",
          "A published 0.0.0.0 port is reachable by anyone who can reach the server, and Docker's own "
          "iptables rules bypass ufw. DesterLib's installers publish PostgreSQL on 0.0.0.0:5432 with a weak "
          "password, so the whole media database is one guess away.",
          "Bind the port to 127.0.0.1 (\"127.0.0.1:5432:5432\"); the API reaches the database over the "
          "compose network and needs no published port at all.",
          _s("critical")),
    Check("NET-002", "Database or cache port published at all",
          "The API talks to PostgreSQL and Redis over the compose network. A published port, even on "
          "127.0.0.1, is one more way in for any local process or a later mistake.",
          "Remove the ports: entry of the database service (offered, not the default: some people use it "
          "for backups or a database client).",
          _s("low")),
    Check("NET-003", "API port bound wider than the exposure profile allows",
          "DesterLib's API has no authentication yet. With the tailscale profile it should answer only on "
          "the tailnet; with the internet profile only the HTTPS proxy on the same host should reach it.",
          "Rebind the API port: 127.0.0.1 for internet (behind the proxy), the Tailscale address or "
          "127.0.0.1 with `tailscale serve` for tailscale. On local, 0.0.0.0 is fine: phones on the LAN "
          "connect to it.",
          ("info", "high", "high")),
    Check("NET-004", "Service shares a host namespace",
          "network_mode, pid, ipc or userns_mode set to host removes the container's isolation from the "
          "server: its ports bypass Docker's port publishing and it sees host processes or memory.",
          "Remove the host namespace setting and publish the ports the service needs.",
          _s("high")),
    Check("NET-005", "Services not on a user-defined bridge network",
          "An explicit network (desterlib-net) documents which services may talk to each other and keeps "
          "other containers on the host out of the database's way.",
          "Add `networks: [desterlib-net]` to each service and a top-level `desterlib-net` network with "
          "driver bridge, as DesterLib's Docker guide shows.",
          _s("low")),
    Check("NET-006", "Database or cache actually listening on a public address",
          "What the compose file says and what is running can differ: a container started from an older "
          "file keeps publishing PostgreSQL to the world until it is recreated. Read from /proc/net (no "
          "Docker access needed) and the running containers' port bindings (an empty host address means "
          "every interface, IPv6 too).",
          "Fix the binding (NET-001), then recreate the service (`docker compose up -d --no-deps SERVICE`); "
          "dester-harden fix does both when the Docker Engine is reachable.",
          _s("critical"), live=True),
    Check("NET-007", "Docker-published ports bypass the host firewall",
          "Docker inserts its own iptables rules ahead of ufw and firewalld: a port published on 0.0.0.0 is "
          "open even when `ufw status` says it is denied.",
          "Bind published ports to 127.0.0.1, or add DOCKER-USER rules that drop outside traffic to them "
          "(matched on conntrack's original port), firewalld's StrictForwardPorts (2.3.0+), or, with "
          "Docker's nftables backend, an own nft table; dester-harden's firewall plan writes them.",
          ("info", "high", "high"), live=True),
    Check("NET-008", "Loopback publish on a Docker Engine older than 28.0.0",
          "Before Docker Engine 28.0.0, hosts on the same LAN segment can reach ports published to "
          "127.0.0.1 by routing to the server's address (moby/moby#45610): binding to loopback is only tight "
          "from 28.0.0 on.",
          "Publish nothing (the API reaches the database over the compose network), or upgrade the Docker "
          "Engine to 28.0.0 or newer.",
          _s("medium"), fixable=False, live=True),
    Check("NET-009", "API admin surface answers without auth on a public address",
          "DesterLib's API has no authentication: on a non-loopback address anyone who reaches the port gets "
          "Swagger UI with \"try it out\" at /api/docs, the TMDB API key from GET /api/v1/settings and the "
          "logs (with DATABASE_URL) from /api/v1/logs. Probed on this host's own addresses only.",
          "Bind the API to 127.0.0.1 or the profile's address (NET-003), or block /api/docs, /api/v1/settings "
          "and /api/v1/logs at the proxy, then recreate the API.",
          ("medium", "high", "critical"), live=True),
    Check("SEC-001", "Weak database password",
          "DesterLib's setup script defaults to user and password `postgres`; the CLI accepts 8 characters. "
          "Together with a published port (NET-001) that is a remote takeover of the database, and the API "
          "serves its own logs, which hold DATABASE_URL.",
          "Generate a 32+ character password from a URL-safe alphabet and change it everywhere it must "
          "agree (POSTGRES_PASSWORD, DATABASE_URL) and in the running database.",
          _s("critical")),
    Check("SEC-002", "Database password differs between places that must agree",
          "DATABASE_URL and POSTGRES_PASSWORD (in the compose file and the env files) must hold the same "
          "password; when they drift, the API fails to start or someone fixes one copy and leaves the old "
          "password in another.",
          "Make every copy the same, preferably one ${VAR} in .env referenced from the compose file.",
          _s("high")),
    Check("SEC-003", "Secret written literally in the compose file",
          "The compose file is usually world-readable (0644), gets copied into issues and backups, and "
          "DesterLib's CLI writes the database password into it.",
          "Move the value into .env (mode 0600) and reference it as ${VAR} from the compose file.",
          _s("medium")),
    Check("SEC-004", "Password in DATABASE_URL is not percent-encoded",
          "A password made by `openssl rand -base64 32` contains / and +; unencoded in a URL they split "
          "the URL in the wrong place and the API cannot connect, or connects with a different password.",
          "Percent-encode the password inside DATABASE_URL (or generate one from a URL-safe alphabet).",
          _s("high")),
    Check("SEC-005", "Redis without a password on a published port",
          "Redis without requirepass lets anyone who reaches the port read and write the job queue, and "
          "`CONFIG SET` turns an open Redis into a way to write files on the server.",
          "Add `--requirepass ${REDIS_PASSWORD}` with a generated password (and put it in REDIS_URL), or "
          "stop publishing the port.",
          _s("high")),
    Check("SEC-006", "PostgreSQL accepts connections without a password",
          "POSTGRES_HOST_AUTH_METHOD=trust lets every client log in as any user without a password.",
          "Remove POSTGRES_HOST_AUTH_METHOD (the default, scram-sha-256, is right).",
          _s("critical")),
    Check("SEC-007", "Known default application secret in use",
          "Secrets such as `change-this-in-production-...` are published in DesterLib's repository; anyone "
          "can sign tokens with them.",
          "Generate a new random secret.",
          _s("high")),
    Check("FS-001", "Env file readable by other users",
          "The env files hold the database password. At 0644 every local user and every compromised "
          "service account on the server can read it.",
          "chmod 600 the file (dester-harden keeps its owner).",
          _s("high")),
    Check("FS-002", "Compose file writable by others, or readable while it holds secrets",
          "Whoever can write the compose file can mount / into a container and is root at the next "
          "`docker compose up`. A compose file that still holds passwords should not be world-readable.",
          "chmod 644 (0600 while it still holds secrets; better, move them to .env).",
          _s("medium")),
    Check("FS-003", "Install directory writable by others",
          "Another user could replace docker-compose.yml or .env, or plant docker-compose.override.yml, "
          "which Compose reads automatically.",
          "chmod go-w on the install directory.",
          _s("medium")),
    Check("FS-004", "Media mount is not read-only",
          "DesterLib only reads the media library. A writable mount lets a bug or a compromise of the API "
          "delete or encrypt the whole library.",
          "Add :ro to the media volume (or read_only: true in long syntax).",
          _s("high")),
    Check("FS-005", "Media files writable by others or marked executable",
          "DesterLib's docs suggest `chmod -R 755`, which marks every video executable; 0777 directories "
          "let any local user replace media.",
          "Directories 0755, files 0644 (`chmod -R u=rwX,go=rX`), never following symbolic links nor entering "
          "mount points; a shared group library (setgid 2775 directories of a group that is no user's primary "
          "group) keeps its group write. The fix refuses a system or home directory, or one holding the install.",
          _s("medium")),
    Check("FS-006", "Stray copies of secrets with lax permissions",
          "Editors and hand edits leave .env.bak, .env.orig, .env~ or docker-compose.yml.bak behind: the "
          "same passwords, readable by everyone. A copy that holds a password still in use is as severe "
          "as FS-001 (high): the finding takes that severity.",
          "chmod 600 the copies, or delete them (offered).",
          _s("medium")),
    Check("FS-007", "SQLite database readable by other users",
          "The SQLite layout (DATABASE_URL file:/app/db/main.db, on the host desterlib-data/db/main.db) has no "
          "database password: whoever can read the file, or its -wal and -shm companions, reads the whole "
          "library, settings and API keys.",
          "chmod 600 the database file and its -wal/-shm files, chmod 700 its directory (owners kept).",
          _s("high")),
    Check("DKR-001", "Docker socket mounted into a container",
          "Access to the Docker socket is root on the host: the container can start a privileged container "
          "that mounts /.",
          "Remove the socket mount; if a tool needs it, use a read-only socket proxy.",
          _s("critical")),
    Check("DKR-002", "Privileged container",
          "privileged: true gives the container every capability and all host devices: it is root on the "
          "host.",
          "Remove privileged: true; add only the capabilities the service needs.",
          _s("critical")),
    Check("DKR-003", "no-new-privileges not set",
          "Without no-new-privileges a setuid binary inside the container can raise privileges after a "
          "compromise.",
          "Add `security_opt: [\"no-new-privileges:true\"]` to the service.",
          _s("low")),
    Check("DKR-004", "Image tag is latest or missing",
          "latest changes under you: an update arrives untested at the next pull, and you cannot tell which "
          "version runs or roll back.",
          "Pin a version tag (or a digest) and update on purpose, weekly.",
          _s("low"), fixable=False),
    Check("DKR-005", "Running image older than 7 days",
          "DesterLib's guide asks for weekly updates; old images miss security fixes. DesterLib's API is built "
          "locally, so a pull alone never updates it.",
          "Built services: `docker compose build --pull SERVICE && docker compose up -d SERVICE`; pulled ones "
          "(postgres, redis): `docker compose pull SERVICE && docker compose up -d SERVICE`.",
          _s("medium"), fixable=False, live=True),
    Check("DKR-006", "Dangerous capability added",
          "Capabilities such as SYS_ADMIN, NET_ADMIN or SYS_PTRACE let a compromised container escape or "
          "take over the host's network.",
          "Remove the cap_add entry.",
          _s("high")),
    Check("DKR-007", "Sensitive host path mounted",
          "Mounting /, /etc, /root, /proc, /sys, /var/run or a home directory exposes host credentials "
          "and configuration to the container.",
          "Mount only the directory the service needs (the media library, read-only).",
          _s("high"), fixable=False),
    Check("DKR-008", "No log rotation",
          "Without max-size the json-file log grows until the disk is full, and the API logs hold "
          "DATABASE_URL.",
          "Add `logging: {driver: json-file, options: {max-size: \"10m\", max-file: \"3\"}}`.",
          _s("low")),
    Check("DKR-009", "Container runs with an old configuration (fixed, not applied)",
          "A fix to the files changes nothing until the container is recreated: the running service keeps "
          "its old ports, environment (an old password), mounts or image. Compared one by one, by name and "
          "keyed digest, never by showing a value.",
          "Recreate the service: `docker compose up -d --no-deps SERVICE` (dester-harden fix does it when "
          "the Docker Engine is reachable).",
          _s("medium"), live=True),
    Check("TLS-001", "No HTTPS reverse proxy in front of the API",
          "Exposed to the internet, the API would send tokens, library data and (via its logs) the database "
          "password in clear text. Front doors found: Caddy (with imports), nginx (enabled sites), Traefik "
          "labels, cloudflared ingress, and a tailscale funnel under the tailscale profile.",
          "Put Caddy (automatic HTTPS) or nginx with a certificate in front of 127.0.0.1:3001.",
          ("info", "info", "critical"), profiles=("internet",)),
    Check("TLS-002", "Reverse proxy asks for no authentication",
          "DesterLib's API has no authentication: a public proxy hands the whole library and its settings "
          "to anyone.",
          "Require basic authentication (bcrypt hash of a generated password) at the proxy.",
          ("info", "info", "high"), profiles=("internet",)),
    Check("TLS-003", "Proxy serves /api/v1/logs, /api/v1/settings or /api/docs",
          "Those endpoints are unauthenticated: the logs contain DATABASE_URL with the password, the settings "
          "hold the TMDB and provider keys, and the Swagger UI at /api/docs drives the whole API.",
          "Refuse /api/v1/logs, /api/v1/settings (and everything under it) and /api/docs (and the spec files) "
          "at the proxy (respond 403), even behind the login.",
          ("info", "info", "high"), profiles=("internet",)),
    Check("FW-001", "No active host firewall",
          "Without ufw or firewalld every service that listens on the server is reachable from the network.",
          "Plan rules (SSH first), then enable ufw.",
          ("low", "medium", "high"), live=True),
    Check("FW-002", "Firewall allows a database or cache port",
          "An allow rule for 5432 or 6379 invites the world to the database.",
          "Delete the rule.",
          _s("high"), live=True),
    Check("FW-003", "Firewall change would cut off this SSH session",
          "Enabling a firewall without an SSH allow rule locks you out of a remote server.",
          "Add the SSH allow rule before enabling (dester-harden refuses such a plan).",
          _s("high"), live=True),
    Check("FW-004", "Firewall rules lost at a reboot or a container restart",
          "A rule added live (`iptables -I DOCKER-USER ...`, a firewalld runtime change) is gone after the "
          "next reboot, and a rule that names a container's address is wrong as soon as the container is "
          "recreated with another one: the port the rule closed is open again without anyone noticing.",
          "Persist them: dester-harden's firewall plan writes the rules into the firewall's own files "
          "(ufw's user.rules and after.rules, firewalld's permanent zone) and matches published ports by "
          "conntrack's original port, never by a container's address.",
          _s("medium"), live=True),
    Check("OPS-001", "No recent database backup",
          "Hardening changes passwords and files; without a backup younger than 7 days a mistake or a "
          "disk failure loses the library's metadata and watch history.",
          "Schedule a daily pg_dump (cron) with 7-day retention (offered).",
          _s("medium")),
    Check("OPS-002", "API logs show secrets or attack bursts",
          "DesterLib logs DATABASE_URL with the password at every start, in `docker logs` and in the "
          "combined.log that GET /api/v1/logs serves without authentication. Bursts of 429 \"Too many "
          "requests\" or of 5xx answers mean someone is hammering the API.",
          "After a leak, rotate the database password and truncate the log; keep the logs endpoint blocked. "
          "For bursts, find the source address and stop publishing the API beyond the profile (NET-003). "
          "dester-harden fix rotates the leaked password live and empties a host-side combined.log.",
          _s("medium"), live=True),
)

BY_ID: dict[str, Check] = {c.id: c for c in CATALOG}


def markdown() -> str:
    """The catalog as Markdown (docs/CHECKS.md is this, committed)."""
    out = [
        "# Check catalog",
        "",
        "Generated from `checks/audit/catalog.py` by `python -m checks.audit.catalog`; do not edit by hand.",
        "IDs are stable: they appear in JSON/SARIF output and baselines and are never reused.",
        "",
        "| ID | title | severity (local / tailscale / internet) | kind |",
        "|---|---|---|---|",
    ]
    for c in CATALOG:
        sev = c.severity[0] if len(set(c.severity)) == 1 else " / ".join(c.severity)
        kind = "live" if c.live else "files"
        if c.profiles != PROFILES:
            kind += ", " + "/".join(c.profiles) + " only"
        out.append(f"| {c.id} | {c.title} | {sev} | {kind} |")
    out.append("")
    for c in CATALOG:
        out += [f"## {c.id}: {c.title}", "", f"**Why.** {c.why}", "", f"**Fix.** {c.fix}", ""]
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover
    print(markdown(), end="")
