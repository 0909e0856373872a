"""lgml's exact TreeSHAP contributions as a ``shap.Explanation``, so that ``shap.plots.*``
(waterfall, beeswarm, bar, scatter...) work on them in a notebook, per feature or per
专精特新 dimension.

shap is imported inside the functions: it is heavy and the CLI never needs it.

Example:
    >>> from lgml.explain import by_dimension, shap_explanation  # doctest: +SKIP
    >>> expl = shap_explanation(bundle, table)  # doctest: +SKIP
    >>> shap.plots.waterfall(expl[0]); shap.plots.beeswarm(by_dimension(expl))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from lgml.explain.contributions import contributions, group_contributions
from lgml.modeling.matrix import lightgbm_matrix

# shap's slicer walks object arrays value by value (~2 s per million values, on building the
# Explanation and again on every slice), so readable display data is kept to smaller tables.
DISPLAY_MAX_VALUES = 500_000


def shap_explanation(bundle: Any, table: pd.DataFrame, *, display_data: bool | None = None) -> Any:
    """Exact TreeSHAP contributions of every model feature as a ``shap.Explanation``.

    The values are :func:`lgml.explain.contributions.contributions` (compiled kernels on large
    tables, checked against LightGBM's ``pred_contrib``), in the model's **raw** units, before
    calibration: log-odds for designation, log growth for growth. Each row adds up to
    ``bundle.predict_raw(table)`` (additivity is checked to 1e-6): for designation that raw
    score includes the level-adjustment trees (``level_adjust.by``, their contributions fall on
    that feature) but not the calibrator nor a count refit (``lgml score
    --expected-designations``); for growth it is the relative growth, without the year's level
    (:meth:`lgml.modeling.bundle.Bundle.growth_level`).

    Args:
        bundle: A loaded :class:`lgml.modeling.bundle.Bundle`.
        table: Feature table of shape (n_rows, >= n_features), e.g.
            :func:`lgml.features.build_features` output.
        display_data: Attach the readable input (below). None (default) does so when the
            table has at most :data:`DISPLAY_MAX_VALUES` values (n_rows x n_features, about
            5,600 rows of the default feature set): shap stores it as an object array, which
            costs about 2 s per million values to build and again on every slice
            (``expl[0]``). Beeswarm, bar and heatmap plots do not use it.

    Returns:
        ``shap.Explanation`` with

        * ``values``: float array of shape (n_rows, n_features), raw units;
        * ``base_values``: float array of shape (n_rows,), the model's expected raw score;
        * ``data``: float array of shape (n_rows, n_features), the matrix the booster predicts
          from (:meth:`~lgml.modeling.bundle.Bundle.model_matrix`): numbers as floats,
          categoricals as codes of the model's category levels (0, 1, ... in the order of
          ``bundle.categorical_levels``), NaN missing; it colours beeswarm and scatter plots;
        * ``display_data``: object array of the same shape, the model input with categoricals as
          their levels (e.g. ``"Jiangsu"``), numbers as floats; waterfall, bar (one row) and
          scatter plots print it. None when not attached (see ``display_data``): plots then
          show the codes;
        * ``feature_names``: ``bundle.features`` (so ``expl[:, "rd_intensity"]`` works; for
          readable labels set ``expl.feature_names = [lgml.vocabulary.feature_label(f) for f
          in expl.feature_names]``, after any :func:`by_dimension`, which needs the names).

        Group the features into 专精特新 dimensions with :func:`by_dimension`.

    Raises:
        lgml.modeling.bundle.BundleInputError: ``table`` does not fit the model.
        lgml.explain.contributions.AdditivityError: Contributions do not add up.

    Example:
        >>> expl = shap_explanation(bundle, table)  # doctest: +SKIP
        >>> shap.plots.waterfall(expl[0])  # doctest: +SKIP
    """
    import shap

    frame = bundle.prepare(table)
    matrix = lightgbm_matrix(frame, bundle.booster.pandas_categorical)
    contrib, base = contributions(bundle, frame, matrix=matrix)
    if display_data is None:
        display_data = frame.size <= DISPLAY_MAX_VALUES
    display = frame.astype(object).where(frame.notna(), np.nan).to_numpy() if display_data else None
    return shap.Explanation(values=contrib.to_numpy(dtype=float, copy=True), base_values=np.asarray(base, dtype=float),
                            data=matrix, display_data=display, feature_names=list(bundle.features))


def by_dimension(explanation: Any, groups: Mapping[str, str] | None = None) -> Any:
    """Contributions summed per 专精特新 dimension, as a ``shap.Explanation`` whose features are
    the dimensions, so ``shap.plots.bar``, ``beeswarm`` and ``waterfall`` show dimensions.

    Args:
        explanation: A ``shap.Explanation`` of one or more rows from :func:`shap_explanation`
            (values of shape (n_rows, n_features) or (n_features,), feature names set).
        groups: Feature -> group; default :data:`lgml.vocabulary.FEATURE_DIMENSIONS`.
            Features with no group are summed under ``other``.

    Returns:
        ``shap.Explanation`` with ``values`` of shape (n_rows, n_groups) (or (n_groups,) for one
        row), same units; the columns of
        :func:`lgml.explain.contributions.group_contributions` (the dimensions of
        :data:`lgml.vocabulary.DIMENSIONS` in order, then ``other`` if needed) as
        ``feature_names``; the same ``base_values``, so each row still adds up to the raw
        score. ``data`` is None: a dimension has no single input value (beeswarm points are
        then drawn in one colour).

    Raises:
        ValueError: The explanation has no feature names or more than two dimensions.
    """
    import shap

    names = explanation.feature_names
    values = np.asarray(explanation.values, dtype=float)
    if names is None or values.ndim not in (1, 2):
        raise ValueError("by_dimension needs an explanation of shape (n_rows, n_features) or (n_features,) "
                         "with feature names (shap_explanation output)")
    grouped = group_contributions(pd.DataFrame(np.atleast_2d(values), columns=list(names)), groups)
    out = grouped.to_numpy()
    return shap.Explanation(values=out[0] if values.ndim == 1 else out, base_values=explanation.base_values,
                            feature_names=list(grouped.columns))
