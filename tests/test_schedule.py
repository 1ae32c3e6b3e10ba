"""``ragkit schedule``: validated times, and a crontab line and units that run the right thing."""

from __future__ import annotations

import configparser
import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragkit.cli.app import app
from ragkit.errors import ConfigError
from ragkit.schedule import cron_from_interval, parse_cron, parse_interval, render

runner = CliRunner()
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.parametrize(
    ("every", "cron"),
    [("1m", "* * * * *"), ("15m", "*/15 * * * *"), ("1h", "0 * * * *"), ("6h", "0 */6 * * *"),
     ("24h", "0 0 * * *"), ("1d", "0 0 * * *"), ("2d", "0 0 */2 * *")],
)  # fmt: skip
def test_intervals_become_cron_expressions(every: str, cron: str) -> None:
    assert cron_from_interval(parse_interval(every)) == cron


@pytest.mark.parametrize(
    ("every", "message"),
    [("", "give a number and a unit"), ("1w", "give a number and a unit"),
     ("0m", "at least 1m"), ("7m", "minutes must divide 60"), ("5h", "hours divide 24")],
)  # fmt: skip
def test_bad_intervals_say_what_is_accepted(every: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_interval(every)


@pytest.mark.parametrize(
    ("cron", "on_calendar"),
    [
        ("0 * * * *", ("*-*-* *:00:00",)),
        ("*/20 9-11 * * *", ("*-*-* 09,10,11:00,20,40:00",)),
        ("30 2 * * sun,6", ("Sat,Sun *-*-* 02:30:00",)),
        ("0 0 1 jan *", ("*-01-01 00:00:00",)),
        ("0 3 1 * 1", ("*-*-01 03:00:00", "Mon *-*-* 03:00:00")),  # cron ORs the day fields
        ("5 4 * * 7", ("Sun *-*-* 04:05:00",)),
    ],
)
def test_cron_expressions_translate_to_on_calendar(cron: str, on_calendar: tuple) -> None:  # type: ignore[type-arg]
    assert parse_cron(cron).on_calendar == on_calendar
    if SYSTEMD_ANALYZE:
        for value in on_calendar:
            check = subprocess.run(
                [SYSTEMD_ANALYZE, "calendar", value], capture_output=True, text=True
            )
            assert check.returncode == 0, check.stderr


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 * * *", "expected 5 fields"),
        ("60 * * * *", "minute 60 is out of range 0-59"),
        ("0 24 * * *", "hour 24 is out of range"),
        ("0 0 0 * *", "day of month 0 is out of range 1-31"),
        ("0 5-2 * * *", "runs backwards"),
        ("*/0 * * * *", "step must be at least 1"),
        ("0 0 * foo *", "'foo' is not a number or a name"),
        ("0 0 * * *-1", "not valid"),
    ],
)
def test_bad_cron_expressions_name_the_field(cron: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_cron(cron)


def _render(tmp_path: Path) -> dict[str, str]:
    return render(
        parse_cron("0 * * * *"),
        workspace=tmp_path / "my ws",
        ragkit_bin=tmp_path / "venv" / "bin" / "ragkit",
        working_dir=tmp_path,
        wait=900,
        log_file=tmp_path / "my ws" / "reindex.log",
    )


def test_the_crontab_line_sets_directory_environment_wait_and_log(tmp_path: Path) -> None:
    line = _render(tmp_path)["cron"]
    fields = line.split(" ", 5)
    assert fields[:5] == ["0", "*", "*", "*", "*"]
    words = shlex.split(fields[5])
    assert words[:3] == ["cd", str(tmp_path), "&&"]
    assert words[3] == f"PATH={tmp_path}/venv/bin:/usr/local/bin:/usr/bin:/bin"
    assert words[4] == f"RAGKIT_WORKSPACE={tmp_path}/my ws"
    assert words[5:9] == [f"{tmp_path}/venv/bin/ragkit", "reindex", "--wait", "900"]
    assert words[9:] == [">>", f"{tmp_path}/my ws/reindex.log", "2>&1"]


def test_the_service_and_timer_units_have_the_right_fields(tmp_path: Path) -> None:
    texts = _render(tmp_path)
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.optionxform = str  # type: ignore[assignment,method-assign]
    service.read_string(texts["service"])
    unit = service["Service"]
    assert unit["Type"] == "oneshot" and unit["WorkingDirectory"] == str(tmp_path)
    assert unit["ExecStart"] == f"{tmp_path}/venv/bin/ragkit reindex --wait 900"
    assert unit["StandardOutput"] == unit["StandardError"] == "journal"
    environment = [line for line in texts["service"].splitlines() if line.startswith("Env")]
    assert environment == [
        f"Environment=PATH={tmp_path}/venv/bin:/usr/local/bin:/usr/bin:/bin",
        f'Environment="RAGKIT_WORKSPACE={tmp_path}/my ws"',
    ]
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.optionxform = str  # type: ignore[assignment,method-assign]
    timer.read_string(texts["timer"])
    assert timer["Timer"]["OnCalendar"] == "*-*-* *:00:00"
    assert timer["Timer"]["Persistent"] == "true"  # a missed run runs once at boot
    assert timer["Timer"]["Unit"] == "ragkit-reindex.service"
    assert timer["Install"]["WantedBy"] == "timers.target"


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    ragkit_bin = tmp_path / "venv" / "bin" / "ragkit"
    ragkit_bin.parent.mkdir(parents=True)
    ragkit_bin.write_text("#!/bin/sh\n", encoding="utf-8")
    ragkit_bin.chmod(0o755)
    (tmp_path / "my ws").mkdir()
    texts = _render(tmp_path)
    units = tmp_path / "units"
    units.mkdir()
    (units / "ragkit-reindex.service").write_text(texts["service"], encoding="utf-8")
    (units / "ragkit-reindex.timer").write_text(texts["timer"], encoding="utf-8")
    check = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", *(str(p) for p in sorted(units.iterdir()))],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    assert "ragkit-reindex" not in check.stderr, check.stderr  # no warning about our units


def test_cli_schedule_prints_and_validates(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schedule", "--every", "30m", "-w", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    texts = json.loads(result.stdout)
    assert texts["cron"].startswith("*/30 * * * * cd ")
    assert "OnCalendar=*-*-* *:00,30:00" in texts["timer"]
    assert f"RAGKIT_WORKSPACE={tmp_path}" in texts["service"]
    assert runner.invoke(app, ["schedule", "-w", str(tmp_path)]).exit_code == 1
    bad = runner.invoke(app, ["schedule", "--cron", "61 * * * *"])
    assert bad.exit_code == 1 and "minute 61 is out of range" in bad.stderr
