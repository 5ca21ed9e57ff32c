"""Which torchvision classification networks work in archbench at 32x32 with 10 classes?

For every builder ``torchvision.models.list_models(module=torchvision.models)`` lists, this does
what ``archbench run``/``profile`` do with ``--arch torchvision.models:NAME`` on a 32x32 dataset:
build it (random init, 10 classes), run it on 3x32x32 input and check the logits' shape, export
it to ONNX (opset 17) and check ONNX Runtime against PyTorch on real digits test images. It
prints a markdown table of which pass and, for the others, the stage and the reason.

    nice python benchmarks/torchvision_sweep.py --max-params 100e6 --csv sweep.csv

Networks whose ImageNet version has more than ``--max-params`` parameters (from torchvision's
weights metadata, so nothing is built) are listed as skipped: building and exporting a 300-600M
parameter ViT or RegNet takes minutes and gigabytes on a small machine, and an ONNX file over
2 GB cannot be written without external data. Not part of CI.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from archbench.data import DataConfig, load_data, normalize
from archbench.measure.export import check_parity, export_onnx
from architectures import ArchitectureError, arch_info, check_output, create_arch, list_archs

INPUT_SHAPE = (3, 32, 32)
NUM_CLASSES = 10


@dataclass
class SweepRow:
    name: str
    status: str  # pass | fail | skipped
    stage: str  # where it stopped: build, forward, export, parity (or "" when it passed)
    params: int | None
    seconds: float
    reason: str = ""


def imagenet_params(name: str) -> int | None:
    """Parameter count of the network's first ImageNet weights, as torchvision records it."""
    import torchvision.models

    try:
        weights = next(iter(torchvision.models.get_model_weights(name)))
        return int(weights.meta["num_params"])
    except (KeyError, StopIteration, ValueError):
        return None


def sweep_one(reference: str, samples: torch.Tensor, workdir: Path, max_params: float) -> SweepRow:
    started = time.perf_counter()
    short = reference.split(":", 1)[1]

    def row(status: str, stage: str, params: int | None, reason: str = "") -> SweepRow:
        seconds = round(time.perf_counter() - started, 1)
        return SweepRow(short, status, stage, params, seconds, " ".join(reason.split())[:160])

    known = imagenet_params(short)
    if known is not None and known > max_params:
        return row("skipped", "", None, f"{known / 1e6:.0f}M ImageNet params > cap")
    torch.manual_seed(0)
    try:
        model = create_arch(reference, num_classes=NUM_CLASSES).eval()
    except ArchitectureError as error:
        return row("fail", "build", None, str(error))
    params = sum(p.numel() for p in model.parameters())
    try:
        shape = arch_info(reference).input_shape(INPUT_SHAPE)  # as archbench run feeds it
        check_output(model, reference, shape, NUM_CLASSES)
    except ArchitectureError as error:
        return row("fail", "forward", params, str(error).replace(f"{reference} ", ""))
    path = workdir / f"{short}.onnx"
    exported = export_onnx(model, path, input_shape=(1, *shape))
    if not exported.ok:
        return row("fail", "export", params, exported.error or "")
    parity = check_parity(model, path, samples)
    path.unlink(missing_ok=True)
    if not parity.ok:
        return row("fail", "parity", params, parity.reason or "")
    return row("pass", "", params)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default="*", help="pattern over torchvision names")
    parser.add_argument(
        "--max-params",
        type=float,
        default=100e6,
        help="skip networks with more ImageNet parameters than this (default 100e6)",
    )
    parser.add_argument("--samples", type=int, default=32, help="parity images (default 32)")
    parser.add_argument("--csv", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    data = load_data(DataConfig(dataset="digits", val_fraction=0))
    samples = normalize(data.test.images[: args.samples], data.mean, data.std)
    if samples.shape[1] != INPUT_SHAPE[0]:
        samples = samples.expand(-1, INPUT_SHAPE[0], -1, -1).contiguous()  # grayscale -> RGB
    names = [
        name
        for name in list_archs("torchvision.models:*")
        if fnmatch.fnmatchcase(name.split(":", 1)[1], args.archs)
    ]
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            rows.append(sweep_one(name, samples, Path(workdir), args.max_params))
            last = rows[-1]
            print(f"{last.name}: {last.status} {last.stage} {last.reason}", file=sys.stderr)
    print("| network | result | stage | params (10 classes) | s | reason |")
    print("|---|---|---|---:|---:|---|")
    for r in rows:
        params = f"{r.params:,}" if r.params is not None else ""
        print(f"| {r.name} | {r.status} | {r.stage} | {params} | {r.seconds} | {r.reason} |")
    counts = {
        status: sum(r.status == status for r in rows) for status in ("pass", "fail", "skipped")
    }
    print(f"\n{len(rows)} networks: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(asdict(rows[0])))
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
