"""One name for the output flag: every command that writes a file takes ``--out``/``-o``; the old
names (``diagram --output``, ``attack --save``) still work, hidden from --help."""

from __future__ import annotations

import pytest
from conftest import SPECS

# the commands that write a file (or a run folder) named by the user
WRITERS = ("train", "sweep", "predict", "export", "diagram", "attack")
OLD_NAMES = {"diagram": "--output", "attack": "--save"}


def _commands():
    import typer.main

    from nncli.cli import app

    return typer.main.get_command(app).commands


def test_every_command_that_writes_a_file_takes_out_and_o():
    commands = _commands()
    for name in WRITERS:
        visible = [o for p in commands[name].params if not getattr(p, "hidden", False) for o in getattr(p, "opts", [])]
        assert "--out" in visible and "-o" in visible, name
    # no other visible spelling of an output flag on any command
    for name, command in commands.items():
        for p in command.params:
            if not getattr(p, "hidden", False):
                assert not {"--output", "--save", "--out-dir", "--output-dir"} & set(getattr(p, "opts", [])), name


@pytest.mark.parametrize("name", sorted(OLD_NAMES))
def test_old_names_are_hidden_from_help(run_cli, name):
    res = run_cli([name, "--help"])
    assert res.code == 0 and "--out" in res.out and OLD_NAMES[name] not in res.out


def test_diagram_writes_with_out_and_with_its_old_name(tmp_path, run_cli):
    spec = SPECS / "moons-mlp.yaml"
    for flag, name in (("--out", "a.dot"), ("-o", "b.dot"), ("--output", "c.dot")):
        res = run_cli(["diagram", spec, flag, tmp_path / name])
        assert res.code == 0, res.err
        assert (tmp_path / name).read_text().lstrip().startswith(("digraph", "//")), flag
    res = run_cli(["diagram", spec, "--out", tmp_path / "d.dot", "--output", tmp_path / "e.dot"])
    assert res.code == 2 and "old name of --out" in res.err
    assert not (tmp_path / "d.dot").exists() and not (tmp_path / "e.dot").exists()


def test_attack_errors_name_the_output_flag_typed(tmp_path, run_cli):
    # the path is checked before the run is opened, so no run is needed to see the message
    run = tmp_path / "no-run"
    res = run_cli(["attack", run, "--out", tmp_path / "x.txt"])
    assert res.code == 2 and "--out: expected a .npz file" in res.err, res.err
    res = run_cli(["attack", run, "-o", tmp_path / "x.txt"])
    assert res.code == 2 and "--out: expected a .npz file" in res.err, res.err
    res = run_cli(["attack", run, "--save", tmp_path / "x.txt"])
    assert res.code == 2 and "--save: expected a .npz file" in res.err, res.err
    res = run_cli(["attack", run, "--out", tmp_path / "a.npz", "--save", tmp_path / "b.npz"])
    assert res.code == 2 and "old name of --out" in res.err, res.err
