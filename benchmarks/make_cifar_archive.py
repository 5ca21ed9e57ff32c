"""Write ``cifar-10-python.tar.gz`` (the release's python format) from an ImageFolder of images.

For machines that cannot download CIFAR-10 but hold its images in another form, such as the
shared JPEGs (``cifar10-jpg/train/<class>/*.jpg`` and ``test/<class>/*.jpg``). The archive goes
into DATA_DIR, where ``archbench run --dataset cifar10 --data-dir DATA_DIR`` finds it, reads it
through torchvision's reader and sees exactly the pixels ``--dataset imagefolder:FOLDER`` does
(warning once that the files are not the official release's). Rows are shuffled with
``--shuffle-seed`` as the release's are; each row's ``filenames`` entry is its source file.

    tar -xzf ../shared/data/cifar10-jpg.tar.gz -C /tmp
    python benchmarks/make_cifar_archive.py /tmp/cifar10-jpg ~/.cache/archbench/data

Exit status 0 on success, 2 for bad input.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from archbench.data.cifar_archive import CIFAR10_FOLDER, cifar10_from_imagefolder  # noqa: E402
from archbench.errors import ArchbenchError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="ImageFolder root with train/ and test/")
    parser.add_argument("data_dir", type=Path, help="where to write cifar-10-python.tar.gz")
    parser.add_argument(
        "--shuffle-seed",
        type=int,
        default=0,
        help="seed of the rows' random order (default 0); -1 keeps the folder's order",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace an archive or extracted folder already there"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        existing = [
            path
            for path in (args.data_dir / "cifar-10-python.tar.gz", args.data_dir / CIFAR10_FOLDER)
            if path.exists()
        ]
        if existing and not args.force:
            raise ArchbenchError(
                f"{existing[0]} exists; pass --force to replace the archive and the extracted "
                f"{CIFAR10_FOLDER}/ (which archbench reads before the archive)"
            )
        if (args.data_dir / CIFAR10_FOLDER).exists():
            shutil.rmtree(args.data_dir / CIFAR10_FOLDER)
        seed = None if args.shuffle_seed == -1 else args.shuffle_seed
        path = cifar10_from_imagefolder(args.folder, args.data_dir, shuffle_seed=seed)
    except ArchbenchError as error:
        print(f"make_cifar_archive: error: {error}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
