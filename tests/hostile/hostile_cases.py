"""The table of hostile cases, by category, as an attacker (or a careless user) would try them.

Categories: graph language, resource bombs, untrusted files, data, CLI, runs and faults. Each case
says which exit codes are right (mostly 1 or 2: a located refusal; 0 where nncli should simply
work). ``fast`` marks the subset that runs in the default suite: spec-only commands, a few seconds
each. Cases that need a trained run copy one made once per process by :func:`base_run`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from hostile_harness import ROOT, Case, case_env, nncli_command
from spec_texts import TINY_MLP_RUN as MLP

BROKEN = ROOT / "tests" / "broken_specs"
SPECS = ROOT / "specs"

OK = frozenset({0})
REFUSED = frozenset({1, 2})
BAD = frozenset({2})
ANY_CLEAN = frozenset({0, 1, 2})


TOKENS = """name: tok
input: {{shape: [8], dtype: int64, high: 128}}
layers:
{layers}
data: {{name: text, context: 8}}
train: {{epochs: 1, batch_size: 64, seed: 0}}
"""

HUGE_INT = "9" * 5000
SEED_2_64 = str(2**64)


def spec(layers: str, head: str = "input: [4]", tail: str = "") -> str:
    """A spec with ``layers`` (YAML list lines, already indented) under ``head``."""
    return f"name: hostile\n{head}\nlayers:\n{layers}\n{tail}"


# -- trained runs, made once per process --------------------------------------------------------
_RUN_LOCK = threading.Lock()
_RUNS: dict[str, Path] = {}
RUN_CACHE = Path(os.environ.get("NNCLI_HOSTILE_CACHE", "/tmp/nncli-hostile-cache"))


def base_run(text: str = MLP, name: str = "mlp") -> Path:
    """A finished one-epoch run of ``text``, trained once (per process) and reused."""
    with _RUN_LOCK:
        if name not in _RUNS:
            folder = RUN_CACHE / f"{os.getpid()}-{name}"
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            (folder / "spec.yaml").write_text(text)
            argv = nncli_command() + ["train", "spec.yaml", "--out", "run", "--device", "cpu"]
            subprocess.run(argv, cwd=folder, env=case_env({}), check=True, capture_output=True, timeout=300)
            _RUNS[name] = folder / "run"
        return _RUNS[name]


def with_run(mutate: Callable[[Path], None] | None = None, text: str = MLP, name: str = "mlp"):
    """A set-up that copies the base run to ``<case>/run`` (and its spec), then applies ``mutate``."""

    def setup(folder: Path) -> None:
        src = base_run(text, name)
        shutil.copytree(src, folder / "run")
        shutil.copy(src.parent / "spec.yaml", folder / "spec.yaml")
        if mutate is not None:
            mutate(folder / "run")

    return setup


def _write(rel: str, text: str) -> Callable[[Path], None]:
    def mutate(run: Path) -> None:
        (run / rel).write_text(text)

    return mutate


def _lock_dir(run: Path) -> None:
    (run / ".nncli.lock").mkdir()


def _no_checkpoints(run: Path) -> None:
    shutil.rmtree(run / "checkpoints")


def _garbage_checkpoints(run: Path) -> None:
    for ckpt in (run / "checkpoints").glob("*.pt"):
        ckpt.write_bytes(b"not a checkpoint")


def _symlink_class_to_root(folder: Path) -> None:
    (folder / "photos" / "b").parent.mkdir(parents=True, exist_ok=True)
    os.symlink("/", folder / "photos" / "b")


def _regular_file(folder: Path) -> None:
    (folder / "afile").write_text("a file, not a folder\n")


# -- graph language -----------------------------------------------------------------------------
def graph_language() -> list[Case]:
    cases = []
    for i, path in enumerate(sorted(BROKEN.glob("*.yaml"))):
        text = path.read_bytes()
        files = {"spec.yaml": text, **{f"helpers/{h.name}": h.read_bytes() for h in (BROKEN / "helpers").iterdir()}}
        for command in ("check", "params"):
            fast = command == "check" and i % 12 == 0
            cases.append(
                Case(
                    f"broken-{command}-{path.stem}",
                    "graph language",
                    (command, "spec.yaml", "--json"),
                    ANY_CLEAN,
                    files,
                    fast=fast,
                )
            )
    cases += _expression_cases() + _token_cases() + _layer_argument_cases()
    return cases


def _expression_cases() -> list[Case]:
    exprs = {
        "nested-300": "(" * 300 + "4" + ")" * 300,
        "unary-1000": "-" * 1000 + "4",
        "pow-huge": "2 ** 10000",
        "mul-huge": "k * k * k * k * k * k * k * k",
        "div-zero": "4 // 0",
        "float": "1e308 * 10",
    }
    cases = []
    for name, expr in exprs.items():
        text = spec(f"  - Linear: {{out_features: '{expr}'}}", tail="vars: {k: 4294967296}\n")
        cases.append(
            Case(
                f"expr-{name}",
                "graph language",
                ("check", "spec.yaml", "--json"),
                REFUSED,
                {"spec.yaml": text},
                fast=name in ("nested-300", "unary-1000"),
            )
        )
    for name, value in {"inf": ".inf", "nan": ".nan", "huge": HUGE_INT, "2-64": SEED_2_64, "neg": "-5"}.items():
        text = spec("  - Linear: {out_features: a}", tail=f"vars: {{a: {value}}}\n")
        cases.append(
            Case(
                f"var-{name}",
                "graph language",
                ("params", "spec.yaml", "--json"),
                REFUSED,
                {"spec.yaml": text},
                fast=name in ("inf", "huge"),
            )
        )
    chain = "\n".join(f"  v{i + 1}: v{i} * v{i}" for i in range(33))
    text = spec("  - Linear: {out_features: 3}", tail=f"vars:\n  v0: 3\n{chain}\n")
    cases.append(
        Case(
            "var-square-chain",
            "graph language",
            ("check", "spec.yaml", "--json"),
            ANY_CLEAN,
            {"spec.yaml": text},
            fast=True,
        )
    )
    return cases


TOKEN_LAYERS = {
    "tanh-first": "  - Tanh\n  - Embedding: {embedding_dim: 4}\n  - Linear: {out_features: 128}",
    "dropout-first": "  - Dropout: {p: 0.1}\n  - Embedding: {embedding_dim: 4}\n  - Linear: {out_features: 128}",
    "relu-first": "  - ReLU\n  - Embedding: {embedding_dim: 4}\n  - Linear: {out_features: 128}",
    "identity-first": "  - Identity\n  - Embedding: {embedding_dim: 4}\n  - Linear: {out_features: 128}",
    "narrow-first": "  - Narrow: {dim: 1, start: 0, length: 8}\n  - Embedding: {embedding_dim: 4}\n  - Linear: {out_features: 128}",
    "parallel-add": "  - Parallel: {merge: add, branches: [[Identity], [Identity]]}\n  - Embedding: {embedding_dim: 4}\n  - Linear: {out_features: 128}",
    "parallel-mean": "  - Parallel: {merge: mean, branches: [[Identity], [Identity]]}\n  - Embedding: {embedding_dim: 4}\n  - Linear: {out_features: 128}",
    "embedding-ok": "  - Embedding: {embedding_dim: 4}\n  - Linear: {out_features: 128}",
}


def _token_cases() -> list[Case]:
    cases = []
    for name, layers in TOKEN_LAYERS.items():
        text = TOKENS.format(layers=layers)
        # layers that only move ids (Identity, Narrow) before the Embedding work everywhere
        works = name in ("embedding-ok", "identity-first", "narrow-first")
        expect = OK if works else REFUSED
        for command in ("check", "gradcheck", "probe", "export"):
            argv = (command, "spec.yaml", "--json")
            if command == "export":
                argv = ("export", "spec.yaml", "--format", "onnx", "-o", "m.onnx", "--json")
            exp = expect if command == "check" else (ANY_CLEAN if works else REFUSED)
            cases.append(
                Case(
                    f"token-{name}-{command}",
                    "graph language",
                    argv,
                    exp,
                    {"spec.yaml": text},
                    fast=command == "check" and name in ("tanh-first", "parallel-add"),
                )
            )
    return cases


def _layer_argument_cases() -> list[Case]:
    bad = {
        "attn-dropout-neg": ("input: [4, 8]", "  - SelfAttention: {num_heads: 2, dropout: -0.5}"),
        "attn-dropout-big": ("input: [4, 8]", "  - SelfAttention: {num_heads: 2, dropout: 1.5}"),
        "dropout-nan": ("input: [4]", "  - Dropout: {p: .nan}"),
        "linear-inf": ("input: [4]", "  - Linear: {out_features: .inf}"),
        "linear-huge-int": ("input: [4]", f"  - Linear: {{out_features: {HUGE_INT}}}"),
        "conv-stride-huge": ("input: [1, 8, 8]", f"  - Conv2d: {{out_channels: 2, kernel_size: 3, stride: {2**70}}}"),
        "softmax-batch": ("input: [4]", "  - Softmax: {dim: 0}"),
        "init-huge": ("input: [4]", "  - Linear: {out_features: 2, init: {weight: {normal: {std: 1e308}}}}"),
        "repeat-times-float": ("input: [4]", "  - Repeat: {times: 2.5, layers: [ReLU]}"),
    }
    cases = []
    for name, (head, layers) in bad.items():
        for command in ("check", "gradcheck"):
            cases.append(
                Case(
                    f"arg-{name}-{command}",
                    "graph language",
                    (command, "spec.yaml", "--json"),
                    REFUSED if command == "check" else ANY_CLEAN,
                    {"spec.yaml": spec(layers, head)},
                    fast=command == "check" and name.startswith("attn"),
                )
            )
    return cases


# -- resource bombs -----------------------------------------------------------------------------
def resource_bombs() -> list[Case]:
    repeat3 = "  - Repeat:\n      times: k\n      layers:\n        - Repeat:\n            times: k\n            layers:\n              - Repeat: {times: k, layers: [ReLU]}"
    bombs = {
        "repeat-billion": (spec("  - Repeat: {times: 1000000000, layers: [ReLU]}"), ("check",)),
        "repeat-nested-vars": (spec(repeat3, tail="vars: {k: 100}\n"), ("check", "params")),
        "width-huge": (spec("  - Linear: {out_features: 1000000000000}"), ("params", "gradcheck")),
        "width-billion-train": (
            spec(
                "  - Linear: {out_features: 100000000}\n  - Linear: {out_features: 100000000}",
                "input: [2]",
                "data: {name: moons, n: 100}\n",
            ),
            ("train",),
        ),
        "yaml-bomb": (
            "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "\n".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]"
                for i in range(9)
            )
            + "\ninput: [4]\nlayers: [ReLU]\n",
            ("check",),
        ),
        "input-huge": (spec("  - ReLU", "input: [100000, 100000, 100000]"), ("params", "gradcheck")),
        "spec-deep": (spec("  - " + "{Residual: {body: [" * 200 + "ReLU" + "]}}" * 200), ("check",)),
    }
    cases = []
    for name, (text, commands) in bombs.items():
        for command in commands:
            argv = (command, "spec.yaml", "--json")
            if command == "train":
                argv = ("train", "spec.yaml", "--out", "run", "--json", "--device", "cpu")
            # params counts a huge width without allocating it: a figure, not a refusal
            expect = ANY_CLEAN if (name, command) == ("width-huge", "params") else REFUSED
            cases.append(
                Case(
                    f"bomb-{name}-{command}",
                    "resource bombs",
                    argv,
                    expect,
                    {"spec.yaml": text},
                    fast=name in ("repeat-billion", "repeat-nested-vars", "yaml-bomb") and command == "check",
                )
            )
    mlp = {"spec.yaml": MLP}
    flags = {
        "sweep-depth-billion": (("probe", "spec.yaml", "--sweep-depth", "1000000000", "--json"), BAD),
        "probe-steps-huge": (("probe", "spec.yaml", "--steps", "1000000000000", "--json"), BAD),
        "probe-seeds-many": (("probe", "spec.yaml", "--seeds", ",".join(map(str, range(5000))), "--json"), BAD),
        "threads-100000": (
            ("train", "spec.yaml", "--threads", "100000", "--out", "run", "--json", "--device", "cpu"),
            ANY_CLEAN,
        ),
        "gradcheck-directions": (("gradcheck", "spec.yaml", "-k", "100000000", "--json"), BAD),
        "gradcheck-batch": (("gradcheck", "spec.yaml", "-b", "1000000000000", "--json"), BAD),
        "params-batch": (("params", "spec.yaml", "-b", "1000000000000000000000", "--json"), BAD),
        "epochs-huge": (("train", "spec.yaml", "--epochs", "100000000000000000000", "--out", "run", "--json"), BAD),
    }
    for name, (argv, expect) in flags.items():
        cases.append(Case(f"bomb-{name}", "resource bombs", argv, expect, mlp))
    cases.append(
        Case(
            "bomb-threads-env",
            "resource bombs",
            ("probe", "spec.yaml", "--json"),
            ANY_CLEAN,
            mlp,
            env={"NNCLI_THREADS": "100000"},
        )
    )
    workers = MLP.replace("noise: 0.1}", "noise: 0.1, workers: 10000, stream: true}")
    cases.append(
        Case(
            "bomb-data-workers",
            "resource bombs",
            ("train", "spec.yaml", "--out", "run", "--json"),
            REFUSED,
            {"spec.yaml": workers},
        )
    )
    return cases


# -- untrusted files ------------------------------------------------------------------------------
def untrusted_files() -> list[Case]:
    custom = spec("  - Custom: {target: 'layers.py:M'}", "input: [4]")
    escapes = {
        "abs-path": spec("  - Custom: {target: '/etc/passwd:M'}"),
        "dotdot": spec("  - Custom: {target: '../evil.py:M'}"),
        "module-os": spec("  - Custom: {target: 'os:system'}"),
        "python-tag": "input: [4]\nlayers: [!!python/object/apply:os.system ['true']]\n",
    }
    cases = []
    for name, text in escapes.items():
        for pre in ((), ("--no-custom",)):
            cases.append(
                Case(
                    f"escape-{name}{'-nocustom' if pre else ''}",
                    "untrusted files",
                    (*pre, "check", "spec.yaml", "--json"),
                    REFUSED,
                    {"spec.yaml": text, "evil.py": "raise SystemExit(99)\n"},
                    fast=name in ("dotdot", "python-tag") and not pre,
                )
            )
    bodies = {
        "prints": "import torch.nn as nn\nclass M(nn.Module):\n    def forward(self, x):\n        print('hello from user code')\n        return x\n",
        "prints-on-import": "import torch.nn as nn\nprint('import-time text')\nclass M(nn.Module):\n    def forward(self, x):\n        return x\n",
        "other-dtype": "import torch, torch.nn as nn\nclass M(nn.Module):\n    def forward(self, x):\n        return x.double()\n",
        "lazy-linear": "import torch.nn as nn\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.l = nn.LazyLinear(3)\n    def forward(self, x):\n        return self.l(x)\n",
        "ctrl-c": "import torch.nn as nn\nclass M(nn.Module):\n    def forward(self, x):\n        raise KeyboardInterrupt\n",
        "exits": "import torch.nn as nn\nclass M(nn.Module):\n    def forward(self, x):\n        raise SystemExit(0)\n",
        "recursion": "import torch.nn as nn\nclass M(nn.Module):\n    def forward(self, x):\n        return self.forward(x)\n",
    }
    for name, body in bodies.items():
        for command in ("check", "gradcheck", "params"):
            expect = ANY_CLEAN if name in ("prints", "prints-on-import") else REFUSED
            if name == "ctrl-c":
                expect = frozenset({1, 2, 130})
            cases.append(
                Case(
                    f"custom-{name}-{command}",
                    "untrusted files",
                    (command, "spec.yaml", "--json"),
                    expect,
                    {"spec.yaml": custom, "layers.py": body},
                    fast=command == "check" and name in ("prints", "ctrl-c", "lazy-linear"),
                )
            )
    cases += _crafted_files()
    return cases


def _crafted_files() -> list[Case]:
    header = json.dumps({"__metadata__": {"nncli.spec": "{not json"}}).encode()
    bad_st = len(header).to_bytes(8, "little") + header
    files = {
        "safetensors-bad-meta": ("export", bad_st),
        "pickle-checkpoint": ("ckpt", b"\x80\x04cos\nsystem\n(S'true'\ntR."),
    }
    cases = [
        Case(
            "crafted-spec-binary",
            "untrusted files",
            ("check", "spec.yaml", "--json"),
            REFUSED,
            {"spec.yaml": os.urandom(0) + bytes(range(256))},
        ),
        Case(
            "crafted-spec-huge-line",
            "untrusted files",
            ("check", "spec.yaml", "--json"),
            REFUSED,
            {"spec.yaml": "input: [4]\nlayers: [" + "ReLU, " * 200000 + "]\n"},
        ),
        Case("crafted-spec-dir", "untrusted files", ("check", "spec.yaml", "--json"), REFUSED, {"spec.yaml/x": "x"}),
        Case(
            "crafted-safetensors-load",
            "untrusted files",
            ("check", "m.safetensors", "--json"),
            REFUSED,
            {"m.safetensors": files["safetensors-bad-meta"][1]},
        ),
    ]
    cases.append(
        Case(
            "crafted-pickle-resume",
            "untrusted files",
            ("train", "spec.yaml", "--resume", "run", "--json"),
            REFUSED,
            setup=with_run(
                lambda r: [p.write_bytes(files["pickle-checkpoint"][1]) for p in (r / "checkpoints").glob("*.pt")]
            ),
        )
    )
    return cases


# -- data ------------------------------------------------------------------------------------------
def data() -> list[Case]:
    rows = "\n".join(f"{i * 0.1},{i * 0.2},{i % 2}" for i in range(40))
    csvs = {
        "labels-n1": ("npz", "labels_n1"),  # [N, 1] integer labels read as [N]
        "labels-n2": ("npz", "labels_n2"),
        "nan-features": ("csv", "a,b,label\n" + rows.replace("0.2,", "nan,", 3) + "\n"),
        "inf-features": ("csv", "a,b,label\n" + rows.replace("0.2,", "inf,", 3) + "\n"),
        "empty": ("csv", ""),
        "header-only": ("csv", "a,b,label\n"),
        "ragged": ("csv", "a,b,label\n1,2,0\n1,2\n"),
        "huge-label": ("csv", "a,b,label\n" + rows + f"\n1,2,{HUGE_INT}\n"),
        "label-2-64": ("csv", "a,b,label\n" + rows + f"\n1,2,{SEED_2_64}\n"),
        "binary": ("csv", bytes(range(256)) * 10),
    }
    cases = []
    for name, (kind, content) in csvs.items():
        files = {"spec.yaml": MLP.replace("{name: moons, n: 200, noise: 0.1}", f"{{path: d.{kind}}}")}
        setup = None
        if kind == "npz":
            setup = _npz_labels(2 if name.endswith("n2") else 1)
        else:
            files["d.csv"] = content
        cases.append(
            Case(
                f"data-{name}-train",
                "data",
                ("train", "spec.yaml", "--out", "run", "--json"),
                OK if name == "labels-n1" else REFUSED,  # [N, 1] integer labels are read as [N]
                files,
                setup=setup,
            )
        )
        cases.append(
            Case(
                f"data-{name}-probe",
                "data",
                ("probe", "spec.yaml", "--data", f"d.{kind}", "--json"),
                ANY_CLEAN,
                files,
                setup=setup,
            )
        )
    img = {"photos/a/x.png": _png()}
    img_spec = "name: img\ninput: [3, 8, 8]\nlayers:\n  - Flatten\n  - Linear: {out_features: 2}\ndata: {path: photos/, resize: 8}\ntrain: {epochs: 1, batch_size: 2}\n"
    cases.append(
        Case(
            "data-image-class-symlink-root",
            "data",
            ("train", "spec.yaml", "--out", "run", "--json"),
            REFUSED,
            {"spec.yaml": img_spec, **img},
            setup=_symlink_class_to_root,
        )
    )
    for w in ("10000", "-1", "1.5", "many"):
        text = MLP.replace("noise: 0.1}", f"noise: 0.1, workers: {w}}}")
        cases.append(
            Case(
                f"data-workers-{w}",
                "data",
                ("check", "spec.yaml", "--json"),
                ANY_CLEAN if w == "10000" else REFUSED,
                {"spec.yaml": text},
                fast=w == "-1",
            )
        )
        cases.append(
            Case(
                f"data-workers-{w}-train",
                "data",
                ("train", "spec.yaml", "--out", "run", "--json"),
                REFUSED,
                {"spec.yaml": text},
            )
        )
    return cases


def _npz_labels(width: int) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        import numpy as np

        x = np.random.default_rng(0).normal(size=(40, 2)).astype("float32")
        y = (np.arange(40 * width).reshape(40, width) % 2).astype("int64")
        np.savez(folder / "d.npz", x=x, y=y)

    return setup


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()


# -- the command line -----------------------------------------------------------------------------
def cli() -> list[Case]:
    mlp = {"spec.yaml": MLP}
    seeds = {
        "train": ("train", "spec.yaml", "--out", "run", "--seed", SEED_2_64, "--json"),
        "diagram": ("diagram", "spec.yaml", "--weights", "--seed", SEED_2_64, "-o", "d.dot", "--json"),
        "gradcheck": ("gradcheck", "spec.yaml", "--seed", SEED_2_64, "--json"),
        "probe": ("probe", "spec.yaml", "--seeds", SEED_2_64, "--json"),
        "export": ("export", "spec.yaml", "--seed", SEED_2_64, "-o", "m.safetensors", "--json"),
        "sweep": ("sweep", "sweep.yaml", "--seed", SEED_2_64, "--dry-run", "--json"),
        "probe-neg": ("probe", "spec.yaml", "--seeds", "-1", "--json"),
    }
    sweep_file = "base: spec.yaml\ngrid:\n  train.lr: [0.1, 0.2]\n"
    cases = [
        Case(f"seed-{name}", "CLI", argv, BAD, {**mlp, "sweep.yaml": sweep_file}, fast=name in ("gradcheck", "probe"))
        for name, argv in seeds.items()
    ]
    spec_seed = MLP.replace("seed: 3", f"seed: {SEED_2_64}")
    cases.append(
        Case("seed-spec-check", "CLI", ("check", "spec.yaml", "--json"), REFUSED, {"spec.yaml": spec_seed}, fast=True)
    )
    cases.append(
        Case("seed-spec-train", "CLI", ("train", "spec.yaml", "--out", "run", "--json"), BAD, {"spec.yaml": spec_seed})
    )
    cases.append(
        Case(
            "seed-set-train",
            "CLI",
            ("train", "spec.yaml", "--set", f"train.seed={SEED_2_64}", "--out", "run", "--json"),
            BAD,
            mlp,
        )
    )
    cases.append(Case("seed-attack", "CLI", ("attack", "run", "--seed", SEED_2_64, "--json"), BAD, setup=with_run()))
    writers = {
        "train": ("train", "spec.yaml", "--out", "{out}", "--json"),
        "diagram": ("diagram", "spec.yaml", "-o", "{out}/d.svg", "--json"),
        "export": ("export", "spec.yaml", "-o", "{out}/m.onnx", "--json"),
        "sweep": ("sweep", "sweep.yaml", "--out", "{out}", "--json"),
        "probe-plot": ("probe", "spec.yaml", "--plot", "{out}/p.png", "--json"),
    }
    for name, argv in writers.items():
        for where, out in (("under-file", "afile/run"), ("proc", "/proc/nncli-x")):
            words = tuple(w.replace("{out}", out) for w in argv)
            cases.append(
                Case(
                    f"out-{where}-{name}",
                    "CLI",
                    words,
                    BAD,
                    {**mlp, "sweep.yaml": sweep_file},
                    setup=_regular_file,
                    fast=name == "diagram" and where == "proc",
                )
            )
    for name, argv in {
        "predict-out": ("predict", "run", "x.csv", "-o", "afile/p.csv", "--json"),
        "attack-save": ("attack", "run", "--save", "afile/a.npz", "--json"),
        "attack-plot": ("attack", "run", "--plot", "/proc/nncli-x/a.png", "--json"),
        "attack-eps-huge": ("attack", "run", "--eps", "1e300", "--json"),
        "attack-eps-inf": ("attack", "run", "--eps", "inf", "--json"),
        "attack-eps-nan": ("attack", "run", "--eps", "nan", "--json"),
        "attack-range-huge": ("attack", "run", "--range=-1e300,1e300", "--json"),
        "attack-range-nan": ("attack", "run", "--range", "nan,1", "--json"),
        "attack-eps-many": ("attack", "run", "--eps", ",".join(["0.1"] * 5000), "--json"),
    }.items():
        files = {"x.csv": "0.1,0.2\n0.3,0.4\n"}
        cases.append(Case(f"cli-{name}", "CLI", argv, BAD, files, setup=_run_and_file))
    sets = {
        "recursive-alias": ("check", "spec.yaml", "--set", "layers=&a [*a]", "--json"),
        "alias-in-set": ("check", "spec.yaml", "--set", "train.lr=*x", "--json"),
        "bad-path": ("check", "spec.yaml", "--set", "layers.99.x=1", "--json"),
        "huge-int": ("check", "spec.yaml", "--set", f"train.epochs={HUGE_INT}", "--json"),
        "nan-lr": ("train", "spec.yaml", "--set", "train.lr=.nan", "--out", "run", "--json"),
        "sweep-dry-nope": ("sweep", "sweep.yaml", "--dry-run", "--set", "train.nope=1", "--json"),
        "sweep-dry-nope-plain": ("sweep", "sweep.yaml", "--dry-run", "--set", "train.nope=1"),
    }
    for name, argv in sets.items():
        cases.append(
            Case(
                f"set-{name}",
                "CLI",
                argv,
                REFUSED,
                {**mlp, "sweep.yaml": sweep_file},
                fast=name in ("recursive-alias", "huge-int"),
            )
        )
    cases += _flag_cases(mlp)
    return cases


def _run_and_file(folder: Path) -> None:
    with_run()(folder)
    _regular_file(folder)


def _flag_cases(mlp: dict) -> list[Case]:
    flags = {
        "unknown-command": ("nope", "--json"),
        "unknown-flag": ("check", "spec.yaml", "--nope", "--json"),
        "missing-spec": ("check", "missing.yaml", "--json"),
        "spec-is-dir": ("check", ".", "--json"),
        "batch-zero": ("params", "spec.yaml", "-b", "0", "--json"),
        "depth-negative": ("params", "spec.yaml", "--depth", "-1", "--json"),
        "max-params-junk": ("params", "spec.yaml", "--max-params", "12Q", "--json"),
        "max-params-inf": ("params", "spec.yaml", "--max-params", "inf", "--json"),
        "lr-nan": ("train", "spec.yaml", "--lr", "nan", "--out", "run", "--json"),
        "lr-inf": ("train", "spec.yaml", "--lr", "inf", "--out", "run", "--json"),
        "gradcheck-eps-zero": ("gradcheck", "spec.yaml", "--eps", "0", "--json"),
        "gradcheck-rtol-nan": ("gradcheck", "spec.yaml", "--rtol", "nan", "--json"),
        "probe-ratio-nan": ("probe", "spec.yaml", "--min-ratio", "nan", "--json"),
        "device-junk": ("probe", "spec.yaml", "--device", "tpu:9", "--json"),
        "evaluate-not-run": ("evaluate", "spec.yaml", "--json"),
        "compare-nothing": ("compare", "nope", "--json"),
        "export-format": ("export", "spec.yaml", "-f", "pkl", "--json"),
        "port-huge": (
            "train",
            "spec.yaml",
            "--nproc-per-node",
            "2",
            "--master-port",
            "99999999",
            "--out",
            "run",
            "--json",
        ),
    }
    return [
        Case(
            f"flag-{name}",
            "CLI",
            argv,
            REFUSED,
            mlp,
            fast=name in ("unknown-flag", "spec-is-dir", "max-params-inf", "batch-zero"),
        )
        for name, argv in flags.items()
    ]


# -- runs and faults ------------------------------------------------------------------------------
def runs_and_faults() -> list[Case]:
    edits = {
        "spec-string": _write("run.yaml", "spec: x\n"),
        "run-yaml-list": _write("run.yaml", "- 1\n- 2\n"),
        "run-yaml-binary": lambda r: (r / "run.yaml").write_bytes(bytes(range(256))),
        "report-list": _write("report.json", "[]"),
        "report-junk": _write("report.json", "{not json"),
        "report-huge-int": _write("report.json", '{"epochs": ' + HUGE_INT + "}"),
        "lock-dir": _lock_dir,
        "lock-junk": _write(".nncli.lock", "\x00\x01garbage"),
        "no-checkpoints": _no_checkpoints,
        "garbage-checkpoints": _garbage_checkpoints,
    }
    commands = {
        "evaluate": ("evaluate", "run", "--json"),
        "predict": ("predict", "run", "x.csv", "--json"),
        "attack": ("attack", "run", "--limit", "8", "--json"),
        "export": ("export", "run", "-o", "m.onnx", "--json"),
        "compare": ("compare", "run", "run", "--json"),
        "resume": ("train", "spec.yaml", "--resume", "run", "--json"),
    }
    cases = []
    for edit, mutate in edits.items():
        for name, argv in commands.items():
            # a reader may ignore the file that was edited; a resume must not go ahead without its checkpoint
            expect = REFUSED if name == "resume" and edit in ("no-checkpoints", "garbage-checkpoints") else ANY_CLEAN
            fast = (edit, name) in (("report-list", "evaluate"), ("spec-string", "export"))
            cases.append(
                Case(
                    f"run-{edit}-{name}",
                    "runs and faults",
                    argv,
                    expect,
                    {"x.csv": "0.1,0.2\n"},
                    setup=with_run(mutate),
                    fast=fast,
                )
            )
    # a finished run resumed: nothing to do, exit 0, its report untouched
    cases.append(
        Case(
            "run-resume-finished",
            "runs and faults",
            ("train", "spec.yaml", "--resume", "run", "--json"),
            OK,
            setup=with_run(),
        )
    )
    cases.append(
        Case(
            "run-sigterm-train",
            "runs and faults",
            ("train", "spec.yaml", "--out", "run", "--epochs", "200", "--json"),
            frozenset({0, 130}),
            {"spec.yaml": MLP},
            signal_after=3.5,
        )
    )
    cases.append(
        Case(
            "run-sigterm-early",
            "runs and faults",
            ("train", "spec.yaml", "--out", "run", "--json"),
            frozenset({0, 130}),
            {"spec.yaml": MLP},
            signal_after=0.8,
        )
    )
    cases.append(
        Case(
            "run-train-ok", "runs and faults", ("train", "spec.yaml", "--out", "run", "--json"), OK, {"spec.yaml": MLP}
        )
    )
    token_spec = TOKENS.format(layers=TOKEN_LAYERS["embedding-ok"])
    cases.append(
        Case(
            "run-attack-token",
            "runs and faults",
            ("attack", "run", "--limit", "8", "--json"),
            REFUSED,
            setup=with_run(text=token_spec, name="tokens"),
        )
    )
    return cases


CATEGORIES = {
    "graph language": graph_language,
    "resource bombs": resource_bombs,
    "untrusted files": untrusted_files,
    "data": data,
    "CLI": cli,
    "runs and faults": runs_and_faults,
}


def all_cases() -> list[Case]:
    cases = [case for make in CATEGORIES.values() for case in make()]
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return cases


def fast_cases() -> list[Case]:
    return [c for c in all_cases() if c.fast]
