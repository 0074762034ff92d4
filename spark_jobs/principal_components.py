"""Principal components from the Training rows' moments: the eigendecomposition, how many to
keep, and the model as plain numbers (`basis.npz`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moments import Moments, npz_bytes


@dataclass(frozen=True)
class PrincipalComponents:
    std: np.ndarray | None  # each feature's standard deviation, when standardized
    mean: np.ndarray  # the Training rows' mean, in the space PCA sees (scaled or not)
    components: np.ndarray  # d x k_max, one component per column, by explained variance
    explained_variance: list[float]


def principal_components(moments: Moments, k_max: int, standardize: bool) -> PrincipalComponents:
    """Eigendecomposition of the Training rows' covariance (numpy's LAPACK, on the driver).

    Not `pyspark.ml.feature.PCA.fit`: on real MobileNetV2 features (rank-deficient, dead all-zero
    channels) its driver-side SVD returned wrong components that changed from run to run (the
    first explaining 4-6% of the variance instead of 26-31%). The result is still a Spark ML
    `PCAModel` (`ml_models.spark_pipeline`)."""
    covariance, mean, std = moments.covariance(), moments.mean, None
    if standardize:  # the correlation matrix: each feature divided by its standard deviation
        std = np.sqrt(np.clip(np.diag(covariance), 0, None))
        scale = np.divide(1.0, std, out=np.zeros_like(std), where=std > 0)  # constant: 0, as Spark
        covariance, mean = covariance * np.outer(scale, scale), mean * scale
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1][:k_max]
    eigenvalues = np.clip(eigenvalues, 0, None)
    return PrincipalComponents(
        std=std,
        mean=mean,
        components=eigenvectors[:, order],
        explained_variance=(eigenvalues[order] / eigenvalues.sum()).tolist(),
    )


def plain_basis(pcs: PrincipalComponents, training_mean: np.ndarray, k: int) -> bytes:
    """The model of `spark_pipeline` as numbers numpy reads without Spark (`basis.npz`):
    `pca_features = ((features - mean) * scale) @ components`, the same values the
    PipelineModel gives (its scaler divides by std, 0 for a constant feature)."""
    scale = np.ones_like(training_mean)
    if pcs.std is not None:
        scale = np.divide(1.0, pcs.std, out=np.zeros_like(pcs.std), where=pcs.std > 0)
    return npz_bytes(
        {
            "components": pcs.components[:, :k],
            "mean": training_mean,
            "scale": scale,
            "explained_variance": np.asarray(pcs.explained_variance[:k]),
        }
    )


def choose_k(cumulative: list[float], variance: float) -> int:
    """The fewest components whose cumulative explained variance reaches the target."""
    for k, reached in enumerate(cumulative, start=1):
        if reached >= variance - 1e-9:
            return k
    return len(cumulative)


def check_k(k: int, feature_size: int, rows: int) -> None:
    if k > feature_size:
        raise SystemExit(f"pca: k={k} exceeds the feature size ({feature_size})")
    if k > rows:
        raise SystemExit(f"pca: k={k} exceeds the number of Training rows ({rows})")
