"""Seed a running local lake (for docker compose): bucket, photos, weights, fruits_config.

    python -m localdev.seed --s3-endpoint URL [--images DIR] [--date D] [--weights FILE]

Lands the photos under landing/<date>/ (default today: the night a run triggered today processes).

Prints the `fruits_config` JSON to give to `airflow variables set fruits_config`.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

from localdev import lake
from localdev.emulators import Endpoints
from localdev.run_pipeline import BUNDLED_SAMPLE, find_weights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--s3-endpoint", required=True)
    parser.add_argument("--images", type=Path, default=BUNDLED_SAMPLE)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--date", default=date.today().isoformat())
    args = parser.parse_args(argv)

    s3 = lake.s3_client(Endpoints(s3_url=args.s3_endpoint, blob_url=""))
    if lake.LAKE_BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        lake.create_lake(s3)
    lake.land_photos(s3, args.images, args.date)
    weights_uri, sha256 = lake.upload_weights(s3, find_weights(args.weights))
    print(json.dumps(lake.fruits_config(weights_uri, sha256)))


if __name__ == "__main__":
    main()
