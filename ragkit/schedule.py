"""The text of a schedule for ``ragkit reindex``: a crontab line and a systemd service + timer.

Printed, never installed: where a schedule lives (a user's crontab, /etc/systemd/system, a
user unit) is the administrator's choice. Both forms run the same command with what a
scheduler does not give: the working directory, a PATH with the virtual environment's bin
folder, ``RAGKIT_WORKSPACE``, and ``--wait`` so that a run meeting another job waits for it
instead of failing with 75. A timer's missed run (machine off) runs once at boot
(``Persistent=true``); cron skips it. Output goes to journald under systemd and is appended to
a log file under cron.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from ragkit.errors import ConfigError

__all__ = ["Schedule", "cron_from_interval", "parse_cron", "parse_interval", "render"]

_UNITS = {"m": 60, "h": 3600, "d": 86400}
# (name, low, high) of the five cron fields
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
           ("day of week", 0, 7))  # fmt: skip
_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


@dataclass(frozen=True)
class Schedule:
    """When to run: a cron expression (validated), and the same times as systemd
    ``OnCalendar`` values (several when cron's day-of-month OR day-of-week rule needs it)."""

    cron: str
    on_calendar: tuple[str, ...]


def parse_interval(text: str) -> int:
    """``30m``, ``1h``, ``2d`` -> seconds. Only intervals a clock can repeat exactly (a divisor
    of an hour or a day, or whole days) are accepted, so cron and systemd agree on the times."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhd])\s*", text.lower())
    if not match:
        raise ConfigError(
            f"--every {text!r}: give a number and a unit, m (minutes), h (hours) or d (days), "
            "e.g. 15m, 1h, 1d"
        )
    count, unit = int(match[1]), match[2]
    if count == 0:
        raise ConfigError(f"--every {text!r}: the interval must be at least 1m")
    if (unit == "m" and 60 % count) or (unit == "h" and 24 % count and count != 24):
        raise ConfigError(
            f"--every {text!r}: a schedule repeats within each hour or day, so minutes must "
            "divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) and hours divide 24; "
            "use --cron for anything else"
        )
    return count * _UNITS[unit]


def cron_from_interval(seconds: int) -> str:
    """The cron expression of an interval accepted by :func:`parse_interval`."""
    if seconds % 86400 == 0:
        days = seconds // 86400
        return "0 0 * * *" if days == 1 else f"0 0 */{days} * *"
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    minutes = seconds // 60
    return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"


def parse_cron(expression: str) -> Schedule:
    """Validate a five-field cron expression (numbers, ``*``, ``a-b``, ``/step``, lists,
    month and day names) and translate it to ``OnCalendar``; errors name the bad field."""
    parts = expression.split()
    if len(parts) != 5:
        raise ConfigError(
            f"--cron {expression!r}: expected 5 fields (minute hour day-of-month month "
            f'day-of-week), got {len(parts)}; e.g. "0 * * * *" for every hour'
        )
    values = [
        _field(part, name, low, high, expression)
        for part, (name, low, high) in zip(parts, _FIELDS, strict=True)
    ]
    minute, hour, dom, month, dow = values
    dow = None if dow is None else sorted({d % 7 for d in dow}, key=lambda d: (d - 1) % 7)
    date = f"*-{_calendar(month)}-{_calendar(dom)}"
    clock = f"{_calendar(hour)}:{_calendar(minute)}:00"
    if dow is not None and dom is not None:
        # cron runs when either day field matches; OnCalendar lines are OR-ed the same way
        on = (f"{date} {clock}", f"{_days(dow)} *-{_calendar(month)}-* {clock}")
    elif dow is not None:
        on = (f"{_days(dow)} {date} {clock}",)
    else:
        on = (f"{date} {clock}",)
    return Schedule(" ".join(parts), on)


def _field(part: str, name: str, low: int, high: int, expression: str) -> list[int] | None:
    """The values a field allows, or None for ``*`` (any)."""
    if part == "*":
        return None
    names = _MONTH_NAMES if name == "month" else _DAY_NAMES if name == "day of week" else []
    found: set[int] = set()
    for item in part.split(","):
        match = re.fullmatch(r"(\*|\w+)(?:-(\w+))?(?:/(\d+))?", item.lower())
        if not match:
            raise ConfigError(f"--cron {expression!r}: {name} field {part!r} is not valid")
        start, end, step = match[1], match[2], match[3]
        if start == "*":
            if end:
                raise ConfigError(f"--cron {expression!r}: {name} field {part!r} is not valid")
            first, last = low, high if name != "day of week" else 6
        else:
            first = _number(start, names, low, name, expression)
            last = _number(end, names, low, name, expression) if end else first
            if step and not end:
                last = high
        for value in (first, last):
            if not low <= value <= high:
                raise ConfigError(
                    f"--cron {expression!r}: {name} {value} is out of range {low}-{high}"
                )
        if last < first:
            raise ConfigError(f"--cron {expression!r}: {name} range {item!r} runs backwards")
        if step is not None and int(step) == 0:
            raise ConfigError(f"--cron {expression!r}: {name} step must be at least 1")
        found.update(range(first, last + 1, int(step or 1)))
    return sorted(found)


def _number(text: str, names: list[str], low: int, name: str, expression: str) -> int:
    if text.isdigit():
        return int(text)
    if text[:3] in names and len(text) == 3:
        return names.index(text) + (1 if name == "month" else 0)
    raise ConfigError(f"--cron {expression!r}: {name} {text!r} is not a number or a name")


def _calendar(values: list[int] | None) -> str:
    return "*" if values is None else ",".join(f"{v:02d}" for v in values)


def _days(values: list[int]) -> str:
    return ",".join(_DAYS[v] for v in values)


def render(
    schedule: Schedule,
    *,
    workspace: Path,
    ragkit_bin: Path,
    working_dir: Path,
    wait: float,
    log_file: Path,
    base_path: str = "/usr/local/bin:/usr/bin:/bin",
) -> dict[str, str]:
    """``{"cron": line, "service": unit, "timer": unit}`` for ``ragkit reindex`` of
    ``workspace``; every path is made absolute, since neither scheduler starts in a shell."""
    workspace, working_dir = workspace.absolute(), working_dir.absolute()
    path = f"{ragkit_bin.parent}:{base_path}"
    command = [str(ragkit_bin), "reindex", "--wait", f"{wait:g}"]
    cron_command = (
        f"cd {shlex.quote(str(working_dir))} && PATH={shlex.quote(path)} "
        f"RAGKIT_WORKSPACE={shlex.quote(str(workspace))} {shlex.join(command)} "
        f">> {shlex.quote(str(log_file.absolute()))} 2>&1"
    )
    cron_line = f"{schedule.cron} {cron_command.replace('%', chr(92) + '%')}"  # % ends a cron line
    service = "\n".join(
        [
            "[Unit]",
            f"Description=ragkit reindex of {workspace}",
            "Wants=network-online.target",
            "After=network-online.target local-fs.target",
            "",
            "[Service]",
            "Type=oneshot",
            f"WorkingDirectory={str(working_dir).replace('%', '%%')}",
            f"Environment={_unit_quote('PATH=' + path)}",
            f"Environment={_unit_quote('RAGKIT_WORKSPACE=' + str(workspace))}",
            f"ExecStart={' '.join(_unit_quote(part) for part in command)}",
            "StandardOutput=journal",
            "StandardError=journal",
            "SyslogIdentifier=ragkit-reindex",
            "Nice=10",
            "",
        ]
    )
    timer = "\n".join(
        [
            "[Unit]",
            f"Description=ragkit reindex of {workspace} ({schedule.cron})",
            "",
            "[Timer]",
            *(f"OnCalendar={on}" for on in schedule.on_calendar),
            "Persistent=true",
            "Unit=ragkit-reindex.service",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )
    return {"cron": cron_line, "service": service, "timer": timer}


def _unit_quote(value: str) -> str:
    """A systemd unit value, quoted when it has spaces, quotes or specifiers (``%``)."""
    value = value.replace("%", "%%")
    if re.fullmatch(r"[\w./:=,@+-]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
