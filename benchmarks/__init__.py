"""Benchmarks that print their figures; each runs its baseline in the same run."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE_DIR = SHARED / "data" / "fruits360-sample"
PRETRAINED_WEIGHTS = SHARED / "models" / "mobilenet_v2_1.0_pretrained_no_top.weights.h5"


def add_data_arguments(parser) -> None:
    """--images and --weights, defaulting to the shared real sample and pretrained backbone."""
    parser.add_argument("--images", type=Path, default=SAMPLE_DIR)
    parser.add_argument("--weights", type=Path, default=PRETRAINED_WEIGHTS)
