"""How good are the features? featurize -> pca -> classify on the real sample, two ways.

    python -m benchmarks.quality [--images DIR] [--weights FILE]

Runs the three jobs as the pipeline does (spark-submit, local[2]) on the shared Fruits-360
sample, landed as one night, with the pretrained weights (PCA fitted on the Training folders,
the classifier scored on the Test folders), then PCA again with k=2 (the seed notebook's
choice), and prints the classifier's accuracy on the Test folders for each, with the components
kept and the variance they explain. The classifier reads the 1280 features, not the PCA's
(`spark_jobs/discriminant.py`): k no longer moves its accuracy. Target: >= 0.95 accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks import REPO, add_data_arguments
from fruits.local_platform import spark_submit


def run(job: str, *arguments: str) -> None:
    script = str(REPO / "spark_jobs" / f"{job}.py")
    command = ["spark-submit", "--master", "local[2]", "--driver-memory", "4g", script, *arguments]
    spark_submit(command, lambda line: None, job)


NIGHT = "2026-11-25"  # the sample as one night of the lake


def pca_then_classify(features: Path, output: Path, *pca_choice: str) -> dict:
    vectors = output / "vectors" / f"ingest_date={NIGHT}"
    run(
        "pca",
        *("--features", str(features), "--until", NIGHT, "--output", str(output / "pca")),
        *("--moments", str(output / "moments"), "--vectors", str(vectors), *pca_choice),
    )
    run(
        "classify",
        *("--features", str(features), "--until", NIGHT, "--pca", str(output / "pca")),
        *("--moments", str(output / "moments"), "--output", str(output / "classify")),
    )
    report = json.loads((output / "pca" / "report.json").read_text())
    metrics = json.loads((output / "classify" / "metrics.json").read_text())
    return {
        "k": report["k"],
        "variance": report["explained_variance_at_k"],
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "test_rows": metrics["counts"]["Test"],
        "split_rule": metrics["split_rule"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_arguments(parser)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-quality-") as scratch:
        features = Path(scratch, "features")
        run(
            "featurize",
            *("--input", str(args.images), "--output", str(features / f"ingest_date={NIGHT}")),
            *("--weights", str(args.weights)),
        )
        results = {
            "95% variance": pca_then_classify(features, Path(scratch, "v95"), "--variance", "0.95"),
            "k = 2 (seed notebook)": pca_then_classify(features, Path(scratch, "k2"), "--k", "2"),
        }
    print(f"\nFeature quality — {args.images} ({results['95% variance']['test_rows']} Test images)")
    print(f"{'PCA':24} {'k':>5} {'variance':>9} {'accuracy':>9} {'macro F1':>9}")
    for name, r in results.items():
        print(
            f"{name:24} {r['k']:5d} {r['variance']:9.3f} {r['accuracy']:9.4f} {r['macro_f1']:9.4f}"
        )
    print(f"split rule: {results['95% variance']['split_rule']}")
    target = results["95% variance"]["accuracy"] >= 0.95
    print(f"target accuracy >= 0.95 at 95% variance: {'met' if target else 'NOT met'}")
    sys.exit(0 if target else 1)


if __name__ == "__main__":
    main()
