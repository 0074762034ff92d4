"""The night's cost estimate on EMR: EMR's own instance-hour count at the configured price."""

import pytest

from fruits.night_facts import drift_facts, emr_cost_estimate

pytestmark = pytest.mark.unit


class DescribedCluster:  # DescribeCluster's response shape (moto always counts 0 hours)
    def describe_cluster(self, ClusterId):  # noqa: N803 (boto3's argument name)
        return {"Cluster": {"Id": ClusterId, "NormalizedInstanceHours": 48}}


def test_the_cost_is_the_clusters_normalized_hours_at_the_price():
    # 3 x m5.2xlarge (16 units each) for one started hour = 48 normalized hours.
    assert emr_cost_estimate(DescribedCluster(), "j-1", 0.0328) == {
        "emr_cluster_id": "j-1",
        "emr_normalized_instance_hours": 48,
        "emr_cost_estimate_usd": 1.57,
    }


def test_the_drift_facts_are_the_night_reports_headline():
    metrics = {
        "evaluations": {
            "prequential_night": {"accuracy": 0.9},
            "prequential_history": {"accuracy": 0.95},
        }
    }
    report = {
        "photos": {"quarantine_rate": 0.01},
        "classes": {"new": ["kiwi", "lime"]},
        "mean_shift": {
            "overall": {"in_spreads": 0.3},
            "per_class": {"apple": {"in_spreads": 0.2}, "pear": {"in_spreads": 1.4}},
        },
    }
    assert drift_facts(metrics, report) == {
        "accuracy_prequential": 0.9,
        "accuracy_prequential_history": 0.95,
        "quarantine_rate": 0.01,
        "classes_new": 2,
        "mean_shift_overall": 0.3,
        "mean_shift_max_class": "pear",
        "mean_shift_max": 1.4,
    }
    # The first night: no model before it, no history to move from.
    metrics["evaluations"]["prequential_night"] = None
    first = drift_facts(metrics, {**report, "mean_shift": None})
    assert first["accuracy_prequential"] is None
    assert first["mean_shift_max_class"] is None and first["mean_shift_overall"] is None
