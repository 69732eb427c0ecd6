"""Benchmark image-folder training: `nncli train` on `data: {path: folder/}` against a
hand-written PIL + DataLoader loop over the same folder, with 0 and 2 DataLoader workers.

Run: .venv/bin/python tests/benchmarks/bench_images.py [--size 32] [--epochs 2] [--threads 1]

The folder is scikit-learn's 1,797 digits written as PNGs (upscaled to --size x --size,
grayscale), one folder per class. Both sides train the same network (the hand loop takes the
nn.Sequential nncli builds from the spec with the same seed) with Adam, batch 64, on the same
training split (nncli's, so the same files), decoding every image from disk every epoch:
nncli with `stream: true` (batches through its DataLoader), the hand loop with the Dataset a
user writes (PIL open, convert, to float, normalise) and `DataLoader(shuffle=True)`.

Reported: training examples per second (the epochs' wall time, validation excluded on both
sides: nncli's samples_per_s, the hand loop timed around its epochs) and the ratio nncli / hand
per worker count; also nncli's default for a folder this small (decoded once into memory), for
what a user gets without `stream: true`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from record import Record  # this folder: the script's own

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SPEC = """
name: bench-images
input: [1, SIZE, SIZE]
layers:
  - Conv2d: {out_channels: 8, kernel_size: 3, padding: 1}
  - ReLU
  - MaxPool2d: {kernel_size: 4}
  - Flatten
  - Linear: {out_features: 10}
data: {path: FOLDER}
train: {loss: cross_entropy, optimizer: adam, lr: 0.003, batch_size: 64, epochs: EPOCHS, seed: 0}
"""


def make_folder(root: Path, size: int) -> Path:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    scale = size // 8
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        pixels = np.round(np.kron(image, np.ones((scale, scale))) * 255 / 16).astype(np.uint8)
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "L").save(root / str(label) / f"{i:04d}.png")
    return root


class PilFolder:
    """The Dataset a user writes: one file per item, PIL decode, [0, 1], normalised."""

    def __init__(self, files, labels, mean, std):
        self.files, self.labels, self.mean, self.std = files, labels, mean, std

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        import numpy as np
        import torch
        from PIL import Image

        with Image.open(self.files[i]) as image:
            x = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32) / 255)[None]
        return (x - self.mean) / self.std, int(self.labels[i])


def hand_loop(spec, files, labels, mean, std, epochs: int, workers: int) -> float:
    """Training examples per second of the hand-written loop."""
    import torch
    from torch.utils.data import DataLoader

    from nncli.build import build_model

    model = build_model(spec, seed=0).model
    opt = torch.optim.Adam(model.parameters(), lr=0.003)
    loader = DataLoader(
        PilFolder(files, labels, mean, std),
        batch_size=64,
        shuffle=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(0),
    )
    seen = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(y)
    return seen / (time.perf_counter() - t0)


def main(rec: Record) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from nncli.data import load_dataset, resolve_data_config
    from nncli.spec import parse_spec
    from nncli.train import run_training

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp) / "digits", args.size)
        text = SPEC.replace("SIZE", str(args.size)).replace("FOLDER", str(folder)).replace("EPOCHS", str(args.epochs))
        (Path(tmp) / "spec.yaml").write_text(text)
        spec = parse_spec(text)
        # the training split nncli uses, as files: the hand loop reads exactly these
        ds = load_dataset(resolve_data_config({"path": str(folder), "stream": True}), input_shape=spec.input)
        files, labels = ds.x_train.files, ds.y_train.numpy()
        print(
            f"{len(files)} training images of {args.size}x{args.size}, {args.epochs} epochs, "
            f"{args.threads} torch thread(s)"
        )
        title = (
            f"{len(files):,} training images of {args.size}x{args.size}, {args.epochs} epochs, "
            f"{args.threads} torch thread(s), training examples per second"
        )
        rec.table(
            title,
            "nncli train streaming an image folder vs a hand-written PIL + DataLoader loop; "
            "ratio = nncli / hand (> 1: nncli faster)",
        )
        rows = []
        for workers in (0, 2):
            hand = hand_loop(spec, files, labels, ds.mean, ds.std, args.epochs, workers)
            result = run_training(
                Path(tmp) / "spec.yaml",
                {"data.stream": True, "data.workers": workers},
                Path(tmp) / f"run-{workers}",
                device="cpu",
            )
            rows.append((workers, result.samples_per_s, hand))
            rec.row(
                title,
                nncli_route=f"streamed, {workers} DataLoader workers",
                nncli=result.samples_per_s,
                hand=hand,
                ratio=result.samples_per_s / hand,
            )
            print(
                f"workers {workers}: nncli streamed {result.samples_per_s:,.0f} examples/s, "
                f"hand PIL+DataLoader {hand:,.0f} examples/s, ratio {result.samples_per_s / hand:.2f}",
                flush=True,
            )
        memory = run_training(Path(tmp) / "spec.yaml", None, Path(tmp) / "run-memory", device="cpu")
        rec.row(
            title,
            nncli_route="default for this folder: decoded once into memory (hand: 0 workers)",
            nncli=memory.samples_per_s,
            hand=rows[0][2],
            ratio=memory.samples_per_s / rows[0][2],
        )
        print(
            f"nncli default for this folder (decoded once into memory): {memory.samples_per_s:,.0f} examples/s, "
            f"{memory.samples_per_s / rows[0][2]:.1f}x the hand loop with 0 workers"
        )


if __name__ == "__main__":
    with Record("images", __doc__) as record:
        main(record)
