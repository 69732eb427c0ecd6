"""Faults the hostile-case harness found, each fixed for its class: seeds, token ids, output paths,
the machine's limits, user code under --json, signals, resumes and the resources a spec may ask for.

Each test plants the input the way a user (or an attacker) writes it and checks the documented
outcome: exit 2 (1 for a failed check) with a located, actionable message, or a command that works.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import textwrap

import pytest
from conftest import PYTHON, ROOT, subprocess_env, write
from spec_texts import TINY_MLP_RUN as MLP

pytestmark = pytest.mark.usefixtures("default_limits")

BIG_SEED = str(2**64)
TOKENS = """name: tok
input: {{shape: [8], dtype: int64, high: 20}}
layers:
{layers}
  - Embedding: {{embedding_dim: 4}}
  - Flatten
  - Linear: {{out_features: 2}}
"""


# -- seeds: one range for every flag and spec key --------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["train", "{spec}", "--seed", BIG_SEED, "--out", "{tmp}/run"],
        ["gradcheck", "{spec}", "--seed", BIG_SEED],
        ["probe", "{spec}", "--seeds", f"0,{BIG_SEED}"],
        ["diagram", "{spec}", "--weights", "--seed", BIG_SEED, "-o", "{tmp}/d.dot"],
        ["export", "{spec}", "--seed", BIG_SEED, "-o", "{tmp}/m.safetensors"],
        ["train", "{spec}", "--set", f"train.seed={BIG_SEED}", "--out", "{tmp}/run"],
        ["check", "{spec}", "--set", f"train.seed={BIG_SEED}"],
        ["check", "{spec}", "--set", f"data.seed={BIG_SEED}"],
    ],
    ids=["train", "gradcheck", "probe", "diagram", "export", "train-set", "check-train", "check-data"],
)
def test_a_seed_past_the_range_is_exit_2_everywhere(tmp_path, run_cli, argv):
    spec = write(tmp_path / "spec.yaml", MLP)
    result = run_cli([w.replace("{spec}", str(spec)).replace("{tmp}", str(tmp_path)) for w in argv])
    assert result.code == 2, result.text
    assert "4294967295" in result.text.replace(",", ""), result.text  # the bound is named
    assert not (tmp_path / "run").exists()


def test_check_refuses_the_seed_train_would_refuse(tmp_path, run_cli):
    spec = write(tmp_path / "spec.yaml", MLP.replace("seed: 3", f"seed: {BIG_SEED}"))
    result = run_cli(["check", spec])
    assert result.code == 2 and "spec.yaml:9:" in result.err and "train.seed" in result.err, result.text


def test_the_largest_seed_works(tmp_path):
    from nncli.build import build_model
    from nncli.seeds import SEED_MAX
    from nncli.spec import load_spec

    # the builder and the trainer mix a seed with an epoch or a rank: the largest must still fit
    from nncli.train.epoch import epoch_permutation

    build_model(load_spec(write(tmp_path / "spec.yaml", MLP)), seed=SEED_MAX)
    assert sorted(epoch_permutation(SEED_MAX, 10**6, 5).tolist()) == [0, 1, 2, 3, 4]


def test_sweep_seeds_past_the_range_or_too_many_are_refused(tmp_path, run_cli):
    write(tmp_path / "base.yaml", MLP)
    for seeds in (f"[{BIG_SEED}]", "1000000000"):
        sweep = write(tmp_path / "sweep.yaml", f"base: base.yaml\nseeds: {seeds}\ngrid:\n  train.lr: [0.1]\n")
        result = run_cli(["sweep", sweep, "--dry-run", "--out", tmp_path / "s"])
        assert result.code == 2 and "sweep.yaml:2:" in result.err, result.text


# -- token ids: check refuses what would compute with them, the rest works everywhere ---------------
@pytest.mark.parametrize(
    "layers, words",
    [
        ("  - Tanh", "Tanh expects float input"),
        ("  - Dropout: {p: 0.1}", "Dropout expects float input"),
        ("  - AvgPool1d: {kernel_size: 2}", "AvgPool1d expects float input"),
        ("  - Parallel: {merge: add, branches: [[Identity], [Identity]]}", "Parallel merge add"),
        ("  - Parallel: {merge: mean, branches: [[Identity], [Identity]]}", "Parallel merge mean"),
        ("  - Residual: {body: [Identity]}", "Residual adds int64 token ids"),
    ],
)
def test_layers_computing_with_token_ids_are_refused_by_check(tmp_path, run_cli, layers, words):
    spec = write(tmp_path / "tok.yaml", TOKENS.format(layers=layers))
    result = run_cli(["check", spec])
    assert result.code == 2, result.text
    assert "tok.yaml:4:" in result.err and words in result.err and "Embedding first" in result.err


@pytest.mark.parametrize("layers", ["  - Identity", "  - Narrow: {dim: 1, start: 0, length: 6}"])
def test_layers_moving_token_ids_before_the_embedding_pass_every_command(tmp_path, run_cli, layers):
    spec = write(tmp_path / "tok.yaml", TOKENS.format(layers=layers))
    assert run_cli(["check", spec]).code == 0
    result = run_cli(["gradcheck", spec, "--json"])
    assert result.code == 0, result.text  # no false FAIL from differencing integer ids
    assert run_cli(["probe", spec, "--seeds", "0", "--json"]).code == 0
    assert run_cli(["export", spec, "-f", "safetensors", "-o", tmp_path / "m.safetensors"]).code == 0


# -- layers whose output or parameters nncli cannot use: refused by check ---------------------------
@pytest.mark.parametrize("dropout", ["-0.5", "1.5", "1.0", ".nan"])
def test_self_attention_dropout_outside_0_1_is_located(tmp_path, run_cli, dropout):
    spec = write(
        tmp_path / "a.yaml", f"input: [4, 8]\nlayers:\n  - SelfAttention: {{num_heads: 2, dropout: {dropout}}}\n"
    )
    result = run_cli(["check", spec])
    assert result.code == 2 and "a.yaml:3:" in result.err and "dropout" in result.err, result.text


CUSTOM_SPEC = "input: [4]\nlayers:\n  - Custom: {target: 'layers.py:M'}\n  - Linear: {out_features: 2}\n"


@pytest.mark.parametrize(
    "body, words",
    [
        ("    def forward(self, x):\n        return x.double()\n", "returns float64 from float32"),
        ("    def forward(self, x):\n        return x.half()\n", "returns float16 from float32"),
        (
            "    def __init__(self):\n        super().__init__()\n        self.l = nn.LazyLinear(3)\n"
            "    def forward(self, x):\n        return self.l(x)\n",
            "lazy parameters",
        ),
    ],
    ids=["float64", "float16", "lazy"],
)
def test_custom_layers_nncli_cannot_train_are_refused_by_check(tmp_path, run_cli, body, words):
    write(tmp_path / "layers.py", "import torch.nn as nn\nclass M(nn.Module):\n" + body)
    spec = write(tmp_path / "s.yaml", CUSTOM_SPEC)
    for command in ("check", "params", "gradcheck"):
        result = run_cli([command, spec])
        assert result.code == 2 and "s.yaml:3:" in result.err and words in result.err, (command, result.text)


# -- paths a command cannot write to -----------------------------------------------------------------
@pytest.mark.parametrize("where", ["under-a-file", "proc"])
@pytest.mark.parametrize(
    "argv",
    [
        ["train", "{spec}", "--out", "{out}"],
        ["sweep", "{sweep}", "--out", "{out}"],
        ["export", "{spec}", "-o", "{out}/m.onnx"],
        ["diagram", "{spec}", "-o", "{out}/d.svg"],
    ],
    ids=["train", "sweep", "export", "diagram"],
)
def test_an_output_path_that_cannot_exist_is_exit_2(tmp_path, run_cli, argv, where):
    spec = write(tmp_path / "spec.yaml", MLP)
    sweep = write(tmp_path / "sweep.yaml", "base: spec.yaml\ngrid:\n  train.lr: [0.1]\n")
    write(tmp_path / "afile", "a file\n")
    out = str(tmp_path / "afile" / "run") if where == "under-a-file" else "/proc/nncli-no-such/run"
    words = [w.replace("{spec}", str(spec)).replace("{sweep}", str(sweep)).replace("{out}", out) for w in argv]
    result = run_cli([*words, "--json"])
    assert result.code == 2, result.text
    doc = json.loads(result.out)
    assert doc["exit_code"] == 2 and ("afile" in doc["message"] or "/proc/" in doc["message"]), doc


# -- the machine's limits ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "exc",
    [
        BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"),
        RuntimeError("can't start new thread"),
        OSError(errno.EMFILE, "Too many open files"),
    ],
    ids=["fork-eagain", "thread", "files"],
)
def test_a_refused_process_or_thread_is_exit_2(tmp_path, run_cli, monkeypatch, exc):
    import nncli.cli.check as check_cli

    def refuse(*args, **kwargs):
        raise exc

    monkeypatch.setattr(check_cli, "load_spec_with_sets", refuse)
    result = run_cli(["check", write(tmp_path / "spec.yaml", MLP), "--json"])
    assert result.code == 2, result.text
    assert "the machine refused" in result.err and json.loads(result.out)["exit_code"] == 2


def test_threads_above_the_cores_are_capped_with_a_note(tmp_path, run_cli, monkeypatch):
    from nncli.threads import cores, decide

    choice = decide(1e12, threads=100_000)
    assert choice.threads == cores() and "100,000 threads asked for" in choice.note
    monkeypatch.setenv("NNCLI_THREADS", "100000")
    assert decide(1e12).threads == cores()
    monkeypatch.delenv("NNCLI_THREADS")
    result = run_cli(["probe", write(tmp_path / "spec.yaml", MLP), "--seeds", "0", "--threads", "100000"])
    assert result.code in (0, 1) and "100,000 threads asked for" in result.err, result.text


@pytest.mark.parametrize("workers, code", [("10000", 2), ("65", 2), ("-1", 2), ("64", 0)])
def test_data_workers_above_the_maximum_are_refused(tmp_path, run_cli, workers, code):
    spec = write(tmp_path / "spec.yaml", MLP.replace("noise: 0.1}", f"noise: 0.1, workers: {workers}}}"))
    result = run_cli(["check", spec])
    assert result.code == code, result.text
    if code:
        assert "spec.yaml:8:" in result.err and "data.workers" in result.err


def test_probe_work_is_bounded_before_it_starts(tmp_path, run_cli):
    spec = write(tmp_path / "r.yaml", "input: [4]\nlayers:\n  - Repeat: {times: 2, layers: [Tanh]}\n")
    for flags, words in (
        (["--sweep-depth", "2,1000000000"], "limit is 100,000"),
        (["--sweep-depth", ",".join(["2"] * 65)], "at most 64"),
        (["--steps", "1000000000"], "100,000"),
        (["--seeds", ",".join(map(str, range(1001)))], "at most 1,000"),
    ):
        result = run_cli(["probe", spec, *flags])
        assert result.code == 2 and words in result.err, (flags, result.text)


# -- --set values are read like the spec itself -----------------------------------------------------
@pytest.mark.parametrize(
    "item, words",
    [
        ("layers=&a [*a]", "recursive YAML alias"),
        ("train.epochs=" + "9" * 5000, "4300 digits"),
        ("train.lr=!!python/name:os.system", "refused YAML tag"),
    ],
    ids=["recursive-alias", "huge-int", "tag"],
)
def test_set_values_obey_the_spec_readers_bounds(tmp_path, run_cli, item, words):
    result = run_cli(["check", write(tmp_path / "spec.yaml", MLP), "--set", item])
    assert result.code == 2 and "--set" in result.err and words in result.err, result.text


def test_sweep_dry_run_refuses_an_unknown_train_key(tmp_path, run_cli):
    write(tmp_path / "base.yaml", MLP)
    sweep = write(tmp_path / "sweep.yaml", "base: base.yaml\ngrid:\n  train.lr: [0.1, 0.2]\n")
    result = run_cli(["sweep", sweep, "--dry-run", "--set", "train.nope=1", "--out", tmp_path / "s"])
    assert result.code == 2 and "unknown key 'nope' in train" in result.err, result.text


# -- stdout belongs to --json ------------------------------------------------------------------------
def test_user_code_printing_under_json_goes_to_stderr(tmp_path, run_cli):
    write(
        tmp_path / "layers.py",
        "import torch.nn as nn\nprint('import-time text')\nclass M(nn.Module):\n"
        "    def forward(self, x):\n        print('forward text')\n        return x\n",
    )
    result = run_cli(["check", write(tmp_path / "s.yaml", CUSTOM_SPEC), "--json"])
    assert result.code == 0, result.text
    assert (
        json.loads(result.out)["total_params"] == 10
        and "forward text" in result.err
        and "import-time text" in result.err
    )


def test_ctrl_c_in_user_code_under_json_prints_the_error_document(tmp_path, run_cli):
    write(
        tmp_path / "layers.py",
        "import torch.nn as nn\nclass M(nn.Module):\n    def forward(self, x):\n        raise KeyboardInterrupt\n",
    )
    result = run_cli(["check", write(tmp_path / "s.yaml", CUSTOM_SPEC), "--json"])
    assert result.code == 130
    assert json.loads(result.out) == {**json.loads(result.out), "error": "Interrupted", "exit_code": 130}


def test_sigterm_before_training_starts_exits_130_with_json(tmp_path):
    # SIGTERM one second into the command: torch and the spec are still loading, before the
    # training loop installs its own handler.
    spec = write(tmp_path / "spec.yaml", MLP)
    code = textwrap.dedent(
        f"""
        import os, signal, sys, threading
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
        from nncli.cli import main
        sys.exit(main(["train", {str(spec)!r}, "--out", {str(tmp_path / "run")!r}, "--epochs", "500", "--json"]))
        """
    )
    proc = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=subprocess_env()
    )
    assert proc.returncode == 130, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == 130 or doc.get("status") == "interrupted", doc
    assert proc.returncode != -signal.SIGTERM


# -- run folders ---------------------------------------------------------------------------------------
def test_resume_of_a_finished_run_without_checkpoints_is_refused(tmp_path, run_cli):
    import shutil

    out = tmp_path / "run"
    assert run_cli(["train", write(tmp_path / "spec.yaml", MLP), "--out", out]).code == 0
    report = (out / "report.json").read_text()
    shutil.rmtree(out / "checkpoints")
    result = run_cli(["train", "--resume", out])
    assert result.code == 2 and "nothing to resume from" in result.err, result.text
    assert (out / "report.json").read_text() == report  # not retrained, not overwritten


def test_an_image_class_folder_linked_elsewhere_is_refused(tmp_path, run_cli):
    pytest.importorskip("PIL")
    from PIL import Image

    (tmp_path / "photos" / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "photos" / "a" / "x.png")
    os.symlink("/", tmp_path / "photos" / "b")
    spec = write(
        tmp_path / "img.yaml",
        "input: [3, 8, 8]\nlayers: [Flatten, {Linear: {out_features: 2}}]\ndata: {path: photos/}\n",
    )
    result = run_cli(["train", spec, "--out", tmp_path / "run"])
    assert result.code == 2 and "symbolic link" in result.err, result.text
