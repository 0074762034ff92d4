#!/bin/bash
# EMR bootstrap action, run on every node before Spark starts: a Python 3.11 virtualenv holding
# exactly spark_jobs/requirements.lock (every package pinned with its sha256), which spark-env
# points PySpark at. The wheels come from the wheelhouse in S3 (make wheelhouse), never from PyPI:
# a node needs no route to the internet, and every cluster installs the same bytes.
#   install_requirements.sh s3://<lake>/code/<bundle>/requirements.lock s3://<lake>/code/wheelhouse/<lock>
set -euo pipefail
lock_uri="$1"
wheelhouse_uri="$2"
venv=/opt/fruits-venv
wheels="$(mktemp -d)"

sudo dnf install -y -q python3.11 python3.11-pip
sudo python3.11 -m venv "$venv"
aws s3 cp --only-show-errors "$lock_uri" "$wheels/requirements.lock"
aws s3 cp --only-show-errors --recursive --exclude "*" --include "*.whl" "$wheelhouse_uri/" "$wheels/"
if ! compgen -G "$wheels/*.whl" >/dev/null; then
    echo "No wheels under $wheelhouse_uri: upload them with 'make wheelhouse BUCKET=<lake bucket>'" >&2
    exit 1
fi
sudo "$venv/bin/pip" install --quiet --no-index --find-links "$wheels" \
    --require-hashes --no-deps -r "$wheels/requirements.lock"
rm -rf "$wheels"
