#!/bin/bash
# EMR bootstrap action, run on every node before Spark starts:
# a Python 3.11 virtualenv holding spark_jobs/requirements.txt, which spark-env points PySpark at.
#   install_requirements.sh s3://<lake>/code/<hash>/requirements.txt
set -euo pipefail
requirements_uri="$1"
venv=/opt/fruits-venv

sudo dnf install -y -q python3.11 python3.11-pip
sudo python3.11 -m venv "$venv"
aws s3 cp --only-show-errors "$requirements_uri" /tmp/fruits-requirements.txt
sudo "$venv/bin/pip" install --quiet --upgrade pip
sudo "$venv/bin/pip" install --quiet -r /tmp/fruits-requirements.txt
