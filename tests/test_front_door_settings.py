"""The front door the TLS step set up is a setting ([front_door]): parsed, checked, saved without
touching the rest of the file."""

from __future__ import annotations

import pytest

from checks.audit.settings import SettingsError, add_suppression, load_settings, parse, save_front_door, save_profile
from checks.demo import materialize
from checks.proxy.model import Choice


def test_front_door_table_is_typed():
    s = parse('[front_door]\ndomain = "Media.Example.com"\nserver = "nginx"\nopen = ["logs"]\n', "settings.toml")
    assert s.front_door == Choice("media.example.com", "nginx", frozenset({"logs"}))


@pytest.mark.parametrize("text, line, words", [
    ('[front_door]\nserver = "caddy"\n', 1, "needs domain"),
    ('[front_door]\ndomain = "x.example.com"\nserver = "apache"\n', 3, "server must be one of caddy, nginx"),
    ('[front_door]\ndomain = "not a host"\nserver = "caddy"\n', 2, ""),
    ('[front_door]\ndomain = "x.example.com"\nserver = "caddy"\nopen = ["everything"]\n', 4, "open must be"),
    ('[front_door]\ndomain = "x.example.com"\nserver = "caddy"\nport = 1\n', 4, "unknown key 'port'"),
])
def test_a_bad_front_door_names_its_line(text, line, words):
    with pytest.raises(SettingsError) as exc:
        parse(text, "settings.toml")
    assert exc.value.line == line
    assert words in exc.value.message


def test_saving_keeps_the_profile_and_the_suppressions(tmp_path):
    root = materialize(str(tmp_path / "srv"))
    save_profile(root, "internet")
    add_suppression(root, "NET-001", "reviewed")
    save_front_door(root, Choice("media.example.com", "caddy"))
    s = load_settings(root)
    assert s.profile == "internet" and [x.check for x in s.suppressions] == ["NET-001"]
    assert s.front_door == Choice("media.example.com", "caddy")
    save_front_door(root, Choice("other.example.org", "nginx", frozenset({"docs", "logs"})))
    s = load_settings(root)
    assert s.front_door == Choice("other.example.org", "nginx", frozenset({"docs", "logs"}))
    assert s.profile == "internet" and len(s.suppressions) == 1
    with open(s.path or "") as fh:
        assert fh.read().count("[front_door]") == 1


def test_saving_into_a_file_without_settings_yet(tmp_path):
    root = materialize(str(tmp_path / "srv"))
    save_front_door(root, Choice("media.example.com", "nginx"))
    assert load_settings(root).front_door == Choice("media.example.com", "nginx")
