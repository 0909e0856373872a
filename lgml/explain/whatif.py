"""What would have to change: the smallest actionable change that lifts a firm to a target."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lgml.vocabulary import INSTITUTION_LEVELS, format_value, money, pct, pct_threshold


# ------------------------------------------------------------------------------------------------
# Counterfactual: what would have to change
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """A change a firm can make, on its panel rows.

    Attributes:
        name: Short key, e.g. ``rd_intensity``.
        feature: The model feature the change moves (for monotone directions).
        direction: +1 if the change raises that feature, -1 if it lowers it.
        label: What the firm does, in words.
    """

    name: str
    feature: str
    direction: int
    label: str


ACTIONS: tuple[Action, ...] = (
    Action("rd_intensity", "rd_intensity", 1, "raise R&D spending"),
    Action("rd_staff", "rd_staff_share", 1, "add R&D staff"),
    Action("class1_ip", "class1_ip", 1, "obtain more Class-I IP (invention patents)"),
    Action("mb_share", "mb_share", 1, "concentrate on the main business"),
    Action("debt_ratio", "debt_ratio", -1, "reduce debt"),
    Action("certification", "quality_certified", 1, "obtain a management or product certification"),
    Action("own_brand", "own_brand", 1, "establish an own brand"),
    Action("digital_level", "digital_level", 1, "raise the digital level"),
    Action("rd_institution", "rd_institution_level", 1, "set up or upgrade an R&D institution"),
    Action("niche_share", "niche_market_share", 1, "grow the national niche market share"),
)
# Realistic limits: the ladder of targets each change may reach, and how far it may move.
RD_LADDER = (0.03, 0.04, 0.05, 0.06, 0.08, 0.10, 0.12)
RD_MAX_RISE = 0.06  # at most +6 pp of revenue
STAFF_LADDER = (0.05, 0.10, 0.20, 0.30, 0.50)
STAFF_MAX_RISE = 0.20
CLASS1_STEPS = (1, 2, 3, 5)
MB_LADDER = (0.60, 0.70, 0.80, 0.90)
MB_MAX_RISE = 0.25
DEBT_LADDER = (0.70, 0.60, 0.50)
DEBT_MAX_CUT = 0.25
DIGITAL_MAX = 5
NICHE_LADDER = (0.01, 0.05, 0.10, 0.15, 0.20)
NICHE_MAX_RISE = 0.10


@dataclass(frozen=True)
class Change:
    """One step: an action taken to a given size.

    Attributes:
        action: :attr:`Action.name`.
        before: The firm's value before (in ``unit``).
        after: The value after.
        unit: ``pct``, ``count``, ``level``, ``flag`` or ``institution``.
        effort: Rungs moved on the action's ladder (1 = the nearest).
        text: The change in words.
    """

    action: str
    before: float
    after: float
    unit: str
    effort: int
    text: str


@dataclass
class Counterfactual:
    """Outcome of :func:`counterfactual`.

    Attributes:
        firm_id, year: The firm and fiscal year (the application is for batch ``year + 1``).
        target: Target calibrated probability (0-1).
        probability_before, probability_after: Calibrated probabilities (0-1).
        raw_before, raw_after: Model scores in log-odds.
        eligible_before, eligible_after: Every Little Giant criterion of batch ``year + 1`` met.
        reached: Whether the changes reach the goal.
        goal: ``probability`` (target reached), ``eligible`` (became eligible), ``already``
            (no change needed) or None (not reached).
        changes: The changes, smallest set found first by count, then by size.
        message: One plain sentence saying what was found.
    """

    firm_id: str
    year: int
    target: float
    probability_before: float
    probability_after: float
    raw_before: float
    raw_after: float
    eligible_before: bool
    eligible_after: bool
    reached: bool
    goal: str | None
    changes: list[Change] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (probabilities 0-1, raw scores in log-odds)."""
        return {
            "firm_id": self.firm_id, "year": self.year, "target": self.target,
            "probability_before": self.probability_before, "probability_after": self.probability_after,
            "raw_before": self.raw_before, "raw_after": self.raw_after,
            "eligible_before": self.eligible_before, "eligible_after": self.eligible_after,
            "reached": self.reached, "goal": self.goal, "message": self.message,
            "changes": [{"action": c.action, "before": _finite(c.before), "after": _finite(c.after), "unit": c.unit,
                         "text": c.text} for c in self.changes],
        }


def _finite(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _f(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


# Each proposer takes the firm's rows (fiscal years <= Y, sorted, last = Y) and yields
# (Change, edit) pairs; ``edit`` returns edited copies of the rows. Only raising moves.
Edit = Callable[[pd.DataFrame], pd.DataFrame]


def _last(rows: pd.DataFrame, col: str) -> float:
    return _f(rows[col].iloc[-1])


def _set_last(col: str, value: Any) -> Edit:
    def edit(rows: pd.DataFrame) -> pd.DataFrame:
        out = rows.copy()
        out.iloc[-1, out.columns.get_loc(col)] = value
        return out
    return edit


def _propose_rd(rows: pd.DataFrame) -> list[tuple[Change, Edit]]:
    recent = rows.iloc[-2:]
    revenue = recent["revenue"].to_numpy(dtype=float)
    rd = recent["rd_expense"].to_numpy(dtype=float, na_value=np.nan)
    if not np.all(revenue > 0):
        return []
    intensity = np.nan_to_num(rd / revenue, nan=0.0)
    weaker = float(intensity.min())
    rungs = [r for r in RD_LADDER if weaker < r - 1e-9 and r <= weaker + RD_MAX_RISE + 1e-9]
    out = []
    for effort, r in enumerate(rungs, start=1):
        extra = np.maximum(r * revenue - np.nan_to_num(rd), 0.0)

        def edit(frame: pd.DataFrame, r: float = r) -> pd.DataFrame:
            res = frame.copy()
            pos = [res.columns.get_loc("rd_expense"), res.columns.get_loc("revenue")]
            for i in range(max(0, len(res) - 2), len(res)):
                cur, rev = _f(res.iat[i, pos[0]]), _f(res.iat[i, pos[1]])
                res.iat[i, pos[0]] = max(0.0 if np.isnan(cur) else cur, r * rev)
            return res

        years = "each of the last 2 years" if len(recent) == 2 else "the last year"
        text = (f"raise R&D spending to {pct_threshold(r)} of revenue in {years} (from {pct(weaker)}; "
                f"+{money(float(extra[-1]))} in the last year)")
        out.append((Change("rd_intensity", weaker, r, "pct", effort, text), edit))
    return out


def _propose_rd_staff(rows: pd.DataFrame) -> list[tuple[Change, Edit]]:
    employees, staff = _last(rows, "employees"), _last(rows, "rd_staff")
    if not employees > 0:
        return []
    share = 0.0 if np.isnan(staff) else staff / employees
    rungs = [r for r in STAFF_LADDER if share < r - 1e-9 and r <= share + STAFF_MAX_RISE + 1e-9]
    out = []
    for effort, r in enumerate(rungs, start=1):
        need = float(math.ceil(r * employees - 1e-9))
        add = need - (0.0 if np.isnan(staff) else staff)
        text = f"add {add:,.0f} R&D staff to reach {pct_threshold(r)} of employees (from {pct(share)})"
        out.append((Change("rd_staff", share, r, "pct", effort, text), _set_last("rd_staff", need)))
    return out


def _propose_class1(rows: pd.DataFrame) -> list[tuple[Change, Edit]]:
    have = _last(rows, "class1_ip")
    out = []
    for effort, add in enumerate(CLASS1_STEPS, start=1):
        def edit(frame: pd.DataFrame, add: int = add) -> pd.DataFrame:
            res = frame.copy()
            for col in ("class1_ip", "invention_patents"):  # an invention patent is Class-I IP
                j = res.columns.get_loc(col)
                res.iat[-1, j] = int(res.iat[-1, j]) + add
            return res

        text = (f"obtain {add} more Class-I IP item{'s' if add > 1 else ''} such as invention patents "
                f"({have:,.0f} -> {have + add:,.0f})")
        out.append((Change("class1_ip", have, have + add, "count", effort, text), edit))
    return out


def _propose_ratio(rows: pd.DataFrame, action: str, num: str, den: str, ladder: Sequence[float], limit: float,
                   raise_it: bool, words: str) -> list[tuple[Change, Edit]]:
    numerator, denominator = _last(rows, num), _last(rows, den)
    if not denominator > 0 or np.isnan(numerator):
        return []
    now = numerator / denominator
    if raise_it:
        rungs = [r for r in ladder if now < r - 1e-9 and r <= now + limit + 1e-9]
    else:
        rungs = [r for r in ladder if now > r + 1e-9 and r >= now - limit - 1e-9]
    out = []
    for effort, r in enumerate(rungs, start=1):
        text = f"{words} to {pct_threshold(r)} (from {pct(now)})"
        out.append((Change(action, now, r, "pct", effort, text), _set_last(num, r * denominator)))
    return out


def _propose_share(rows: pd.DataFrame) -> list[tuple[Change, Edit]]:
    now = _last(rows, "niche_market_share")
    base = 0.0 if np.isnan(now) else now
    rungs = [r for r in NICHE_LADDER if base < r - 1e-9 and r <= base + NICHE_MAX_RISE + 1e-9]
    return [(Change("niche_share", now, r, "pct", effort,
                    f"grow the national niche market share to {pct_threshold(r)} (from {format_value(now, 'pct')})"),
             _set_last("niche_market_share", r)) for effort, r in enumerate(rungs, start=1)]


def _propose_flag(rows: pd.DataFrame, action: str, col: str, words: str) -> list[tuple[Change, Edit]]:
    if bool(rows[col].iloc[-1]):
        return []
    return [(Change(action, 0.0, 1.0, "flag", 1, words), _set_last(col, True))]


def _propose_digital(rows: pd.DataFrame) -> list[tuple[Change, Edit]]:
    now = _last(rows, "digital_level")
    start = 1.0 if np.isnan(now) else now
    out = []
    for effort, level in enumerate(range(int(start) + 1, min(int(start) + 2, DIGITAL_MAX) + 1), start=1):
        text = f"raise the digital level to {level} (from {format_value(now, 'number')})"
        out.append((Change("digital_level", now, float(level), "level", effort, text),
                    _set_last("digital_level", float(level))))
    return out


def _propose_institution(rows: pd.DataFrame) -> list[tuple[Change, Edit]]:
    value = rows["rd_institution"].iloc[-1]
    now = 0 if pd.isna(value) else INSTITUTION_LEVELS.index(str(value))
    out = []
    for effort, level in enumerate(range(now + 1, min(now + 2, len(INSTITUTION_LEVELS) - 1) + 1), start=1):
        text = f"set up a {INSTITUTION_LEVELS[level]}-level R&D institution (now: {INSTITUTION_LEVELS[now]})"
        out.append((Change("rd_institution", float(now), float(level), "institution", effort, text),
                    _set_last("rd_institution", INSTITUTION_LEVELS[level])))
    return out


PROPOSERS: dict[str, Callable[[pd.DataFrame], list[tuple[Change, Edit]]]] = {
    "rd_intensity": _propose_rd,
    "rd_staff": _propose_rd_staff,
    "class1_ip": _propose_class1,
    "mb_share": lambda rows: _propose_ratio(rows, "mb_share", "main_business_revenue", "revenue", MB_LADDER,
                                            MB_MAX_RISE, True, "raise the main-business share of revenue"),
    "debt_ratio": lambda rows: _propose_ratio(rows, "debt_ratio", "total_liabilities", "total_assets", DEBT_LADDER,
                                              DEBT_MAX_CUT, False, "cut the debt ratio"),
    "certification": lambda rows: _propose_flag(rows, "certification", "quality_certified",
                                                "obtain a management or product certification"),
    "own_brand": lambda rows: _propose_flag(rows, "own_brand", "own_brand", "establish an own brand"),
    "digital_level": _propose_digital,
    "rd_institution": _propose_institution,
    "niche_share": lambda rows: _propose_share(rows),
}


def allowed_actions(monotone: Mapping[str, int] | None, actions: Sequence[Action] = ACTIONS) -> list[Action]:
    """Actions whose direction agrees with the model's monotone constraints (an action that
    moves a feature against its constraint could only lower the score, so it is dropped)."""
    monotone = monotone or {}
    return [a for a in actions if int(monotone.get(a.feature, 0)) != -a.direction]


@dataclass(frozen=True)
class _Node:
    changes: tuple[Change, ...]
    rows: pd.DataFrame
    raw: float
    prob: float
    eligible: bool
    n_met: float

    @property
    def key(self) -> tuple:
        return tuple(sorted((c.action, round(c.after, 6)) for c in self.changes))

    @property
    def effort(self) -> int:
        return sum(c.effort for c in self.changes)


def firm_window(panel: pd.DataFrame, firm_id: str, year: int) -> pd.DataFrame:
    """The panel rows the features of one firm's fiscal ``year`` read: years ``year - 2 ..
    year``, oldest first, index reset.

    Raises:
        ValueError: The firm has no row for ``year``.
    """
    rows = panel[(panel["firm_id"] == str(firm_id)) & panel["year"].between(year - 2, year)]
    rows = rows.sort_values("year").reset_index(drop=True)
    if rows.empty or int(rows["year"].iloc[-1]) != year:
        raise ValueError(f"firm {firm_id!r} has no row for fiscal year {year}")
    return rows


def _local_context(context: pd.DataFrame | None, rows: pd.DataFrame) -> pd.DataFrame | None:
    """Only the firm's province and sector records (the rest is never read for it)."""
    if context is None:
        return None
    keep = (((context["kind"] == "province") & (context["level"] == str(rows["province"].iloc[-1])))
            | ((context["kind"] == "sector") & (context["level"] == str(rows["sector"].iloc[-1]))))
    return context[keep]


def _evaluate(bundle: Any, variants: list[pd.DataFrame], firm_id: str, year: int, events: pd.DataFrame | None,
              context: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw score, probability, eligibility and criteria met of each variant of the firm's rows,
    with features rebuilt for all variants in one pass (each variant as its own firm)."""
    from lgml.features import build_features

    ids = [f"{firm_id}\u241f{i}" for i in range(len(variants))]
    panel = pd.concat([v.assign(firm_id=i) for v, i in zip(variants, ids)], ignore_index=True)
    panel["firm_id"] = panel["firm_id"].astype("str")
    ev = None
    if events is not None:
        mine = events[events["firm_id"].astype(str) == str(firm_id)]
        ev = pd.concat([mine.assign(firm_id=i) for i in ids], ignore_index=True) if len(mine) else mine.iloc[:0]
        ev = ev.astype({"firm_id": "str"})
    table = build_features(panel, ev, _local_context(context, variants[0]))
    table = table[table["year"] == year].set_index("firm_id").reindex(ids)
    raw = bundle.predict_raw(table)
    prob = bundle.calibrator.transform(raw) if bundle.calibrator is not None else raw
    return (raw, prob, table["eligible"].to_numpy(dtype=float) >= 0.5, table["n_met"].to_numpy(dtype=float))


def counterfactual(bundle: Any, panel: pd.DataFrame, firm_id: str, year: int, *,
                   events: pd.DataFrame | None = None, context: pd.DataFrame | None = None,
                   target: float = 0.5, goal: str = "either", max_changes: int = 3, beam_width: int = 4,
                   actions: Sequence[Action] | None = None, feature_row: pd.DataFrame | None = None
                   ) -> Counterfactual:
    """The smallest set of changes to mutable inputs that lifts a firm to ``target``.

    Searches with the model itself: a beam search over discrete, realistic steps (the
    ladders and limits in this module, e.g. R&D intensity to the next of 3/4/5/6/8/10/12% of
    revenue, at most +6 pp). Each candidate edits the firm's panel rows (years ``year - 2 ..
    year``) and rebuilds every feature with :func:`lgml.features.build_features`, so dependent
    features stay consistent (more R&D changes ``rd_intensity``, ``rd_2y``, the R&D rule's
    pass flag and shortfall, the 100-point score ...). Province, sector, age, high-tech zone,
    size and ownership are never changed; actions against the bundle's monotone constraints
    are dropped. Fewest changes win; among those, the smallest steps, then the highest score.

    Args:
        bundle: Designation bundle.
        panel: Canonical panel holding the firm's rows (money in yuan).
        firm_id: The firm.
        year: Fiscal year judged (the application is for batch ``year + 1``).
        events: Designation events (title history), if known.
        context: Province/sector records to build features with (the bundle's); computed from
            ``panel`` when None.
        target: Calibrated probability to reach (0-1).
        goal: ``probability`` (reach ``target``), ``eligible`` (meet every criterion) or
            ``either``.
        max_changes: Most distinct actions combined.
        beam_width: Partial solutions kept per depth.
        actions: Allowed actions; default all of :data:`ACTIONS` that respect monotonicity.
        feature_row: The firm's feature row as already built with ``context`` (saves
            rebuilding it).

    Returns:
        A :class:`Counterfactual`; ``reached`` is false (and ``message`` says so) when no
        feasible change exists within the limits.

    Raises:
        ValueError: The firm has no row for ``year`` or ``goal`` is unknown.
    """
    if goal not in ("probability", "eligible", "either"):
        raise ValueError(f"unknown goal {goal!r}; use 'probability', 'eligible' or 'either'")
    if context is None:
        from lgml.features import context_tables

        context = context_tables(panel, events)
    rows = firm_window(panel, firm_id, year)
    allowed = allowed_actions(bundle.metadata.get("monotone"), ACTIONS if actions is None else actions)
    seen: set[tuple] = set()
    nodes: list[_Node] | None = None
    if feature_row is not None:
        raw = bundle.predict_raw(feature_row.iloc[[0]])
        prob = bundle.calibrator.transform(raw) if bundle.calibrator is not None else raw
        start = _Node((), rows, float(raw[0]), float(prob[0]), bool(feature_row["eligible"].iloc[0] >= 0.5),
                      float(feature_row["n_met"].iloc[0]))
    else:  # score the firm as it is in the same pass as its first changes
        blank = _Node((), rows, np.nan, np.nan, False, np.nan)
        start, *nodes = _scored(bundle, [((), rows), *_children([blank], allowed, seen)], firm_id, year, events,
                                context)
    if _goal_met(start, start, goal, target) or (goal == "eligible" and start.eligible):
        return _result(start, start, firm_id, year, target, "already")
    beam, best, eligible_only = [start], start, None
    for _depth in range(max_changes):
        if nodes is None:
            children = _children(beam, allowed, seen)
            nodes = _scored(bundle, children, firm_id, year, events, context) if children else []
        winners = [n for n in nodes if _goal_met(n, start, goal, target)]
        # With goal "either", becoming eligible below the target is kept as a fallback while
        # deeper changes are searched for the target itself.
        on_target = [n for n in winners if goal == "eligible" or _goal_met(n, start, goal, target) == "probability"]
        if on_target:
            win = min(on_target, key=lambda n: (n.effort, -n.raw))
            return _result(start, win, firm_id, year, target, _goal_met(win, start, goal, target),
                           max_changes=max_changes)
        if winners and eligible_only is None:
            eligible_only = min(winners, key=lambda n: (n.effort, -n.raw))
        # Keep the best partial solutions by score; criteria met break near-ties (the calibrated
        # probability can be flat, so the raw log-odds lead).
        nodes.sort(key=lambda n: (-(n.raw + 0.05 * n.n_met), n.effort))
        beam = [n for n in nodes if n.raw > start.raw + 1e-9 or n.n_met > start.n_met][:beam_width]
        nodes = None
        if not beam:
            break
        if beam[0].raw > best.raw:
            best = beam[0]
    if eligible_only is not None:
        return _result(start, eligible_only, firm_id, year, target, "eligible", max_changes=max_changes)
    return _result(start, best, firm_id, year, target, None, max_changes=max_changes)


def _scored(bundle: Any, children: list[tuple[tuple[Change, ...], pd.DataFrame]], firm_id: str, year: int,
            events: pd.DataFrame | None, context: pd.DataFrame | None) -> list[_Node]:
    raw, prob, elig, met = _evaluate(bundle, [c[1] for c in children], firm_id, year, events, context)
    return [_Node(ch, r, float(a), float(p), bool(e), float(m))
            for (ch, r), a, p, e, m in zip(children, raw, prob, elig, met)]


def _goal_met(node: _Node, start: _Node, goal: str, target: float) -> str | None:
    if goal in ("probability", "either") and node.prob >= target:
        return "probability"
    if goal in ("eligible", "either") and node.eligible and not start.eligible:
        return "eligible"
    return None


def _children(parents: list[_Node], allowed: Sequence[Action], seen: set[tuple]
              ) -> list[tuple[tuple[Change, ...], pd.DataFrame]]:
    """Every parent extended by one new action at each of its sizes (each change set once)."""
    out = []
    for node in parents:
        taken = {c.action for c in node.changes}
        for action in allowed:
            if action.name in taken:
                continue
            for change, edit in PROPOSERS[action.name](node.rows):
                key = tuple(sorted([*node.key, (change.action, round(change.after, 6))]))
                if key not in seen:
                    seen.add(key)
                    out.append(((*node.changes, change), edit(node.rows)))
    return out


def _plural(phrase: str) -> str:
    """``"lifts the ..."`` -> ``"lift the ..."`` (the verb after a plural subject)."""
    verb, _, rest = phrase.partition(" ")
    return f"{verb.removesuffix('s')} {rest}"


def _result(start: _Node, end: _Node, firm_id: str, year: int, target: float, goal: str | None,
            max_changes: int = 0) -> Counterfactual:
    changes = list(end.changes)
    if goal == "already":
        message = (f"Already at {100 * start.prob:.1f}%, at or above the {100 * target:.0f}% target"
                   + ("; meets every criterion." if start.eligible else "."))
        changes = []
    elif goal is not None:
        what = (f"lifts the probability from {100 * start.prob:.1f}% to {100 * end.prob:.1f}% "
                f"(target {100 * target:.0f}%)" if goal == "probability"
                else f"makes the firm meet every criterion (probability {100 * start.prob:.1f}% -> "
                     f"{100 * end.prob:.1f}%)")
        verb = f"{len(changes)} change " + what if len(changes) == 1 else f"{len(changes)} changes " + _plural(what)
        message = f"{verb}: " + "; ".join(c.text for c in changes) + "."
        if end.prob < target:  # eligible, yet below the target: say so plainly
            message += (f" No combination of up to {max_changes} changes to mutable inputs within realistic limits "
                        f"lifts the probability to the {100 * target:.0f}% target; this is the best found.")
    else:
        best = (f" The best found, {'; '.join(c.text for c in changes)}, reaches {100 * end.prob:.1f}%."
                if changes else " No change within the limits raises the model's score.")
        message = (f"No feasible change: no combination of up to {max_changes} changes to mutable inputs within "
                   f"realistic limits lifts the probability from {100 * start.prob:.1f}% to {100 * target:.0f}% "
                   f"or makes the firm eligible.{best}")
    return Counterfactual(
        firm_id=str(firm_id), year=int(year), target=float(target),
        probability_before=start.prob, probability_after=end.prob if goal != "already" else start.prob,
        raw_before=start.raw, raw_after=end.raw if goal != "already" else start.raw,
        eligible_before=start.eligible, eligible_after=end.eligible if goal != "already" else start.eligible,
        reached=goal is not None, goal=goal, changes=changes, message=message)


