"""Explanations of a bundle's scores: exact contributions (:mod:`.contributions`), as
``shap.Explanation`` objects for ``shap.plots`` (:mod:`.shap_values`), reasons, what-ifs and
one firm's report."""

from lgml.explain.shap_values import by_dimension, shap_explanation

__all__ = ["by_dimension", "shap_explanation"]
