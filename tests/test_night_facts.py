"""The night's cost estimate on EMR: EMR's own instance-hour count at the configured price."""

import pytest

from fruits.night_facts import emr_cost_estimate

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
