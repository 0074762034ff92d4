"""Print an IAM policy rendered from a `fruits_config` file (docs/deploy-aws.md, step 6):

    PYTHONPATH=plugins .venv/bin/python -m localdev.policies airflow-role fruits_config.json

The policies themselves are `fruits.iam`'s.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fruits.config import ConfigError, parse_variable
from fruits.iam import DOCUMENTS, config_from_variable, render


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] not in DOCUMENTS:
        raise SystemExit(
            f"usage: python -m localdev.policies {{{'|'.join(DOCUMENTS)}}} fruits_config.json"
        )
    name, variable_file = argv
    try:
        config = config_from_variable(parse_variable(Path(variable_file).read_text()))
        print(json.dumps(render(name, config), indent=2))
    except ConfigError as error:
        raise SystemExit(str(error)) from None


if __name__ == "__main__":
    main(sys.argv[1:])
