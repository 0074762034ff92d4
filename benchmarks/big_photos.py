"""Phone photos of 12 to 200 Mpx: the Python workers' memory, and how close a reduced-scale JPEG
decode comes to a full one.

    python -m benchmarks.big_photos [--photos 6] [--cores 2] [--images DIR] [--weights FILE]

Makes JPEGs from the real Fruits-360 photos (nothing is committed): one fruit photo enlarged to
phone size (smooth: what a close-up is), the same with sensor-like grain, and a mosaic of
hundreds of real photos (all detail: the largest files, 30-50 MB at 200 Mpx), baseline and
progressive. Then, in the same run:

1. `featurize.py` (spark-submit, local[N], the local platform's options) on `--photos` 200 Mpx
   photos, and, as the baseline, on as many ordinary Fruits-360 photos. Printed: the peak RSS of
   one Python worker and of all of them (sampled), seconds, and that every photo was featurized.
2. The job's features of each photo (decoded at 1/8 scale, then resized) against plain Keras on
   a full-size decode of the same file (benchmarks/keras_reference.py): cosine similarity.
3. Decoding one 200 Mpx photo in this process: the job's decode against a full decode (seconds,
   peak memory of the decode).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from benchmarks import REPO, add_data_arguments
from benchmarks.featurize import spark_submit
from benchmarks.keras_reference import cosine_rows, keras_features

PHONE_SIZES = {"200 Mpx": (16320, 12240), "48 Mpx": (8000, 6000), "12 Mpx": (4000, 3000)}
WORKER_BUDGET_MB = 1536


def fruit_photos(images: Path) -> list[Path]:
    return sorted(images.rglob("*.jpg"))


def close_up(photo: Path, size: tuple[int, int]) -> Image.Image:
    """One real 100x100 fruit photo enlarged to the phone's size, bicubic: smooth, like a
    close-up whose detail the lens did not resolve."""
    return Image.open(photo).convert("RGB").resize(size, Image.BICUBIC)


def with_grain(image: Image.Image, seed: int) -> Image.Image:
    """Sensor-like noise (sigma 6 levels), row block by row block to bound this process."""
    pixels = np.asarray(image).copy()
    rng = np.random.default_rng(seed)
    for top in range(0, pixels.shape[0], 1024):
        block = pixels[top : top + 1024].astype(np.int16)
        block += rng.normal(0, 6, block.shape).astype(np.int16)
        pixels[top : top + 1024] = np.clip(block, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def mosaic(photos: list[Path], size: tuple[int, int], start: int) -> Image.Image:
    """Real photos side by side, 100x100 each: as much detail as a photo can hold."""
    width, height = size
    canvas = Image.new("RGB", size)
    tiles = [Image.open(p).convert("RGB").resize((100, 100)) for p in photos[start : start + 400]]
    index = 0
    for top in range(0, height, 100):
        for left in range(0, width, 100):
            canvas.paste(tiles[index % len(tiles)], (left, top))
            index += 1
    return canvas


def make_photos(photos: list[Path], target: Path, count: int) -> dict[str, Path]:
    """name -> file: `count` photos of 200 Mpx (kinds in turn) and one of each kind at 12 and 48
    Mpx."""
    target.mkdir(parents=True)
    made: dict[str, Path] = {}

    def save(name: str, image: Image.Image, **options) -> None:
        made[name] = target / f"{name}.jpg"
        image.save(made[name], "JPEG", quality=92, **options)

    for label, size in PHONE_SIZES.items():
        kinds = ["close-up", "grain", "mosaic", "mosaic progressive"]
        for number in range(count if label == "200 Mpx" else len(kinds)):
            kind = kinds[number % len(kinds)]
            seed_photo = photos[(97 * number + len(label)) % len(photos)]
            if kind == "close-up":
                image = close_up(seed_photo, size)
            elif kind == "grain":
                image = with_grain(close_up(seed_photo, size), number)
            else:
                image = mosaic(photos, size, (400 * number) % max(1, len(photos) - 400))
            save(f"{label} {kind} {number}", image, progressive="progressive" in kind)
            image.close()
    return made


def run_job(images: Path, output: Path, weights: Path, cache: Path, cores: int):
    started = time.perf_counter()
    _, sampler = spark_submit(
        REPO / "spark_jobs" / "featurize.py",
        ["--input", str(images), "--output", str(output), "--weights", str(weights)]
        + ["--model-cache", str(cache)],
        f"local[{cores}]",
    )
    seconds = time.perf_counter() - started
    counts = json.loads((output / "_manifest.json").read_text())["counts"]
    return counts, seconds, sampler.peak_one / 2**20, sampler.peak_total / 2**20


DECODE = """
import io, sys, time
sys.path.insert(0, {spark_jobs!r})
import decoding
from PIL import Image
Image.MAX_IMAGE_PIXELS = None
content = open({path!r}, "rb").read()
started = time.perf_counter()
if {how!r} == "job":
    decoding.decode_image(content, 224)
else:
    with Image.open(io.BytesIO(content)) as image:
        image.convert("RGB").resize((224, 224), Image.BILINEAR)
# VmHWM, not ru_maxrss: a process started from this one inherits this one's maximum RSS
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(time.perf_counter() - started, int(peak.split()[1]) / 1024)
"""


def decode_in_process(path: Path) -> dict[str, tuple[float, float]]:
    """Seconds, and peak RSS (MB) of a fresh process that only imports the job and decodes
    the file: the job's decode against a full decode."""
    results = {}
    for name, how in (("reduced scale (the job's)", "job"), ("full size", "full")):
        code = DECODE.format(spark_jobs=str(REPO / "spark_jobs"), path=str(path), how=how)
        output = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        results[name] = (float(output[-2]), float(output[-1]))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_arguments(parser)
    parser.add_argument("--photos", type=int, default=6, help="200 Mpx photos in the job's run")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args(argv)
    Image.MAX_IMAGE_PIXELS = None  # this process makes and fully decodes 200 Mpx photos

    photos = fruit_photos(args.images)
    with tempfile.TemporaryDirectory(prefix="bench-big-photos-") as scratch:
        root = Path(scratch)
        made = make_photos(photos, root / "made", args.photos)
        big = root / "big"
        big.mkdir()
        for name, path in made.items():
            if name.startswith("200 Mpx"):
                shutil.copy(path, big / path.name)
        ordinary = root / "ordinary"
        ordinary.mkdir()
        for path in photos[: len(list(big.iterdir()))]:
            shutil.copy(path, ordinary / path.name)

        cache = root / "model-cache"
        baseline = run_job(ordinary, root / "ordinary-out", args.weights, cache, args.cores)
        ours = run_job(big, root / "big-out", args.weights, cache, args.cores)
        smaller = root / "smaller"
        smaller.mkdir()
        for name, path in made.items():
            if not name.startswith("200 Mpx"):
                shutil.copy(path, smaller / path.name)
        run_job(smaller, root / "smaller-out", args.weights, cache, args.cores)
        job = {}
        for output in ("big-out", "smaller-out"):
            table = pq.read_table(root / output, columns=["path", "features"]).to_pydict()
            job |= {Path(p).stem: np.asarray(v) for p, v in zip(table["path"], table["features"])}
        names = sorted(made)
        reference = keras_features([made[name] for name in names], args.weights)
        cosine = cosine_rows(np.stack([job[name] for name in names]), reference)
        sizes = {name: made[name].stat().st_size / 2**20 for name in names}
        decoding = decode_in_process(made[max(names, key=lambda n: sizes[n])])

    print(f"\nBig photos — Spark local[{args.cores}], {args.photos} photos of 200 Mpx per job")
    print(f"{'job':34} {'featurized':>10} {'seconds':>8} {'peak worker MB':>15} {'all MB':>8}")
    for label, (counts, seconds, one, total) in (
        (f"{args.photos} ordinary photos (baseline)", baseline),
        (f"{args.photos} photos of 200 Mpx", ours),
    ):
        done = f"{counts['featurized']}/{counts['read']}"
        print(f"{label:34} {done:>10} {seconds:8.1f} {one:15.0f} {total:8.0f}")
    print(
        f"peak worker with 200 Mpx photos: {ours[2] / baseline[2]:.2f}x the baseline's, "
        f"{ours[2]:.0f} MB of the {WORKER_BUDGET_MB} MB budget"
    )
    print("\ncosine, job (reduced-scale decode) vs plain Keras on a full decode:")
    for name, value in zip(names, cosine):
        print(f"  {name:34} {sizes[name]:6.1f} MB  {value:.6f}")
    print(f"  min {cosine.min():.6f}, median {np.median(cosine):.6f}")
    print("\ndecoding the largest file in a process of its own (seconds, its peak RSS):")
    for name, (seconds, memory) in decoding.items():
        print(f"  {name:26} {seconds:6.2f} s {memory:8.0f} MB")


if __name__ == "__main__":
    main()
