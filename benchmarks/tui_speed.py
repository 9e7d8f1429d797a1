#!/usr/bin/env python3
"""Assistant speed: first paint and screen-change latency, in a real terminal.

Figures printed (medians over ``--runs`` fresh ``dester-harden`` processes, on
the bundled demo install, each run with its own freshly materialized copy and
its own empty HOME / XDG_DATA_HOME):

1. First paint at 80x24: from the ``execve`` of the ``dester-harden`` console
   script (``dester-harden --dir DEMO``, the assistant) to the first frame on
   screen that shows our UI (the header "dester-harden" or the footer's "Start
   setup"); target <= 1.0 s. Also "audit shown": to the Welcome screen's
   "Score ..." line (the audit runs in a worker after the first frame). For
   comparison: ``python -c "import textual.app"`` and ``python -c "import
   tui.app"`` with the same interpreter (wall time, median).
2. Screen-change latency (target <= 100 ms) from ``tmux send-keys`` to the
   new screen's text on screen: Enter (Welcome -> Network exposure), n
   (-> Database password), b (-> Network exposure), F1 (help opens), Escape
   (help closes). Each key is sent once the screen has been still for 250 ms
   (workers done), once per run. Second figure, clearly separate: the same
   keys in-process with Textual's Pilot (``App.run_test(size=(80, 24))``, no
   terminal, each run in a fresh Python process so lazily imported screens
   cost what they cost the first time): ``await pilot.press(key)``, then poll
   until ``app.screen`` is the expected screen class, then ``await
   pilot.pause()`` (one refresh). Pilot's press and pause wait until the
   whole process is idle (``textual._wait.wait_for_idle`` compares CPU and
   wall time), so that figure also covers the new screen's worker threads;
   the time until the new screen *is* ``app.screen`` (polled alongside the
   press, before its first frame) is printed too, as a lower bound.

Method (terminal figures). A private tmux server (``-L dh-bench-PID -f
/dev/null``, 80x24, status line off, ``escape-time 0``) runs each
attempt in a new window. The window's command is this script in its
``--_exec`` mode (``python -S -E``): it replaces the environment with a
hermetic one (TERM=tmux-256color, or screen-256color without that terminfo;
LANG=C.UTF-8; HOME and XDG_DATA_HOME in a temporary directory;
PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring; PATH), writes
``time.monotonic_ns()`` to a stamp file, and immediately ``os.execve``\\ s the
console script. This process talks to the server through one tmux *control
mode* client (``tmux -C attach``, output notifications switched off), so each
``capture-pane -p`` poll is a line written to a pipe and a reply read back,
with no fork/exec per poll (a forked ``tmux capture-pane`` costs ~2-5 ms and
a CPU); polls are ``--poll-ms`` apart (2 ms by default) so the poller does
not starve the app on a small machine. CLOCK_MONOTONIC is system-wide on
Linux, so the wrapper's stamp and the poller's clock compare directly. A
figure is the time the poll that first saw the text *returned*: an upper
bound, late by at most the gap since the previous poll was sent (poll
interval + one round trip); the largest such gap seen is printed as the
measurement error. ``pipe-pane`` was not used: it timestamps bytes when the
pipe reader gets them, not when tmux has drawn them, and the text has to be
dug out of escape sequences Textual writes in several pieces (cursor moves,
styles), which makes "the first bytes that contain a string" unreliable.

Note on Escape: a lone ESC byte is ambiguous (it starts escape sequences),
so Textual's input parser waits ``ESCDELAY`` ms (default 100) for more bytes
before it reports the Escape key, and the Linux driver's input thread only
checks that timeout when its ``select(0.1)`` returns -- so a lone Escape
reaches the app ~100 ms after the byte whatever ESCDELAY says (Textual
8.2.8). That wait is part of what a user sees, so it is measured as is;
``--escdelay MS`` sets ESCDELAY in the pane to check this. (tmux's own
escape-time does not apply to send-keys; it is 0 anyway.)

Nothing is asserted: the script prints figures and a table of targets, and
exits 0 whether targets are met or not (2 when tmux is missing).

Usage: .venv/bin/python benchmarks/tui_speed.py [--runs N] [--poll-ms MS] [--escdelay MS] [--no-pilot]
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--_exec":
    # The pane's wrapper (run with python -S -E): keep it tiny, stamp, exec.
    import json
    import os
    import time

    _stamp, _envfile, _argv = sys.argv[2], sys.argv[3], sys.argv[4:]
    with open(_envfile, encoding="utf-8") as _fh:
        _env = json.load(_fh)
    _fd = os.open(_stamp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(_fd, str(time.monotonic_ns()).encode())
    os.close(_fd)
    os.execve(_argv[0], _argv, _env)

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

WIDTH, HEIGHT = 80, 24
FIRST_PAINT_TARGET = 1.0
KEY_TARGET = 0.100
SETTLE = 0.25  # seconds the screen must stay unchanged before a key is sent
HELP_MARK = "Esc or F1 closes this help"


def now() -> float:
    return time.monotonic_ns() / 1e9


def console_script() -> str:
    exe = os.path.join(os.path.dirname(sys.executable), "dester-harden")
    if not os.path.exists(exe):
        sys.exit(f"tui_speed: {exe} not found (run with the project's venv python)")
    return exe


def term_name() -> str:
    infocmp = shutil.which("infocmp")
    if infocmp is None:
        return "tmux-256color" if os.path.exists("/usr/share/terminfo/t/tmux-256color") else "screen-256color"
    ok = subprocess.run([infocmp, "tmux-256color"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    return "tmux-256color" if ok == 0 else "screen-256color"


def hermetic_env(home: str, term: str, escdelay: int | None) -> dict[str, str]:
    env = {
        "PATH": os.path.dirname(sys.executable) + ":/usr/local/bin:/usr/bin:/bin",
        "TERM": term,
        "LANG": "C.UTF-8",
        "HOME": home,
        "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
    }
    if escdelay is not None:
        env["ESCDELAY"] = str(escdelay)
    return env


def tq(arg: str) -> str:
    """Quote one argument for tmux's command parser."""
    return "'" + arg.replace("'", "'\\''") + "'"


# -- the tmux control-mode client ---------------------------------------------------


class TmuxError(RuntimeError):
    pass


class Tmux:
    """A private tmux server and one control-mode client to drive it."""

    def __init__(self, tmux: str, socket_name: str, term: str) -> None:
        self.base = [tmux, "-L", socket_name, "-f", "/dev/null"]
        subprocess.run(self.base + ["new-session", "-d", "-s", "bench", "-x", str(WIDTH), "-y", str(HEIGHT),
                                    "sleep 86400"], check=True)
        # (window-size manual is not set: tmux 3.3a crashes when a control client then makes a
        # window. A control client that never sets a size does not resize windows anyway, and
        # each run reads the pane's size back from tmux.)
        for opt in (["default-size", f"{WIDTH}x{HEIGHT}"], ["escape-time", "0"],
                    ["default-terminal", term], ["status", "off"], ["remain-on-exit", "off"]):
            subprocess.run(self.base + ["set-option", "-g", *opt], check=True)
        self.proc = subprocess.Popen(self.base + ["-C", "attach-session", "-t", "bench"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, bufsize=0)
        if self.proc.stdin is None or self.proc.stdout is None:  # never: both are pipes
            raise TmuxError("tmux control client has no pipes")
        self.stdin = self.proc.stdin
        self.out = os.fdopen(self.proc.stdout.fileno(), "rb", buffering=65536, closefd=False)
        self._skip_to_block()  # the attach command's own reply
        # Older tmux has no such flag: %output lines are skipped as notifications anyway.
        with contextlib.suppress(TmuxError):
            self.cmd("refresh-client -f no-output")

    def _skip_to_block(self) -> list[str]:
        lines: list[str] = []
        inside = False
        while True:
            raw = self.out.readline()
            if not raw:
                raise TmuxError("tmux control client went away")
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            if not inside:
                if line.startswith("%begin "):
                    inside = True
                continue  # notifications (%output, %window-add, ...) between replies
            if line.startswith("%end "):
                return lines
            if line.startswith("%error "):
                raise TmuxError("\n".join(lines) or "tmux error")
            lines.append(line)

    def send(self, command: str) -> None:
        self.stdin.write(command.encode() + b"\n")

    def cmd(self, command: str) -> list[str]:
        self.send(command)
        return self._skip_to_block()

    def capture(self, pane: str) -> list[str]:
        return self.cmd(f"capture-pane -p -t {pane}")

    def close(self) -> None:
        try:
            sock = self.cmd("display-message -p '#{socket_path}'")[0].strip()
        except (TmuxError, IndexError, OSError):
            sock = ""
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(self.base + ["kill-server"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if sock and os.path.basename(sock).startswith("dh-bench-"):
            with contextlib.suppress(OSError):
                os.unlink(sock)  # tmux leaves the socket file of a killed server behind


class Poller:
    """Polls one pane's screen; records the largest gap between successive polls."""

    def __init__(self, tmux: Tmux, pane: str, poll: float) -> None:
        self.tmux, self.pane, self.poll = tmux, pane, poll
        self.max_gap = 0.0
        self.lines: list[str] = []

    def until(self, pred, timeout: float = 15.0, start: float | None = None) -> float:
        """Poll until ``pred(lines)``; return the time the poll that saw it returned."""
        prev_sent = start if start is not None else now()
        deadline = prev_sent + timeout
        while True:
            sent = now()
            lines = self.tmux.capture(self.pane)
            got = now()
            if pred(lines):
                self.max_gap = max(self.max_gap, got - prev_sent)
                self.lines = lines
                return got
            if got > deadline:
                self.lines = lines
                raise TimeoutError("screen never showed what was waited for:\n" + "\n".join(lines))
            prev_sent = sent
            time.sleep(self.poll)

    def settle(self, still: float = SETTLE, cap: float = 5.0) -> None:
        """Wait until the screen has not changed for ``still`` seconds (or ``cap``)."""
        last = self.tmux.capture(self.pane)
        since = t0 = now()
        while now() - since < still and now() - t0 < cap:
            time.sleep(0.02)
            cur = self.tmux.capture(self.pane)
            if cur != last:
                last, since = cur, now()
        self.lines = last


def has(text: str):
    return lambda lines: any(text in line for line in lines)


def header_has(text: str):
    return lambda lines: bool(lines) and any(text in line for line in lines[:2])


def ui_visible(lines: list[str]) -> bool:
    return any("dester-harden" in line or "Start setup" in line for line in lines)


# Each key: (tmux key name, label, "new screen is shown" predicate).
KEYS = [
    ("Enter", "Enter  welcome -> network",
     lambda ls: header_has("Network exposure")(ls) and has("Who should reach DesterLib")(ls)),
    ("n", "n      network -> password", header_has("Database password")),
    ("b", "b      password -> network",
     lambda ls: header_has("Network exposure")(ls) and has("Who should reach DesterLib")(ls)),
    ("F1", "F1     help opens", has(HELP_MARK)),
    ("Escape", "Escape help closes",
     lambda ls: not has(HELP_MARK)(ls) and has("Who should reach DesterLib")(ls)),
    ("F1", "F1     help opens again", has(HELP_MARK)),
    ("q", "q      help closes",
     lambda ls: not has(HELP_MARK)(ls) and has("Who should reach DesterLib")(ls)),
]


def terminal_run(tm: Tmux, workdir: str, i: int, term: str, poll: float, escdelay: int | None) -> dict:
    from checks.demo import materialize

    run_dir = os.path.join(workdir, f"run{i}")
    home = os.path.join(run_dir, "home")
    os.makedirs(home)
    root = materialize(os.path.join(run_dir, "install"))
    env_file = os.path.join(run_dir, "env.json")
    with open(env_file, "w", encoding="utf-8") as fh:
        json.dump(hermetic_env(home, term, escdelay), fh)
    stamp = os.path.join(run_dir, "stamp")
    argv = [sys.executable, "-S", "-E", os.path.abspath(__file__), "--_exec", stamp, env_file,
            console_script(), "--dir", root]
    start = now()
    pane = tm.cmd("new-window -P -F '#{pane_id}' -t bench: " + " ".join(tq(a) for a in argv))[0].strip()
    poller = Poller(tm, pane, poll)
    res: dict = {}
    try:
        t_ui = poller.until(ui_visible, start=start)
        t_score = poller.until(lambda ls: any(line.lstrip().startswith("Score ") for line in ls))
        with open(stamp, encoding="utf-8") as fh:
            t_exec = int(fh.read()) / 1e9
        res["first_paint"] = t_ui - t_exec
        res["audit_shown"] = t_score - t_exec
        size = tm.cmd(f"display-message -p -t {pane} '#{{pane_width}}x#{{pane_height}}'")[0].strip()
        res["size"] = size
        for key, label, pred in KEYS:
            poller.settle()
            if pred(poller.lines):
                raise RuntimeError(f"{label}: the expected screen is already shown before the key")
            t0 = now()
            tm.send(f"send-keys -t {pane} {key}")
            tm._skip_to_block()
            t1 = poller.until(pred, start=t0)
            res[label] = t1 - t0
        res["max_gap"] = poller.max_gap
    finally:
        try:
            tm.cmd(f"send-keys -t {pane} C-q")
            deadline = now() + 5
            while now() < deadline:
                panes = tm.cmd("list-panes -s -t bench -F '#{pane_id}'")
                if pane not in [p.strip() for p in panes]:
                    break
                time.sleep(0.02)
            else:
                tm.cmd(f"kill-window -t {pane}")
        except TmuxError:
            pass
    return res


# -- in-process (Pilot) ------------------------------------------------------------


PILOT_KEYS = [("enter", "NetworkScreen"), ("n", "PasswordScreen"), ("b", "NetworkScreen"),
              ("f1", "HelpScreen"), ("escape", "NetworkScreen"), ("f1", "HelpScreen"), ("q", "NetworkScreen")]


async def _pilot(root: str) -> dict:
    import asyncio

    from tui.run import build_app

    app = build_app(root, hostname="bench", cursor_blink=False)
    out: dict = {}

    async def quiet(pilot) -> None:
        # Wait for the screens' workers (the guided flow worker lives on).
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline:
            if all(w.is_finished or w.group == "flow" for w in app.workers):
                break
            await asyncio.sleep(0.005)
        await pilot.pause()

    async with app.run_test(size=(WIDTH, HEIGHT)) as pilot:
        deadline = time.perf_counter() + 15
        while "Score" not in str(app.screen.query_one("#welcome-score").render()):
            if time.perf_counter() > deadline:
                raise TimeoutError("welcome audit never finished")
            await asyncio.sleep(0.005)
        await quiet(pilot)
        for idx, (key, screen) in enumerate(PILOT_KEYS):
            key_id = f"{idx}:{key}"
            t0 = time.perf_counter()
            press = asyncio.ensure_future(pilot.press(key))
            # Alongside the press: when the new screen becomes app.screen (before its first frame).
            while type(app.screen).__name__ != screen:
                if time.perf_counter() - t0 > 10:
                    raise TimeoutError(f"{key}: never reached {screen}")
                await asyncio.sleep(0.001)
            out[key_id + ":pushed"] = time.perf_counter() - t0
            await press
            await pilot.pause()
            out[key_id] = time.perf_counter() - t0
            await quiet(pilot)
    return out


def pilot_child(root: str) -> None:
    import asyncio

    print(json.dumps(asyncio.run(_pilot(root))))


def pilot_run(workdir: str, i: int, term: str) -> dict:
    from checks.demo import materialize

    run_dir = os.path.join(workdir, f"pilot{i}")
    home = os.path.join(run_dir, "home")
    os.makedirs(home)
    root = materialize(os.path.join(run_dir, "install"))
    env = hermetic_env(home, term, None)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--_pilot", root], env=env,
                          capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"pilot run failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- reporting --------------------------------------------------------------------


def wall(cmd: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, cwd=REPO)
        times.append(time.perf_counter() - t0)
    return times


def ms(x: float) -> str:
    return f"{x * 1000:8.1f}"


def line(label: str, xs: list[float]) -> str:
    return (f"  {label:<34} median {ms(statistics.median(xs))} ms   min {ms(min(xs))}   max {ms(max(xs))}"
            f"   (n={len(xs)})")


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--_pilot":
        pilot_child(sys.argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--poll-ms", type=float, default=2.0, help="pause between capture-pane polls (default 2)")
    ap.add_argument("--escdelay", type=int, default=None, help="set ESCDELAY (ms) in the pane (default: unset, 100)")
    ap.add_argument("--no-pilot", action="store_true", help="skip the in-process Pilot figures")
    args = ap.parse_args()

    tmux = shutil.which("tmux")
    if tmux is None:
        print("tui_speed: tmux is not installed; the terminal figures need it (apt-get install tmux)",
              file=sys.stderr)
        return 2
    version = subprocess.run([tmux, "-V"], capture_output=True, text=True).stdout.strip()
    term = term_name()
    n = args.runs
    workdir = tempfile.mkdtemp(prefix="dh-tui-bench-")
    rows: list[tuple[str, list[float], float | None]] = []
    try:
        print(f"{version}, TERM={term}, {WIDTH}x{HEIGHT}, {n} runs, poll every {args.poll_ms:g} ms"
              f" (+ one control-mode round trip), {os.cpu_count()} CPUs")
        if args.escdelay is not None:
            print(f"ESCDELAY={args.escdelay} in the pane")
        print()

        imp_textual = wall([sys.executable, "-c", "import textual.app"], n)
        imp_tui = wall([sys.executable, "-c", "import tui.app"], n)

        tm = Tmux(tmux, f"dh-bench-{os.getpid()}", term)
        results = []
        try:
            # One unmeasured warm-up run: page cache and .pyc files, as for a user's second start.
            terminal_run(tm, workdir, 0, term, args.poll_ms / 1000, args.escdelay)
            for i in range(1, n + 1):
                results.append(terminal_run(tm, workdir, i, term, args.poll_ms / 1000, args.escdelay))
        finally:
            tm.close()

        sizes = sorted({r["size"] for r in results})
        print(f"1. startup (exec of dester-harden -> text on screen; pane size {', '.join(sizes)})")
        fp = [r["first_paint"] for r in results]
        au = [r["audit_shown"] for r in results]
        print(line("baseline python -c 'import textual.app'", imp_textual))
        print(line("python -c 'import tui.app'", imp_tui))
        print(line("first paint (header/footer shown)", fp))
        print(line("audit shown (\"Score ...\" line)", au))
        rows.append(("first paint 80x24", fp, FIRST_PAINT_TARGET))
        rows.append(("audit shown", au, None))
        print()
        print("2. screen change, terminal (tmux send-keys -> new screen's text on screen)")
        for _key, label, _pred in KEYS:
            xs = [r[label] for r in results]
            print(line(label, xs))
            rows.append(("tmux " + label, xs, KEY_TARGET))
        gap = max(r["max_gap"] for r in results)
        print(f"  measurement error: each figure is late by at most {gap * 1000:.1f} ms"
              " (largest gap between the poll that saw the text and the one before)")

        if not args.no_pilot:
            pil = [pilot_run(workdir, i, term) for i in range(n)]
            print()
            print("2b. screen change, in-process (Pilot, no terminal; each run a fresh process)")
            print("  await pilot.press(key), poll until app.screen is the new screen, await pilot.pause():")
            print("  (press and pause wait until the *process* is idle -- wall vs CPU clock --, so this")
            print("  includes the new screen's worker threads, e.g. the network step's plan)")
            for idx, ((key, screen), (_k, label, _p)) in enumerate(zip(PILOT_KEYS, KEYS, strict=True)):
                xs = [p[f"{idx}:{key}"] for p in pil]
                print(line(f"{key:<7}-> {screen}", xs))
                # Not a redraw figure (it waits for the new screen's workers too): no target.
                rows.append(("pilot+idle " + label, xs, None))
            print("  the same presses, to the moment the new screen is app.screen (before its first frame):")
            for idx, (key, screen) in enumerate(PILOT_KEYS):
                xs = [p[f"{idx}:{key}:pushed"] for p in pil]
                print(line(f"{key:<7}-> {screen} pushed", xs))

        print()
        print(f"{'figure':<36} {'median':>9} {'max':>9} {'target':>9}  within")
        for label, xs, target in rows:
            med, mx = statistics.median(xs), max(xs)
            tgt = f"{target * 1000:.0f} ms" if target else "-"
            within = "-" if target is None else ("yes" if mx <= target else ("median" if med <= target else "no"))
            print(f"{label:<36} {ms(med)} ms{ms(mx)} ms {tgt:>9}  {within}")
        print("(within: yes = every run; median = the median but not every run; no = not even the median)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
