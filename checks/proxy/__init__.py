"""The front door: reverse proxies in front of the API (Caddy, nginx, Traefik, cloudflared, tailscale serve).

``detect`` finds the front doors that exist and what each protects and leaves open (through
``caddy``/``caddyroute``, ``nginx`` and ``tunnels``, reading with ``confread``);
``generate`` writes a Caddy site or an nginx server block with the login the API lacks;
``servers`` knows the installed Caddy or nginx (version, validation, reload).
UI-free; beside ``checks.live`` in the layers (it reads system configuration and runs
the servers' own validators, never the Docker Engine).
"""
