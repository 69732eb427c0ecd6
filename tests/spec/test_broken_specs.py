"""The broken-spec corpus: every file in tests/broken_specs/ must fail cleanly.

Each ``*.yaml`` file says in its header what is wrong and where a user should be sent::

    # expect: line 9, layers[3].Linear.in_features
    # expect-text: layers[2] Flatten gives [N, 5408]

``nncli check FILE`` must exit 2, print no traceback, and its message must start with
``FILE:LINE[:COL]: SPEC_PATH:`` (``-`` for an error about the file as a whole: bad YAML syntax,
an empty file, a top level that is not a mapping); every ``expect-text`` must appear in stderr.
The expectations were worked out by hand from the files, not copied from nncli's output.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import TESTS

CORPUS = TESTS / "broken_specs"
HEADER = re.compile(r"^# expect: line (\d+), (\S+)\s*$", re.M)
TEXT = re.compile(r"^# expect-text: (.+?)\s*$", re.M)

# Files that cannot carry a comment header: (line, spec path, texts).
HEADERLESS = {
    "empty.yaml": (1, "-", ["empty spec"]),
    "checkpoint.bin": (1, "-", ["binary data"]),
    "utf16_spec.yaml": (1, "-", ["found UTF-16"]),  # what PowerShell's `>` writes
}


def _expectations(path: Path) -> tuple[int, str, list[str]]:
    if path.name in HEADERLESS:
        return HEADERLESS[path.name]
    head = path.read_bytes()[:2000].decode("latin-1")  # non-UTF-8 files have ASCII headers
    match = HEADER.search(head)
    assert match, f"{path.name}: no '# expect: line N, spec.path' header"
    return int(match.group(1)), match.group(2), TEXT.findall(head)


CASES = sorted(p for p in CORPUS.iterdir() if p.is_file() and (p.suffix == ".yaml" or p.name in HEADERLESS))


def test_corpus_is_big_enough():
    assert len(CASES) >= 45


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_broken_spec_fails_located(path, run_cli):
    line, spec_path, texts = _expectations(path)
    result = run_cli(["check", path])
    assert result.code == 2, result.text
    assert "Traceback" not in result.text
    assert "internal error" not in result.err
    located = rf"{re.escape(str(path))}:{line}(?::\d+)?: "
    if spec_path != "-":
        located += re.escape(spec_path) + ": "
    assert re.search(located, result.err), f"expected {located!r} in:\n{result.err}"
    for text in texts:
        assert text in result.err, f"expected {text!r} in:\n{result.err}"
    assert result.out == ""  # nothing on stdout for a bad spec (without --json)


@pytest.mark.parametrize("path", [CASES[0], CORPUS / "shape_mismatch_after_flatten.yaml"], ids=lambda p: p.name)
def test_broken_spec_under_json_and_params(path, run_cli):
    # The same corpus fails the same way under `params` and with --json (one JSON document).
    import json

    line, spec_path, _ = _expectations(path)
    for args in (["params", path], ["check", path, "--json"], ["params", path, "--json"]):
        result = run_cli(args)
        assert result.code == 2, result.text
        assert "Traceback" not in result.text
        if "--json" in args:
            doc = json.loads(result.out)
            assert doc["exit_code"] == 2 and doc["line"] == line and doc["file"] == str(path)
            assert doc["spec_path"] == (None if spec_path == "-" else spec_path)


def test_missing_spec_file(run_cli, tmp_path):
    missing = tmp_path / "no_such_spec.yaml"
    result = run_cli(["check", missing])
    assert result.code == 2
    assert str(missing) in result.err and "no such spec file" in result.err
    assert "Traceback" not in result.text


def test_directory_instead_of_spec(run_cli, tmp_path):
    result = run_cli(["params", tmp_path])
    assert result.code == 2
    assert "directory" in result.err and "Traceback" not in result.text


def test_traceback_switch_shows_the_traceback(run_cli):
    # The escape hatch for bug reports: --traceback shows the traceback, and the exit code stays 2.
    result = run_cli(["--traceback", "check", CORPUS / "unknown_layer.yaml"])
    assert result.code == 2
    assert "Traceback" in result.err and "SpecError" in result.err


# A real build infers shapes with the real module on its device rather than on meta tensors; the
# same broken spec must fail the same way, at the same place, whichever build runs.
BUILDER_CASES = [
    "batch_first_false.yaml",
    "batchnorm2d_on_vector.yaml",
    "conv2d_reads_batch_as_channels.yaml",
    "conv2d_three_kernel_sizes.yaml",
    "custom_returns_tuple.yaml",
    "in_channels_mismatch.yaml",
    "input_with_batch_dim.yaml",
    "kaiming_on_bias.yaml",
    "kernel_larger_than_input.yaml",
    "layernorm_shape_mismatch.yaml",
    "lstm_returns_tuple.yaml",
    "pool_shrinks_to_nothing.yaml",
    "residual_channel_mismatch.yaml",
    "residual_linear_mismatch.yaml",
    "shape_mismatch_after_flatten.yaml",
    "softmax_dim_out_of_range.yaml",
    "unknown_layer.yaml",
]


@pytest.mark.parametrize("name", BUILDER_CASES)
def test_real_build_fails_like_meta_inference(name):
    from nncli.build import build_model, infer
    from nncli.errors import SpecError
    from nncli.spec import load_spec

    spec = load_spec(CORPUS / name)
    with pytest.raises(SpecError) as meta:
        infer(spec)
    with pytest.raises(SpecError) as real:
        build_model(spec, device="cpu")
    assert (real.value.line, real.value.spec_path, real.value.hint) == (
        meta.value.line,
        meta.value.spec_path,
        meta.value.hint,
    )
    # torch's CPU and meta kernels word some failures differently; nncli's own part must agree.
    assert str(real.value).split(": ")[:3] == str(meta.value).split(": ")[:3]
