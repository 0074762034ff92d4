"""A night's figures, for the Assets page: read from the outputs' own manifest, report and metrics.

Each night's Asset events carry them (`extra`), so the Assets page lists every night's photos,
quarantine, PCA, accuracy and drift (the night report's headline) without opening a file; on
EMR also what the cluster cost.
"""

from __future__ import annotations

import json
from typing import Any

from fruits import lake_layout as layout
from fruits.config import RunConfig


def figure_keys(config: RunConfig) -> dict[str, str]:
    """The lake keys of the files holding a night's figures: featurize's manifest, pca's report,
    classify's metrics and night report (the first three mark their outputs complete)."""
    pca = f"{config.run_prefix}/{layout.PCA}"
    classify = f"{config.run_prefix}/{layout.CLASSIFY}"
    return {
        "manifest": f"{config.features_partition_prefix}/{layout.FEATURES_COMPLETE}",
        "pca_report": f"{pca}/{layout.PCA_COMPLETE}",
        "metrics": f"{classify}/{layout.CLASSIFY_COMPLETE}",
        "night_report": f"{classify}/{layout.REPORT}",
    }


def night_facts(s3_hook, config: RunConfig) -> dict[str, Any]:
    """Read before publishing: a night whose outputs lack them is not published."""
    keys = figure_keys(config)

    def read(name: str) -> dict[str, Any]:
        return json.loads(s3_hook.read_key(keys[name], bucket_name=config.lake_bucket))

    manifest, report = read("manifest"), read("pca_report")
    metrics, night = read("metrics"), read("night_report")
    return {
        "photos_new": manifest["counts"]["read"],
        "photos_featurized": manifest["counts"]["featurized"],
        "photos_quarantined": manifest["counts"]["quarantined"],
        "training_rows_fitted": report["rows"]["fitted"],  # the history's, through its statistics
        "nights": len(report["nights"]),
        "pca_k": report["k"],
        "explained_variance": report["explained_variance_at_k"],
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        **drift_facts(metrics, night),
    }


def drift_facts(metrics: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """The night report's headline: did the previous model still hold on tonight's photos, what
    is new, how far the classes moved (classify's metrics.json and report.json)."""
    evaluations = metrics["evaluations"]
    prequential = evaluations["prequential_night"]
    shift = report["mean_shift"] or {}  # None on the first night: no history to compare with
    overall, moved = shift.get("overall"), shift.get("per_class", {})
    farthest = max(moved, key=lambda label: moved[label]["in_spreads"] or 0, default=None)
    return {
        "accuracy_prequential": None if prequential is None else prequential["accuracy"],
        "accuracy_prequential_history": evaluations["prequential_history"]["accuracy"],
        "quarantine_rate": report["photos"]["quarantine_rate"],
        "classes_new": len(report["classes"]["new"]),
        "mean_shift_overall": None if overall is None else overall["in_spreads"],
        "mean_shift_max_class": farthest,
        "mean_shift_max": None if farthest is None else moved[farthest]["in_spreads"],
    }


def emr_cost_estimate(emr_client, cluster_id: str, usd_per_normalized_hour: float) -> dict:
    """EMR's own count of the cluster's normalized instance-hours so far, at a stated price:
    an estimate (AWS bills per second; EMR rounds each instance's hours up)."""
    cluster = emr_client.describe_cluster(ClusterId=cluster_id)["Cluster"]
    hours = cluster.get("NormalizedInstanceHours", 0)
    return {
        "emr_cluster_id": cluster_id,
        "emr_normalized_instance_hours": hours,
        "emr_cost_estimate_usd": round(hours * usd_per_normalized_hour, 2),
    }
