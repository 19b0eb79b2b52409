"""The statistics of ``compare``, on per-case Dice (a ``(case x model)`` frame, one mean Dice over labels per case):
paired differences with their bootstrap interval and Wilcoxon test, Holm's correction, the rank distribution over
bootstrap resamples of the cases, and the pairwise significance matrix. scipy and statsmodels do the statistics;
every resampling is seeded, so a report does not change between runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: bootstrap resamples of a confidence interval, and the seed of every resampling
BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED = 10_000, 0
#: bootstrap resamples of the rank distribution (challengeR's default is 1000)
RANK_RESAMPLES = 1000


def holm(p_values: list[float]) -> list[float]:
    """Holm-corrected p-values (statsmodels), in the order given."""
    from statsmodels.stats.multitest import multipletests

    return list(multipletests(p_values, method="holm")[1]) if p_values else []


def paired_difference(model: pd.Series, reference: pd.Series) -> dict[str, float]:
    """``model - reference`` on the same cases: the mean difference, its bootstrap 95% confidence interval (scipy,
    :data:`BOOTSTRAP_RESAMPLES`, seeded) and Wilcoxon's signed-rank p-value (scipy)."""
    from scipy import stats

    difference = (model - reference).to_numpy()
    interval = stats.bootstrap((difference,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=0.95,
                               random_state=BOOTSTRAP_SEED).confidence_interval
    return {"difference": float(difference.mean()), "CI 95% low": float(interval.low),
            "CI 95% high": float(interval.high), "Wilcoxon p": float(stats.wilcoxon(model, reference).pvalue)}


def rank_distribution(per_case: pd.DataFrame, resamples: int = RANK_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> pd.DataFrame:
    """How often each model takes each rank over ``resamples`` bootstrap resamples of the cases, as challengeR
    ranks (per resample: aggregate, the mean Dice over the drawn cases, then rank, 1 = best, ties sharing the
    better rank). ``(model x rank)`` frequencies in [0, 1], rows summing to 1, models in the order given."""
    generator = np.random.default_rng(seed)
    values = per_case.to_numpy()
    n_cases, n_models = values.shape
    counts = np.zeros((n_models, n_models))
    for _ in range(resamples):
        means = values[generator.integers(0, n_cases, n_cases)].mean(axis=0)
        ranks = pd.Series(-means).rank(method="min").to_numpy().astype(int)
        counts[np.arange(n_models), ranks - 1] += 1
    return pd.DataFrame(counts / resamples, index=per_case.columns, columns=range(1, n_models + 1))


def significance_matrix(per_case: pd.DataFrame) -> pd.DataFrame:
    """Every pair of models: Wilcoxon's signed-rank p-value on their common cases, Holm-corrected over all pairs;
    a symmetric ``(model x model)`` frame with NaN on the diagonal."""
    from scipy import stats

    models = list(per_case.columns)
    pairs = [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]
    corrected = holm([float(stats.wilcoxon(per_case[a], per_case[b]).pvalue) for a, b in pairs])
    matrix = pd.DataFrame(np.nan, index=models, columns=models)
    for (a, b), p in zip(pairs, corrected):
        matrix.loc[a, b] = matrix.loc[b, a] = p
    return matrix
