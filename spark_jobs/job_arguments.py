"""The command-line arguments pca, classify and project share, written once: the features
root and the nights, checked as dates."""

from __future__ import annotations

import argparse
from datetime import date


def add_features_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, help="root of featurize's nightly partitions")


def add_night(parser: argparse.ArgumentParser, flag: str, meaning: str) -> None:
    parser.add_argument(flag, required=True, help=f"{meaning} (YYYY-MM-DD)")


def check_nights(parser: argparse.ArgumentParser, parsed: argparse.Namespace, *flags: str) -> None:
    """Each night flag holds a date; argparse's error (exit 2) naming the flag otherwise."""
    for flag in flags:
        value = getattr(parsed, flag.lstrip("-").replace("-", "_"))
        try:
            date.fromisoformat(value)
        except ValueError:
            parser.error(f"{flag} {value!r} is not a date (YYYY-MM-DD)")


def folder(uri: str) -> str:
    """A folder's URI as the jobs join it: no trailing slash."""
    return uri.rstrip("/")
