"""The report's sections from :class:`~stream.report.data.ReportData`: plots (matplotlib and
seaborn), one-line readings and tables.

The statistics come from the monitors' own functions on the SQL aggregates: Clarify's
pre-training bias metrics (:func:`monitors.clarify_analysis` on per-category counts), drift
of each feature against the baseline (:func:`monitors.feature_drift` on per-bucket
histograms binned as the baseline's), the naive, BBSE and EM prior estimates with their
intervals (EM on the monitors' probability grid) and the distinctive terms of negative reviews
(:func:`monitors.distinctive_terms`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stream.events import LABELS
from stream.report.page import Cell, Section, Table, num, pct, png, text

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

    from monitors import MonitorConfig
    from stream.report.data import ReportData

__all__ = [
    "Levels",
    "bias_table",
    "csv_sections",
    "drift_series",
    "lake_sections",
    "prior_series",
    "top_terms",
]

_CLASS_COLORS = {-1: "#d62728", 0: "#7f7f7f", 1: "#2ca02c"}
_NAMES = {k: v for k, v in LABELS.items()}


@dataclass(frozen=True, slots=True)
class Levels:
    """The monitors' test levels (:meth:`of` the pipeline's config) and the report's own."""

    false_alarm_rate: float
    horizon_events: int
    min_count: int
    min_psi: float
    confidence: float
    bias_threshold: float = 0.1
    top_terms: int = 5

    @classmethod
    def of(cls, config: MonitorConfig) -> Levels:
        """The levels the monitors test with under ``config``."""
        return cls(
            config.false_alarm_rate,
            config.horizon_events,
            config.min_count,
            config.min_psi,
            config.confidence_level,
        )


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt


def _share(n: float, total: float) -> float:
    return n / total if total else float("nan")


# -- sentiment over time and per category --------------------------------------------------


def _category_counts(data: ReportData) -> pd.DataFrame:
    """category x (source, cls) counts over the whole span."""
    c = _sum(data.classes, ["category", "source", "cls"])
    wide: pd.DataFrame = c.pivot_table(
        index="category", columns=["source", "cls"], values="n", fill_value=0
    )
    return wide


def _sum(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Sum of ``n`` per ``keys``, as a frame."""
    out: pd.DataFrame = frame.groupby(keys, as_index=False).agg(n=("n", "sum"))
    return out


def _count(wide: pd.DataFrame, category: str, source: str, cls: int) -> int:
    key = (source, cls)
    if key not in wide.columns:
        return 0
    column: dict[Any, Any] = wide[key].to_dict()
    return int(column.get(category, 0))


def category_table(data: ReportData) -> Table:
    wide = _category_counts(data)
    rows: list[list[Cell]] = []
    label = "label" if data.kind == "csv" else "predicted"
    for cat in sorted(wide.index):
        pred = [_count(wide, cat, "predicted", k) for k in (-1, 0, 1)]
        total = sum(pred)
        row = [text(cat), num(total), *(pct(_share(p, total)) for p in pred)]
        if data.kind == "lake":
            rated = [_count(wide, cat, "rated", k) for k in (-1, 0, 1)]
            row += [num(sum(rated)), pct(_share(rated[0], sum(rated)))]
        rows.append(row)
    columns = ["category", "reviews", *(f"{label} {LABELS[k]}" for k in (-1, 0, 1))]
    if data.kind == "lake":
        columns += ["rated reviews", "rated negative"]
    return Table("categories", columns, rows)


def _alert_table(data: ReportData) -> Table:
    rows = [
        [
            text(a.name),
            text(a.category),
            text(a.severity),
            text(a.status),
            text(f"{a.window_start:%Y-%m-%d %H:%M}"),
            text(f"{a.window_end:%Y-%m-%d %H:%M}"),
        ]
        for a in data.alerts.itertuples()
    ]
    return Table(
        "alerts", ["alert", "category", "severity", "status", "window start", "window end"], rows
    )


def _overview_table(data: ReportData) -> Table:
    dead = int(data.dead["n"].sum()) if len(data.dead) else 0
    categories = int(data.classes["category"].nunique()) if len(data.classes) else 0
    rows = [
        [text("reviews"), num(data.n)],
        [text("labelled reviews"), num(data.labelled)],
        [text("categories"), num(categories)],
    ]
    if data.kind == "lake":
        rows += [[text("dead letters"), num(dead)], [text("alerts"), num(len(data.alerts))]]
    return Table("overview", ["what", "count"], rows)


def _sentiment_over_time(data: ReportData) -> Section:
    plt = _plt()
    c = data.classes
    pred = c[c.source == "predicted"]
    volume = pred.groupby("category")["n"].sum().sort_values(ascending=False)
    cats = list(volume.index)
    ncols = 4
    nrows = max(1, math.ceil(len(cats) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(16, 2.6 * nrows), sharex=True, sharey=True, squeeze=False
    )
    alerts = data.alerts
    c = _coarse(c, data.grain, len(cats))
    for ax, cat in zip(axes.flat, cats, strict=False):
        sub = c[c.category == cat]
        for source, style in (("predicted", "-"), ("rated", "--")):
            s = sub[sub.source == source]
            if s.empty:
                continue
            wide = s.pivot_table(index="bucket", columns="cls", values="n", fill_value=0)
            shares = wide.div(wide.sum(axis=1), axis=0)
            for k in (-1, 1):
                if k in shares.columns:
                    ax.plot(
                        shares.index,
                        shares[k],
                        style,
                        color=_CLASS_COLORS[k],
                        lw=1.2 if source == "predicted" else 1.0,
                        label=f"{source} {LABELS[k]}",
                    )
        vol = sub[sub.source == "predicted"].groupby("bucket")["n"].sum()
        twin = ax.twinx()
        twin.fill_between(vol.index, vol.values, step="post", color="#1f77b4", alpha=0.15, lw=0)
        twin.set_ylim(bottom=0)
        twin.set_yticks([])
        twin.grid(False)
        for a in alerts.itertuples():
            if a.category in (cat, "all"):
                ax.axvline(a.window_end, color="#ff7f0e", lw=1.5)
                ax.axvspan(a.window_start, a.window_end, color="#ff7f0e", alpha=0.12)
        ax.set_title(f"{cat} ({int(volume[cat]):,})", fontsize=9)
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    for ax in list(axes.flat)[len(cats) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    head = 0.9 / (2.6 * nrows)  # room for the title and the legend, in figure heights
    fig.subplots_adjust(top=1 - head, hspace=0.35)
    fig.legend(
        handles, labels, loc="upper center", ncol=4, fontsize=8, bbox_to_anchor=(0.5, 1 - head / 3)
    )
    fig.suptitle(
        "share of negative / positive reviews per category (shaded: volume; orange: alerts)",
        y=1.0,
        fontsize=10,
    )
    image = png(fig)
    # reading
    wide = _category_counts(data)
    neg = {
        cat: _share(_count(wide, cat, "predicted", -1), int(volume[cat])) for cat in volume.index
    }
    hi = max(neg, key=lambda k: neg[k])
    lo = min(neg, key=lambda k: neg[k])
    tot_pred = pred.groupby("cls")["n"].sum()
    rated = c[c.source == "rated"].groupby("cls")["n"].sum()
    reading = (
        f"Predicted negative share ranges from {neg[lo]:.1%} ({lo}) to {neg[hi]:.1%} ({hi}); "
        f"overall {_share(float(tot_pred.get(-1, 0)), float(tot_pred.sum())):.1%} predicted"
    )
    if rated.sum():
        reading += f" vs {_share(float(rated.get(-1, 0)), float(rated.sum())):.1%} rated"
    reading += f"; {len(alerts)} alert(s) marked."
    return Section(
        "Sentiment over time, per category",
        reading,
        [image],
        [_overview_table(data), category_table(data), _alert_table(data)],
    )


def _coarse(frame: pd.DataFrame, grain: str | None, groups: int) -> pd.DataFrame:
    """``frame`` (bucket, category, source, cls, n) in buckets merged by the smallest of 1,
    2, 3, 6, 12 or 24 that gives the small multiples some 25 reviews a point on average."""
    buckets = frame["bucket"].nunique()
    total = float(frame.loc[frame.source == "predicted", "n"].sum())
    unit = {"hour": "h", "day": "D", "week": "W"}.get(grain or "day", "D")
    for k in (1, 2, 3, 6, 12, 24):
        if total / max(1.0, buckets / k) / max(1, groups) >= 25 or k == 24 or unit == "W":
            break
    if k == 1:
        return frame
    out = frame.copy()
    out["bucket"] = out["bucket"].dt.floor(f"{k}{unit}")
    return _sum(out, ["bucket", "category", "source", "cls"])


def _bar_width(data: ReportData) -> float:
    return {"hour": 1 / 24, "day": 0.9, "week": 6.0}.get(data.grain or "day", 0.9) * 0.9


def _category_sentiment(data: ReportData) -> Section:
    plt = _plt()
    wide = _category_counts(data)
    cats = sorted(wide.index)
    shares = np.array(
        [[_count(wide, cat, "predicted", k) for k in (-1, 0, 1)] for cat in cats], dtype=float
    )
    totals = shares.sum(axis=1, keepdims=True)
    shares = shares / np.maximum(totals, 1)
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(cats) + 1.5))
    left = np.zeros(len(cats))
    for i, k in enumerate((-1, 0, 1)):
        ax.barh(cats, shares[:, i], left=left, color=_CLASS_COLORS[k], label=LABELS[k])
        left += shares[:, i]
    ax.set_xlim(0, 1)
    ax.legend(ncol=3, loc="lower right", fontsize=8)
    ax.set_xlabel("share of labelled reviews")
    neg = dict(zip(cats, shares[:, 0], strict=True))
    hi = max(neg, key=lambda k: neg[k])
    lo = min(neg, key=lambda k: neg[k])
    reading = (
        f"Negative labels range from {neg[lo]:.1%} ({lo}) to {neg[hi]:.1%} ({hi}) "
        f"across {len(cats)} categories."
    )
    return Section(
        "Sentiment per category", reading, [png(fig)], [_overview_table(data), category_table(data)]
    )


# -- class balance and lengths -------------------------------------------------------------


def _balance(data: ReportData) -> Section:
    plt = _plt()
    import seaborn as sns

    c = data.classes
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), gridspec_kw={"width_ratios": [1, 2, 2]})
    if data.kind == "csv":  # the label is both: one bar each
        c = c[c.source == "predicted"].assign(source="label")
    overall = _sum(c, ["source", "cls"])
    overall["share"] = overall["n"] / overall.groupby("source")["n"].transform("sum")
    overall["class"] = overall["cls"].map(_NAMES)
    sns.barplot(
        data=overall,
        x="class",
        y="share",
        hue="source",
        order=[LABELS[k] for k in (-1, 0, 1)],
        ax=axes[0],
    )
    axes[0].set_title("class balance")
    pred = c[c.source != "rated"].groupby(["category", "cls"])["n"].sum().unstack(fill_value=0)
    heat = pred.div(pred.sum(axis=1), axis=0).rename(columns=_NAMES)
    sns.heatmap(heat, annot=True, fmt=".0%", cmap="RdYlGn", vmin=0, vmax=1, ax=axes[1], cbar=False)
    axes[1].set_title("class share per category" + (" (labels)" if data.kind == "csv" else ""))
    axes[1].set_ylabel("")
    axes[1].set_xlabel("")
    lengths = data.lengths.copy()
    lengths["share"] = lengths["n"] / lengths.groupby("cls")["n"].transform("sum")
    lengths = lengths[lengths["words"] <= lengths["words"].quantile(0.98)].sort_values("words")
    for k in (-1, 0, 1):
        s = lengths[lengths.cls == k]
        axes[2].plot(s["words"], s["share"], color=_CLASS_COLORS[k], label=LABELS[k])
    axes[2].set_xlabel("words (5-word bins)")
    axes[2].set_ylabel("share of the class")
    axes[2].legend()
    axes[2].set_title("review length by sentiment")
    stats = data.length_stats.set_index("cls")
    total = float(stats["n"].sum())
    share = " / ".join(f"{_share(float(stats['n'].get(k, 0)), total):.1%}" for k in (-1, 0, 1))
    med = {k: stats["median_words"].get(k, float("nan")) for k in (-1, 0, 1)}
    reading = (
        f"Negative / neutral / positive: {share}; median length {med[-1]:.0f} words for "
        f"negative reviews, {med[0]:.0f} for neutral, {med[1]:.0f} for positive."
    )
    rows = [
        [
            text(LABELS[int(r["cls"])]),
            num(int(r["n"])),
            num(float(r["median_words"]), 1),
            num(float(r["mean_words"]), 2),
            num(float(r["median_chars"]), 1),
        ]
        for r in data.length_stats.to_dict("records")
    ]
    table = Table(
        "lengths", ["sentiment", "reviews", "median words", "mean words", "median chars"], rows
    )
    return Section("Class balance and review length", reading, [png(fig)], [table])


# -- mix over time -------------------------------------------------------------------------


def _stack(ax: Axes, frame: pd.DataFrame, column: str, title: str) -> pd.DataFrame:
    wide = frame.pivot_table(index="bucket", columns=column, values="n", fill_value=0)
    shares = wide.div(wide.sum(axis=1), axis=0)
    ax.stackplot(shares.index, shares.T.values, labels=[str(v) for v in shares.columns])
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=7)
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    return shares


def _mix(data: ReportData) -> Section:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(16, 4.2))
    ch = _stack(axes[0], data.channels, "channel", "channel mix")
    cats = data.classes[data.classes.source == "predicted"]
    _stack(
        axes[1],
        _sum(cats, ["bucket", "category"]),
        "category",
        "category mix",
    )
    change = (ch.iloc[-1] - ch.iloc[0]).abs() if len(ch) > 1 else ch.iloc[0] * 0
    moved = str(change.idxmax()) if len(change) else "-"
    reading = (
        f"{ch.shape[1]} channels; the largest move between the first and the last "
        f"{data.grain} is {moved} ({ch[moved].iloc[0]:.1%} -> {ch[moved].iloc[-1]:.1%})."
        if len(change)
        else "No reviews."
    )
    return Section("Channel and category mix over time", reading, [png(fig)])


# -- bias ----------------------------------------------------------------------------------


def bias_table(data: ReportData) -> tuple[Table, list[dict[str, Any]]]:
    """Clarify's pre-training metrics per category, on the predicted sentiment and on the
    rated one (where ratings exist), as a table and as long records."""
    from monitors import FacetCounts, clarify_analysis
    from monitors.bias import METRICS

    wide = _category_counts(data)
    sources = [("predicted", "label" if data.kind == "csv" else "predicted")]
    if data.kind == "lake":
        sources.append(("rated", "rated"))
    rows: list[list[Cell]] = []
    records: list[dict[str, Any]] = []
    for source, name in sources:
        facets = {
            cat: FacetCounts(
                sum(_count(wide, cat, source, k) for k in (-1, 0, 1)),
                _count(wide, cat, source, 1),
            )
            for cat in sorted(wide.index)
        }
        facets = {k: f for k, f in facets.items() if f.total > 0}
        if len(facets) < 2:
            continue
        doc = clarify_analysis(facets)
        for entry in doc["pre_training_bias_metrics"]["facets"]["product_category"]:
            values = {m["name"]: m["value"] for m in entry["metrics"]}
            cat = entry["value_or_threshold"]
            row = [text(cat), text(name)]
            for metric in METRICS:
                v = values[metric]
                row.append(num(float(v) if isinstance(v, int | float) else float("nan")))
                records.append({"category": cat, "labels": name, "metric": metric, "value": v})
            rows.append(row)
    return Table("bias", ["category", "labels", *METRICS], rows), records


def _bias(data: ReportData, levels: Levels) -> Section:
    plt = _plt()
    import pandas as pd
    import seaborn as sns

    from monitors.bias import METRICS

    table, records = bias_table(data)
    frame = pd.DataFrame(records)
    frame = frame[frame["value"].map(lambda v: isinstance(v, int | float))]
    frame["value"] = frame["value"].astype(float)
    fig, axes = plt.subplots(
        1, len(METRICS), figsize=(18, 0.3 * max(1, len(table.rows)) + 3), sharey=True
    )
    t = levels.bias_threshold
    for ax, metric in zip(axes, METRICS, strict=True):
        sub = frame[frame.metric == metric]
        if not sub.empty:
            sns.barplot(
                data=sub,
                y="category",
                x="value",
                hue="labels",
                ax=ax,
                orient="h",
                legend=metric == METRICS[-1],
            )
        for x in (-t, t):
            ax.axvline(x, color="#d62728", ls="--", lw=1)
        ax.set_title(metric)
        ax.set_xlabel("")
        ax.set_ylabel("")
    dpl = frame[frame.metric == "DPL"]
    if len(dpl):
        worst = dpl.assign(size=dpl["value"].abs()).sort_values("size").iloc[-1]
        beyond = int((dpl["value"].abs() > t).sum())
        reading = (
            f"Largest |DPL|: {worst.category} ({worst.value:+.3f}, on the {worst.labels} "
            "sentiment); "
            f"{beyond} of {len(dpl)} category/label pairs beyond the ±{t:g} threshold "
            "(DPL > 0: fewer positive labels than the other categories)."
        )
    else:
        reading = "Fewer than two categories: no bias metric to compute."
    return Section("Clarify pre-training bias metrics per category", reading, [png(fig)], [table])


# -- drift and priors ----------------------------------------------------------------------


def drift_series(data: ReportData, levels: Levels) -> pd.DataFrame:
    """Per bucket after the reference and feature: the drift test against the baseline."""
    import pandas as pd

    from monitors import feature_drift
    from monitors.evaluation import REPORT_ONLY

    rows = []
    baseline = data.baseline
    if baseline is None:
        return pd.DataFrame(columns=["bucket", "feature", "psi", "p_value", "drifted", "n"])
    for bucket in sorted(data.histograms):
        hists = data.histograms[bucket]
        n = max((int(h.sum()) for h in hists.values()), default=0)
        if n < levels.min_count:
            continue
        tested = [f for f in hists if f not in REPORT_ONLY]
        alpha = levels.false_alarm_rate * min(1.0, n / levels.horizon_events)
        for name, h in hists.items():
            level = alpha / max(1, len(tested)) if name in tested else 0.0
            r = feature_drift(baseline.features[name], h, alpha=level, min_psi=levels.min_psi)
            rows.append(
                {
                    "bucket": bucket,
                    "feature": name,
                    "psi": r.psi,
                    "p_value": r.p_value,
                    "drifted": r.drifted,
                    "n": r.count,
                }
            )
    return pd.DataFrame(rows)


def prior_series(data: ReportData, levels: Levels) -> pd.DataFrame:
    """Per bucket after the reference: naive, BBSE (with the baseline's confusion matrix) and
    EM (on the monitors' probability grid) estimates of the class priors with intervals."""
    import pandas as pd

    from monitors import bbse, em_priors, naive_priors
    from monitors.evaluation import PROB_GRID, grid_rows

    out: list[dict[str, Any]] = []
    baseline = data.baseline
    cells = data.prob_cells
    if baseline is None or cells is None or cells.empty:
        return pd.DataFrame(columns=["bucket", "method", "cls", "prior", "lower", "upper"])
    src = np.asarray(baseline.mean_probabilities, dtype=np.float64)
    for bucket, part in cells.groupby("bucket"):
        i = part["i"].to_numpy(np.int64)
        j = part["j"].to_numpy(np.int64)
        weights = part["n"].to_numpy(np.float64)
        n = int(weights.sum())
        if n < levels.min_count:
            continue
        rows = grid_rows(i * (PROB_GRID + 1) + j)
        hist = data.histograms.get(bucket, {})
        some = next(iter(hist.values()), None)
        counts = some.sum(axis=1) if some is not None else None
        estimates = []
        if counts is not None and counts.sum() > 0:
            estimates.append(naive_priors(counts, confidence=levels.confidence))
            if baseline.confusion is not None:
                with contextlib.suppress(ValueError):  # singular: BBSE not identifiable
                    estimates.append(bbse(baseline.confusion, counts, confidence=levels.confidence))
        if np.all(src > 0):
            estimates.append(em_priors(rows, src, weights=weights, confidence=levels.confidence))
        for est in estimates:
            for k in range(3):
                out.append(
                    {
                        "bucket": bucket,
                        "method": est.method,
                        "cls": k - 1,
                        "prior": float(est.priors[k]),
                        "lower": float(est.lower[k]),
                        "upper": float(est.upper[k]),
                    }
                )
    return pd.DataFrame(out)


def _drift_priors(data: ReportData, levels: Levels) -> Section:
    plt = _plt()
    import seaborn as sns

    drift = drift_series(data, levels)
    priors = prior_series(data, levels)
    images = []
    fig, ax = plt.subplots(figsize=(16, 4))
    if not drift.empty:
        sns.lineplot(
            data=drift, x="bucket", y="psi", hue="feature", ax=ax, marker="o", markersize=3
        )
        hit = drift[drift.drifted]
        ax.scatter(
            hit["bucket"], hit["psi"], marker="x", s=60, color="#d62728", zorder=5, label="drifted"
        )
        ax.axhline(levels.min_psi, color="#d62728", ls="--", lw=1)
        ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8)
    ax.set_title("data drift per feature (PSI against the baseline, within predicted class)")
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    images.append(png(fig))
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8), sharey=True)
    rated = data.classes[data.classes.source == "rated"].groupby(["bucket", "cls"])["n"].sum()
    colors = {"naive": "#7f7f7f", "bbse": "#1f77b4", "em": "#9467bd"}
    for ax, k in zip(axes, (-1, 0, 1), strict=True):
        sub = priors[priors.cls == k] if not priors.empty else priors
        for method, s in sub.groupby("method") if not sub.empty else []:
            ax.plot(s["bucket"], s["prior"], color=colors.get(str(method)), label=str(method))
            ax.fill_between(
                s["bucket"], s["lower"], s["upper"], color=colors.get(str(method)), alpha=0.15
            )
        if len(rated):
            r = rated.unstack(fill_value=0)
            share = r.div(r.sum(axis=1), axis=0)
            if k in share.columns and data.reference_end is not None:
                share = share[share.index > data.reference_end]
            if k in share.columns:
                ax.scatter(share.index, share[k], s=8, color="black", label="rated share")
        if data.baseline is not None:
            ax.axhline(data.baseline.priors[k + 1], color="black", ls=":", lw=1, label="baseline")
        ax.set_title(f"{LABELS[k]} prior")
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    axes[0].legend(fontsize=7)
    images.append(png(fig))
    if drift.empty:
        reading = "Too few reviews after the reference to test drift."
    else:
        buckets = drift["bucket"].nunique()
        drifted = drift[drift.drifted]
        names = ", ".join(sorted(drifted["feature"].unique())) or "no feature"
        reading = (
            f"Drift found in {drifted['bucket'].nunique()} of {buckets} {data.grain}s ({names})"
        )
        if not priors.empty:
            last = priors[(priors.bucket == priors.bucket.max()) & (priors.cls == -1)]
            em = last[last.method == "em"]
            if len(em):
                e = em.iloc[0]
                reading += f"; latest EM negative prior {e.prior:.1%} ({e.lower:.1%}-{e.upper:.1%})"
        reading += "."
    return Section("Data drift and prior estimates over time", reading, images)


# -- confidence and terms ------------------------------------------------------------------


def top_terms(data: ReportData, top: int) -> list[tuple[str, str, int, int, float]]:
    """Per category, the terms most associated with its negative reviews against its other
    reviews: (category, term, count in negative reviews, count in the others, z)."""
    from monitors import distinctive_terms

    out: list[tuple[str, str, int, int, float]] = []
    totals = {
        (str(r["category"]), bool(r["negative"])): int(r["tokens"])
        for r in data.term_totals.to_dict("records")
    }
    for cat, part in data.terms.groupby("category"):
        neg = part[part.negative]
        rest = part[~part.negative]
        target = dict(zip(neg["term"], neg["n"].astype(int), strict=True))
        reference = dict(zip(rest["term"], rest["n"].astype(int), strict=True))
        ranked = distinctive_terms(
            target,
            reference,
            top=top,
            target_total=totals.get((str(cat), True), 0),
            reference_total=totals.get((str(cat), False), 0),
        )
        out += [(str(cat), w, target[w], reference.get(w, 0), z) for w, z in ranked]
    return out


def _confidence_terms(data: ReportData, levels: Levels) -> Section:
    plt = _plt()
    terms = top_terms(data, levels.top_terms)
    images = []
    reading = ""
    conf = data.confidence
    if not conf.empty:
        fig, ax = plt.subplots(figsize=(16, 3.5))
        wide = conf.pivot_table(index="bin", columns="cls", values="n", fill_value=0)
        bottom = np.zeros(len(wide))
        for k in (-1, 0, 1):
            if k in wide.columns:
                ax.bar(
                    wide.index,
                    wide[k],
                    width=1 / 50,
                    bottom=bottom,
                    align="edge",
                    color=_CLASS_COLORS[k],
                    label=f"predicted {LABELS[k]}",
                )
                bottom += wide[k].to_numpy()
        ax.set_xlabel("model confidence (largest class probability)")
        ax.legend()
        images.append(png(fig))
        below = float(conf[conf["bin"] < 0.5]["n"].sum()) / float(conf["n"].sum())
        reading = f"{below:.1%} of reviews scored with confidence below 0.5. "
    cats = sorted({t[0] for t in terms})
    if cats:
        ncols = 4
        nrows = math.ceil(len(cats) / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(16, 2.2 * nrows), squeeze=False)
        for ax, cat in zip(axes.flat, cats, strict=False):
            sub = [t for t in terms if t[0] == cat][::-1]
            ax.barh([t[1] for t in sub], [t[4] for t in sub], color=_CLASS_COLORS[-1])
            ax.set_title(cat, fontsize=9)
            ax.tick_params(labelsize=8)
        for ax in list(axes.flat)[len(cats) :]:
            ax.set_visible(False)
        fig.suptitle(
            "terms of negative reviews against the category's other reviews (z)", fontsize=10
        )
        fig.subplots_adjust(wspace=0.45, hspace=0.5)
        images.append(png(fig))
        best = max(terms, key=lambda t: t[4])
        reading += f"Most distinctive negative term: '{best[1]}' in {best[0]} (z = {best[4]:.1f})."
        if data.term_sample > 1:
            reading += f" Terms counted in 1 review in {data.term_sample} (review-id hash)."
    else:
        reading += "No term is frequent enough among negative reviews."
    rows = [[text(c), text(w), num(a), num(b), num(z, 2)] for c, w, a, b, z in terms]
    table = Table("terms", ["category", "term", "in negative", "in others", "z"], rows)
    title = ("Model confidence and " if not conf.empty else "") + "terms of negative reviews"
    return Section(title[0].upper() + title[1:], reading, images, [table])


# -- dead letters --------------------------------------------------------------------------


def _dead_letters(data: ReportData) -> Section:
    plt = _plt()
    dead = data.dead
    fig, ax = plt.subplots(figsize=(16, 3.5))
    totals = dead.groupby("reason")["n"].sum().sort_values(ascending=False)
    if not dead.empty:
        wide = dead.pivot_table(index="bucket", columns="reason", values="n", fill_value=0)
        bottom = np.zeros(len(wide))
        for reason in wide.columns:
            ax.bar(
                wide.index, wide[reason], bottom=bottom, width=_bar_width(data), label=str(reason)
            )
            bottom += wide[reason].to_numpy()
        ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        reading = (
            f"{int(totals.sum()):,} dead letters; most often {totals.index[0]} "
            f"({int(totals.iloc[0]):,})."
        )
    else:
        ax.text(0.5, 0.5, "no dead letters", ha="center", va="center")
        reading = "No dead letters in this span."
    ax.set_title("dead letters by reason (received time)")
    table = Table(
        "dead_letters", ["reason", "count"], [[text(r), num(int(n))] for r, n in totals.items()]
    )
    return Section("Dead letters by reason", reading, [png(fig)], [table])


# -- assembly ------------------------------------------------------------------------------


def lake_sections(data: ReportData, levels: Levels) -> list[Section]:
    """Every section of a lake report (an empty span gives one section saying so)."""
    if data.n == 0:
        return [
            Section(
                "No reviews", "The lake holds no review in this span.", [], [_overview_table(data)]
            )
        ]
    return [
        _sentiment_over_time(data),
        _balance(data),
        _mix(data),
        _bias(data, levels),
        _drift_priors(data, levels),
        _confidence_terms(data, levels),
        _dead_letters(data),
    ]


def csv_sections(data: ReportData, levels: Levels) -> list[Section]:
    """The sections of a training-CSV report: balance, lengths, per-category sentiment,
    bias metrics, top terms."""
    if data.n == 0:
        return [
            Section("No reviews", "The file holds no labelled review.", [], [_overview_table(data)])
        ]
    return [
        _category_sentiment(data),
        _balance(data),
        _bias(data, levels),
        _confidence_terms(data, levels),
    ]
