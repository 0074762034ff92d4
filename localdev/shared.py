"""The shared real data beside the repository, `../shared/` (or $FRUITS_SHARED_DIR): the sample
photos and the pretrained MobileNetV2 backbone that the local run, the tests and the benchmarks
use."""

from __future__ import annotations

import os
from pathlib import Path

from localdev.emulators import REPO

SHARED = Path(os.environ.get("FRUITS_SHARED_DIR", REPO.parent / "shared"))
SAMPLE_DIR = SHARED / "data" / "fruits360-sample"
PRETRAINED_WEIGHTS = SHARED / "models" / "mobilenet_v2_1.0_pretrained_no_top.weights.h5"
