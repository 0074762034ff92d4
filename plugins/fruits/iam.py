"""The least-privilege IAM policies in iam/, rendered for one account.

    python -m fruits.iam airflow-role LAKE_BUCKET=fruits-lake REGION=eu-west-1 \
        ACCOUNT_ID=123456789012

prints the policy document with every `${PLACEHOLDER}` filled, and refuses to print one left empty.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

POLICIES = Path(__file__).resolve().parents[2] / "iam"
PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")


def render(name: str, values: dict[str, str]) -> dict:
    text = (POLICIES / f"{name}.json").read_text()
    missing = sorted(set(PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise SystemExit(f"{name}: give a value for {', '.join(missing)}")
    return json.loads(PLACEHOLDER.sub(lambda m: values[m.group(1)], text))


def main(argv: list[str]) -> None:
    name, *assignments = argv
    values = dict(assignment.split("=", 1) for assignment in assignments)
    print(json.dumps(render(name, values), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
