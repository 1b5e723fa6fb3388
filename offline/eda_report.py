"""`recsys eda`: one self-contained HTML report plus a PNG per chart.

Every chart carries a one-line finding computed from the data. Revenue is net of cancellations
(each taken off the line it cancels) and of capped outlier quantities; amounts carry the
shop's currency where the source names it.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from models.item_categories import derive_categories  # noqa: E402
from offline.retail_history import net_of_cancellations  # noqa: E402

COMPLETE_SHARE = 0.9  # a month with data on fewer of its days is marked partial

@dataclass
class Chart:
    slug: str
    title: str
    finding: str
    path: Path


def amount(value: float, currency: str = "") -> str:
    """``£1.2M``, ``£250k``, ``£75``: amounts as a merchandiser reads them."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{currency}{value / size:,.1f}{suffix}".replace(".0" + suffix, suffix)
    return f"{currency}{value:,.0f}"


class EdaReport:
    def __init__(self, history: pd.DataFrame, out_dir: str | Path, source: str,
                 cancellations: pd.DataFrame | None = None, currency: str = ""):
        net, self.cancellations_matched = net_of_cancellations(history, cancellations)
        self.df = net.assign(revenue=net["quantity"] * net["price"])
        self.currency = currency
        self.money = FuncFormatter(lambda value, _: amount(value, currency))
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.source = source
        self.charts: list[Chart] = []
        sns.set_theme(style="whitegrid")

    def _save(self, fig, slug: str, title: str, finding: str) -> None:
        path = self.out / f"{slug}.png"
        fig.suptitle(title, fontsize=12, fontweight="bold")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        self.charts.append(Chart(slug, title, finding, path))

    def pareto(self) -> None:
        revenue = self.df.groupby("user_id")["revenue"].sum().sort_values(ascending=False)
        share = revenue.cumsum() / revenue.sum()
        customers = np.arange(1, len(share) + 1) / len(share)
        top20 = float(share.iloc[max(int(0.2 * len(share)) - 1, 0)])
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(customers * 100, share.to_numpy() * 100, color="C0")
        ax.axvline(20, color="grey", ls="--")
        ax.axhline(top20 * 100, color="grey", ls="--")
        ax.set(xlabel="% of customers (by revenue, descending)", ylabel="% of revenue")
        self._save(fig, "pareto", "Revenue concentration (Pareto curve)",
                   f"The top 20% of customers bring {top20:.0%} of revenue.")

    def _money_axis(self, axis) -> None:
        axis.set_major_formatter(self.money)
        axis.set_major_locator(MaxNLocator(5))

    @property
    def revenue_label(self) -> str:
        return f"revenue ({self.currency})" if self.currency else "revenue"

    def top_products(self) -> None:
        top = self.df.groupby("item_id").agg(revenue=("revenue", "sum"), title=("description", "first"))
        top = top.sort_values("revenue", ascending=False).head(15)
        share = top["revenue"].sum() / self.df["revenue"].sum()
        fig, ax = plt.subplots(figsize=(8, 5))
        sns.barplot(x=top["revenue"], y=top["title"].str.slice(0, 34), ax=ax, color="C2")
        ax.set(xlabel=self.revenue_label, ylabel="")
        self._money_axis(ax.xaxis)
        self._save(fig, "top_products", "Top 15 products by revenue",
                   f"The 15 best-selling of {self.df['item_id'].nunique():,} products bring {share:.1%} of revenue; "
                   f"the first is {top['title'].iat[0]} ({amount(top['revenue'].iat[0], self.currency)}).")

    def categories(self) -> None:
        items = self.df.groupby("item_id").agg(description=("description", "first"), revenue=("revenue", "sum"))
        items["category"] = derive_categories(items["description"])
        by_cat = items.groupby("category")["revenue"].sum().sort_values(ascending=False)
        fig, ax = plt.subplots(figsize=(8, 5))
        sns.barplot(x=by_cat.to_numpy(), y=by_cat.index.str.slice(0, 45), ax=ax, color="C4")
        ax.set(xlabel=self.revenue_label, ylabel="category (named by its most typical product)")
        self._money_axis(ax.xaxis)
        self._save(fig, "categories", "Categories derived from descriptions (TF-IDF + K-Means)",
                   f"The largest derived category, '{by_cat.index[0]}', brings {by_cat.iat[0] / by_cat.sum():.0%} "
                   f"of revenue across {len(by_cat)} categories.")

    def prices(self) -> None:
        lines = self.df[self.df["price"] > 0]
        bands = pd.qcut(lines["price"], 5, duplicates="drop")
        units = lines.groupby(bands, observed=True)["quantity"].mean()
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        sns.histplot(np.log10(lines["price"]), bins=50, ax=axes[0], color="C1")
        axes[0].set(xlabel="unit price (log10)", ylabel="order lines")
        axes[0].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{self.currency}{10 ** v:,.2f}".rstrip("0")
                                                        .rstrip(".")))
        axes[0].set(xlabel="unit price (log scale)")
        axes[0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        axes[1].bar([f"{self.currency}{b.left:.2f}-{b.right:.2f}" for b in units.index], units.to_numpy(), color="C1")
        axes[1].set(xlabel="unit price band", ylabel="mean units per line")
        axes[1].tick_params(axis="x", rotation=30)
        self._save(fig, "prices", "Price distribution and price sensitivity",
                   f"Median unit price is {self.currency}{lines['price'].median():.2f}; lines in the cheapest band sell "
                   f"{units.iat[0] / units.iat[-1]:.1f}x the units of lines in the dearest band.")

    def seasonality(self) -> None:
        ts = self.df["timestamp"]
        monthly = self.df.groupby(ts.dt.to_period("M"))["revenue"].sum()
        weekday = self.df.groupby(ts.dt.day_name())["revenue"].sum()
        weekday = weekday.reindex([d for d in ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                                               "Sunday"] if d in weekday.index])
        hourly = self.df.groupby(ts.dt.hour)["revenue"].sum()
        partial = self.partial_months()
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        labels = monthly.index.astype(str)
        axes[0].plot(labels, monthly.to_numpy(), marker="o")
        for month, days in partial.items():
            at = labels.get_loc(str(month))
            axes[0].plot(at, monthly[month], marker="o", color="white", markeredgecolor="C0", markersize=9)
            axes[0].annotate(f"partial\n({days} days)", (at, monthly[month]), textcoords="offset points",
                             xytext=(0, 10), ha="center", fontsize=8)
        axes[0].tick_params(axis="x", rotation=60)
        axes[0].set(ylabel=self.revenue_label, title="by month (hollow: partial month)")
        axes[1].bar(weekday.index.str.slice(0, 3), weekday.to_numpy(), color="C3")
        axes[1].set(title="by weekday")
        axes[2].bar(hourly.index, hourly.to_numpy(), color="C5")
        axes[2].set(title="by hour", xlabel="hour of day")
        axes[2].set_xticks(range(0, 24, 3))
        for axis in axes:
            self._money_axis(axis.yaxis)
        full_months = monthly.drop(list(partial)) if len(partial) < len(monthly) else monthly
        self._save(fig, "seasonality", "Seasonality: month, weekday, hour",
                   f"The best full month is {full_months.idxmax()} ({full_months.max() / full_months.mean():.1f}x the "
                   f"mean of full months); {weekday.idxmax()} is the busiest weekday and {hourly.idxmax()}:00 the "
                   f"busiest hour.")

    def partial_months(self) -> dict[pd.Period, int]:
        """The first and last months when the data covers fewer than COMPLETE_SHARE of their days."""
        ts = self.df["timestamp"]
        first, last = ts.min(), ts.max()
        partial = {}
        for month, days in ((first.to_period("M"), first.days_in_month - first.day + 1), (last.to_period("M"), last.day)):
            if days < COMPLETE_SHARE * month.days_in_month:
                partial[month] = days
        return partial

    def countries(self) -> None:
        by_country = self.df.groupby("country")["revenue"].sum().sort_values(ascending=False)
        top = by_country.head(10)
        fig, ax = plt.subplots(figsize=(8, 4.5))
        sns.barplot(x=top.to_numpy(), y=top.index, ax=ax, color="C0")
        ax.set(xlabel=self.revenue_label, ylabel="")
        self._money_axis(ax.xaxis)
        self._save(fig, "countries", "Revenue by country (top 10)",
                   f"{top.index[0]} brings {top.iat[0] / by_country.sum():.0%} of revenue; "
                   f"{len(by_country)} countries buy in all.")

    def build(self) -> Path:
        for section in (self.pareto, self.top_products, self.categories, self.prices, self.seasonality, self.countries):
            section()
        return self._write_html()

    def _write_html(self) -> Path:
        df = self.df
        summary = (f"{len(df):,} order lines, {df['order_id'].nunique():,} orders, {df['user_id'].nunique():,} customers, "
                   f"{df['item_id'].nunique():,} products, {df['timestamp'].min():%Y-%m-%d} to {df['timestamp'].max():%Y-%m-%d}; "
                   f"{self.cancellations_matched:,} cancellations taken off the lines they cancel.")
        parts = [f"<h1>Exploratory analysis</h1><p>Data: {html.escape(self.source)}. {summary}</p><ul>"]
        parts += [f"<li><a href='#{c.slug}'>{html.escape(c.title)}</a>: {html.escape(c.finding)}</li>" for c in self.charts]
        parts.append("</ul>")
        for chart in self.charts:
            image = base64.b64encode(chart.path.read_bytes()).decode()
            parts.append(f"<section id='{chart.slug}'><h2>{html.escape(chart.title)}</h2>"
                         f"<p class='finding'>{html.escape(chart.finding)}</p>"
                         f"<img alt='{html.escape(chart.title)}' src='data:image/png;base64,{image}'></section>")
        page = ("<!doctype html><html><head><meta charset='utf-8'><title>EDA report</title><style>"
                "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
                "img{max-width:100%}.finding{font-weight:bold;color:#064}</style></head><body>"
                + "".join(parts) + "</body></html>")
        path = self.out / "eda.html"
        path.write_text(page)
        return path
