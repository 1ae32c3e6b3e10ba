"""A first week without surprises: skipped file types, managed sources, progress in cron logs,
clear query errors, ``--version``, tables for terminals and pipes, and no hint naming a command
that does not exist."""

from __future__ import annotations

import io
import json
import re
import tomllib
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import ragkit
from ragkit.cli import _common
from ragkit.cli import query as query_cli
from ragkit.cli.app import app
from ragkit.errors import ConfigError, WorkspaceError
from ragkit.retrieval.limits import MAX_K

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def site(tmp_path: Path, tiny_model) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """A workspace configured with the tiny model on disk, and a documentation folder with
    the assets a built site carries."""
    model_dir = tmp_path / "model"
    tiny_model.save(str(model_dir))
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "ragkit.toml").write_text(f'[encoder]\nmodel = "{model_dir}"\n', encoding="utf-8")
    docs = tmp_path / "site"
    (docs / "assets").mkdir(parents=True)
    (docs / "drafts").mkdir()
    (docs / "backup.md").write_text("# Backups\n\nrestic snapshot backup restore\n", "utf-8")
    (docs / "net.txt").write_text("dns dhcp subnet router\n", "utf-8")
    (docs / "drafts" / "wip.md").write_text("# Draft\n\nzfs pool raid\n", "utf-8")
    for name in ("main.css", "theme.css", "print.css"):
        (docs / "assets" / name).write_text("body { color: red }\n", "utf-8")
    (docs / "assets" / "logo.PNG").write_bytes(b"\x89PNG\r\n\x1a\n")
    (docs / "assets" / "font.woff2").write_bytes(b"wOF2")
    return ws, docs


def ingest(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["ingest", *args])
    return result.exit_code, result.stdout, result.stderr


# -- unsupported types are skipped, not failed ------------------------------------------------
def test_unsupported_types_are_skipped_and_counted_per_extension(site) -> None:  # type: ignore[no-untyped-def]
    ws, docs = site
    code, out, err = ingest(str(docs), "-w", str(ws), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["files_new"] == 3 and report["files_failed"] == 0
    assert report["files_skipped"] == 5
    assert report["skipped_types"] == {".css": 3, ".png": 1, ".woff2": 1}

    (docs / "assets" / "more.css").write_text("p {}\n", "utf-8")
    code, out, _ = ingest(str(docs), "-w", str(ws))
    assert code == 0
    assert "6 skipped (unsupported type: .css ×4, .png ×1, .woff2 ×1)" in out
    assert out.count(".css") == 1  # one line for all, not one per file


def test_strict_makes_skips_failures_and_real_failures_still_exit_3(site) -> None:  # type: ignore[no-untyped-def]
    ws, docs = site
    code, out, _ = ingest(str(docs), "-w", str(ws), "--json", "--strict")
    assert code == 3
    report = json.loads(out)
    assert report["files_skipped"] == 0 and report["files_failed"] == 5

    (docs / "empty.txt").write_bytes(b"")  # a real failure, without --strict
    code, out, _ = ingest(str(docs), "-w", str(ws), "--json")
    assert code == 3
    report = json.loads(out)
    assert [f["path"].rsplit("/", 1)[-1] for f in report["failures"]] == ["empty.txt"]
    assert report["files_skipped"] == 5


# -- sources ------------------------------------------------------------------------------------
def test_missing_path_is_refused_before_a_workspace_exists(tmp_path: Path) -> None:
    ws = tmp_path / "never"
    code, _, err = ingest(str(tmp_path / "no-such-folder"), "-w", str(ws))
    assert code == 1
    assert "no such file or directory" in err and "no source was added" in err
    assert not ws.exists()


def test_saved_excludes_are_kept_and_said(site) -> None:  # type: ignore[no-untyped-def]
    ws, docs = site
    code, out, _ = ingest(str(docs), "-w", str(ws), "-x", "drafts/**", "--json")
    assert code == 0 and json.loads(out)["files_new"] == 2
    code, out, err = ingest(str(docs), "-w", str(ws))
    assert code == 0
    assert (
        f"using the saved excludes of source '{docs}' (drafts/**); pass -x to replace them"
        in " ".join(err.split())
    )
    code, out, _ = ingest(str(docs), "-w", str(ws), "--json")
    assert json.loads(out)["files_new"] == 0  # drafts/wip.md stays out
    config = tomllib.loads((ws / "ragkit.toml").read_text("utf-8"))
    assert config["sources"][0]["exclude"] == ["drafts/**"]

    code, out, _ = ingest(str(docs), "-w", str(ws), "-x", "nothing", "--json")
    report = json.loads(out)
    assert report["files_new"] == 1
    assert report["notes"] == [
        f"replacing the saved excludes of source '{docs}' (drafts/**) with nothing"
    ]


def test_sources_lists_and_removes_in_one_commit(site, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws, docs = site
    other = tmp_path / "notes"
    other.mkdir()
    (other / "pets.md").write_text("# Pets\n\nthe cat and the dog\n", "utf-8")
    assert ingest(str(docs), "-w", str(ws), "-x", "drafts/**")[0] == 0
    assert ingest(str(other), "-w", str(ws))[0] == 0

    listed = runner.invoke(app, ["sources", "-w", str(ws), "--json"])
    assert listed.exit_code == 0, listed.output
    by_name = {s["name"]: s for s in json.loads(listed.stdout)}
    assert set(by_name) == {str(docs), str(other)}
    site_source = by_name[str(docs)]
    assert site_source["exclude"] == ["drafts/**"] and site_source["include"] == ["**/*"]
    assert (site_source["files"], site_source["documents"]) == (2, 2)
    assert site_source["last_ingest"] is not None and site_source["last_status"] == "ok"
    table = runner.invoke(app, ["sources", "-w", str(ws)])
    assert "drafts/**" in table.stdout and str(other) in table.stdout

    with ragkit.open(ws) as kit:
        generation = kit.collection().record.generation  # type: ignore[union-attr]
    removed = runner.invoke(app, ["sources", "remove", str(docs), "-w", str(ws), "--json"])
    assert removed.exit_code == 0, removed.output
    report = json.loads(removed.stdout)
    assert (report["files"], report["documents"]) == (2, 2) and report["chunks"] >= 2

    with ragkit.open(ws) as kit:
        assert kit.collection().record.generation == generation + 1  # type: ignore[union-attr]
        assert kit.store.counts()["documents"] == 1 and set(kit.store.sources()) == {str(other)}
        assert [s.name for s in kit.config.sources] == [str(other)]
        run = kit.store.runs(limit=1)[0]
        assert (run["kind"], run["status"]) == ("remove-source", "ok")
    hits = runner.invoke(app, ["query", "restic snapshot", "-w", str(ws), "--json", "-k", "5"])
    assert [hit["uri"] for hit in json.loads(hits.stdout)] == ["pets.md"]
    doctor = runner.invoke(app, ["doctor", "-w", str(ws)])
    assert doctor.exit_code == 0, doctor.output

    again = runner.invoke(app, ["sources", "remove", str(docs), "-w", str(ws)])
    assert again.exit_code == 1
    assert "no source named" in again.stderr and str(other) in again.stderr


# -- progress in logs ------------------------------------------------------------------------------
def test_progress_logs_lines_when_not_a_terminal_and_the_summary_agrees(site) -> None:  # type: ignore[no-untyped-def]
    ws, docs = site
    code, out, err = ingest(str(docs), "-w", str(ws), "--log-every", "0")
    assert code == 0
    assert "\x1b[" not in err and "━" not in err  # no bar redraws in a log file
    lines = [line for line in err.splitlines() if line.startswith(("progress:", "done:"))]
    assert len(lines) >= 3 and lines[-1].startswith("done: files 8/8")
    assert any(re.search(r"ETA \d+:\d\d:\d\d", line) for line in lines[:-1])
    done = re.search(r"(\d+) chunks embedded · (\d+) chunks/s · ([\d.]+)s$", lines[-1])
    summary = re.search(
        r"(\d+) chunks embedded \(\d+ from cache\) at (\d+) chunks/s in ([\d.]+)s", out
    )
    assert done and summary, (lines[-1], out)
    assert done.groups() == summary.groups()  # one count, one clock

    code, _, err = ingest(str(docs), "-w", str(ws), "--log-every", "3600")
    assert [line for line in err.splitlines() if line.startswith("progress:")] == []
    assert any(line.startswith("done:") for line in err.splitlines())


def test_log_lines_keep_coming_while_a_job_is_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    """A model load or one long encode sends no events; the log must still show progress."""
    import time

    from ragkit.cli.ingest import _progress

    view = _progress(quiet=False, log_every=0.05)
    assert view.log  # stderr is captured, not a terminal
    with view as on_progress:
        on_progress("files_total", 4)
        on_progress("file", 1)
        time.sleep(0.4)  # no events meanwhile
    lines = capsys.readouterr().err.splitlines()
    ticks = [line for line in lines if line.startswith("progress: files 1/4")]
    assert len(ticks) >= 3 and "ETA" in ticks[0]
    assert lines[-1].startswith("done: files 1/4 · 0 chunks embedded")


# -- query errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_query_is_an_error(site, text: str) -> None:  # type: ignore[no-untyped-def]
    ws, docs = site
    ingest(str(docs), "-w", str(ws))
    result = runner.invoke(app, ["query", text, "-w", str(ws)])
    assert result.exit_code == 1 and "query text is empty" in result.stderr
    with ragkit.open(ws) as kit, pytest.raises(ConfigError, match="query text is empty"):
        kit.query(text)


@pytest.mark.parametrize("k", [0, -1, MAX_K + 1])
def test_k_is_checked_alike_in_python_and_the_cli(site, k: int) -> None:  # type: ignore[no-untyped-def]
    ws, docs = site
    ingest(str(docs), "-w", str(ws))
    result = runner.invoke(app, ["query", "dns", "-k", str(k), "-w", str(ws)])
    assert result.exit_code == 1
    with ragkit.open(ws) as kit, pytest.raises(ConfigError) as raised:
        kit.query("dns", k=k)
    assert str(raised.value) == f"k must be a whole number from 1 to {MAX_K}, not {k}"
    assert str(raised.value) in " ".join(result.stderr.split())
    with ragkit.open(ws) as kit:
        assert len(kit.query("dns", k=MAX_K)) == kit.store.counts()["chunks"]  # bound allowed


def test_unknown_where_key_lists_the_known_keys(site) -> None:  # type: ignore[no-untyped-def]
    ws, docs = site
    (docs / "meta.md").write_text("---\nteam: infra\n---\n# Meta\n\ndns router\n", "utf-8")
    ingest(str(docs), "-w", str(ws))
    result = runner.invoke(app, ["query", "dns", "--where", "fromat=md", "-w", str(ws)])
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "no document has the filter key 'fromat'" in message
    assert "source, uri, format" in message and "team" in message
    with ragkit.open(ws) as kit:
        with pytest.raises(ConfigError, match="'fromat'"):
            kit.query("dns", where={"fromat": "md"})
        assert kit.query("dns", where={"team": "nobody"}) == []  # a known key: just no hits
        assert [h.uri for h in kit.query("dns", where={"team": "infra"})] == ["meta.md"]


def test_open_does_not_create_a_workspace_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "typo"
    with pytest.raises(WorkspaceError, match="no ragkit workspace here") as raised:
        ragkit.open(path)
    assert str(path) in str(raised.value) and "create=True" in str(raised.value)
    assert not path.exists()
    with ragkit.open(path, create=True) as kit:
        assert (kit.root / "store.sqlite").exists()
    ragkit.open(path).close()  # now it is one


# -- --version and tables --------------------------------------------------------------------------
def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert re.fullmatch(r"ragkit \d+\.\d+\.\d+\S*\n", result.stdout)


def test_piped_hits_are_plain_full_lines(site) -> None:  # type: ignore[no-untyped-def]
    ws, docs = site
    long_text = " ".join(["dns router subnet"] * 40) + " the end marker"
    (docs / "long.txt").write_text(long_text + "\n", "utf-8")
    ingest(str(docs), "-w", str(ws))
    result = runner.invoke(app, ["query", "dns router", "-w", str(ws), "-k", "2"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[1] == "rank\tscore\tdocument\tsection\ttext"
    assert not set(result.stdout) & set("│┃━─┏╭…")
    rows = [line.split("\t") for line in lines[2:]]
    assert len(rows) == 2 and all(len(row) == 5 for row in rows)
    assert any(row[2] == "long.txt" and row[4] == long_text for row in rows)


def test_terminal_tables_fit_the_width(site, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    ws, docs = site
    ingest(str(docs), "-w", str(ws))
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=60, color_system=None)
    monkeypatch.setattr(_common, "console", terminal)
    monkeypatch.setattr(query_cli, "console", terminal)
    result = runner.invoke(app, ["query", "restic snapshot backup", "-w", str(ws), "-k", "2"])
    assert result.exit_code == 0
    shown = screen.getvalue()
    assert "backup.md" in shown and ("┃" in shown or "│" in shown)
    assert max(len(line) for line in shown.splitlines()) <= 60

    screen.seek(0)
    screen.truncate(0)
    result = runner.invoke(app, ["status", "-w", str(ws)])
    assert result.exit_code == 0
    assert max(len(line) for line in screen.getvalue().splitlines()) <= 60


# -- every command a message names exists ------------------------------------------------------------
# Commands documented as planned, which a message may name (none: messages say "planned"
# without naming a command that does not exist).
PLANNED: set[str] = set()


def _registered_commands() -> set[str]:
    import typer.main

    group = typer.main.get_command(app)
    return set(group.commands)  # type: ignore[attr-defined]


def _mentions() -> dict[str, list[str]]:
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for folder in ("cli", "ragkit", "pipelines", "connectors"):
        files += sorted((REPO / folder).rglob("*.py"))
    found: dict[str, list[str]] = {}
    for path in files:
        text = path.read_text("utf-8")
        for match in re.finditer(r"`ragkit ([a-z][a-z-]*)", text):
            found.setdefault(match.group(1), []).append(str(path.relative_to(REPO)))
    return found


def test_every_command_a_message_names_exists() -> None:
    mentions = _mentions()
    assert {"ingest", "query", "doctor", "sources"} <= set(mentions)  # the scan finds them
    missing = {
        word: where
        for word, where in mentions.items()
        if word not in _registered_commands() | PLANNED
    }
    assert missing == {}


def test_the_model_card_promises_no_missing_command() -> None:
    from ragkit.training.model_card import render_model_card

    card = render_model_card({"path": "/models/tuned", "metrics": {}})
    words = set(re.findall(r"(?:^|`)ragkit ([a-z][a-z-]*)", card, flags=re.M))  # commands
    assert words <= _registered_commands(), words
    assert 'model = "/models/tuned"' in card
