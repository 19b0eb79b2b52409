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
#: the fewest common cases with which a paired difference gets its bootstrap interval. Below it the resamples are
#: drawn from so few values that the interval is far too narrow (2 cases give 3 distinct resampled means: an
#: interval "excluding 0" while Wilcoxon's p is 0.5), and the exact Wilcoxon test cannot reach p < 0.05 below 6
#: cases (its smallest two-sided p is 2 / 2^n); 10 is where a percentile-type interval of a mean starts to be
#: usable, and where 5-fold cross-validation gives 2 validation cases per fold
MIN_CASES_FOR_INTERVAL = 10


def holm(p_values: list[float]) -> list[float]:
    """Holm-corrected p-values (statsmodels), in the order given."""
    from statsmodels.stats.multitest import multipletests

    return list(multipletests(p_values, method="holm")[1]) if p_values else []


def paired_difference(model: pd.Series, reference: pd.Series) -> dict[str, float]:
    """``model - reference`` on the same cases: the mean difference, its bootstrap 95% confidence interval (scipy,
    :data:`BOOTSTRAP_RESAMPLES`, seeded; NaN below :data:`MIN_CASES_FOR_INTERVAL` cases) and Wilcoxon's
    signed-rank p-value (scipy)."""
    from scipy import stats

    difference = (model - reference).to_numpy()
    low = high = float("nan")
    if len(difference) >= MIN_CASES_FOR_INTERVAL:
        interval = stats.bootstrap((difference,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=0.95,
                                   random_state=BOOTSTRAP_SEED).confidence_interval
        low, high = float(interval.low), float(interval.high)
    return {"difference": float(difference.mean()), "CI 95% low": low, "CI 95% high": high,
            "Wilcoxon p": float(stats.wilcoxon(model, reference).pvalue)}


def too_few_cases_message(cases: int) -> str | None:
    """What the report says where ``cases`` common cases are too few for an interval (None where they are not)."""
    if cases >= MIN_CASES_FOR_INTERVAL:
        return None
    reachable = "" if cases >= 6 else f"; with {cases} cases Wilcoxon's test cannot reach p < 0.05 (smallest p: " \
                                      f"{2 / 2 ** cases:.3g})"
    return (f"only {cases} common cases: no bootstrap 95% CI below {MIN_CASES_FOR_INTERVAL} cases (its interval "
            f"would be far too narrow){reachable}; validate more folds to compare with confidence")


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
