"""`recsys eda`: one self-contained HTML report plus a PNG per chart.

Every chart carries a one-line finding computed from the data.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from models.item_categories import derive_categories  # noqa: E402

@dataclass
class Chart:
    slug: str
    title: str
    finding: str
    path: Path


class EdaReport:
    def __init__(self, history: pd.DataFrame, out_dir: str | Path, source: str):
        self.df = history.assign(revenue=history["quantity"] * history["price"])
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

    def top_products(self) -> None:
        top = self.df.groupby("item_id").agg(revenue=("revenue", "sum"), title=("description", "first"))
        top = top.sort_values("revenue", ascending=False).head(15)
        share = top["revenue"].sum() / self.df["revenue"].sum()
        fig, ax = plt.subplots(figsize=(8, 5))
        sns.barplot(x=top["revenue"], y=top["title"].str.slice(0, 34), ax=ax, color="C2")
        ax.set(xlabel="revenue", ylabel="")
        self._save(fig, "top_products", "Top 15 products by revenue",
                   f"The 15 best-selling of {self.df['item_id'].nunique():,} products bring {share:.1%} of revenue; "
                   f"the first is {top['title'].iat[0]}.")

    def categories(self) -> None:
        items = self.df.groupby("item_id").agg(description=("description", "first"), revenue=("revenue", "sum"))
        items["category"] = derive_categories(items["description"])
        by_cat = items.groupby("category")["revenue"].sum().sort_values(ascending=False)
        fig, ax = plt.subplots(figsize=(8, 5))
        sns.barplot(x=by_cat.to_numpy(), y=by_cat.index, ax=ax, color="C4")
        ax.set(xlabel="revenue", ylabel="category (top TF-IDF terms)")
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
        axes[1].bar([f"{b.left:.2f}-{b.right:.2f}" for b in units.index], units.to_numpy(), color="C1")
        axes[1].set(xlabel="unit price band", ylabel="mean units per line")
        axes[1].tick_params(axis="x", rotation=30)
        self._save(fig, "prices", "Price distribution and price sensitivity",
                   f"Median unit price is {lines['price'].median():.2f}; lines in the cheapest band sell "
                   f"{units.iat[0] / units.iat[-1]:.1f}x the units of lines in the dearest band.")

    def seasonality(self) -> None:
        ts = self.df["timestamp"]
        monthly = self.df.groupby(ts.dt.to_period("M"))["revenue"].sum()
        weekday = self.df.groupby(ts.dt.day_name())["revenue"].sum()
        weekday = weekday.reindex([d for d in ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                                               "Sunday"] if d in weekday.index])
        hourly = self.df.groupby(ts.dt.hour)["revenue"].sum()
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        axes[0].plot(monthly.index.astype(str), monthly.to_numpy(), marker="o")
        axes[0].tick_params(axis="x", rotation=60)
        axes[0].set(ylabel="revenue", title="by month")
        axes[1].bar(weekday.index.str.slice(0, 3), weekday.to_numpy(), color="C3")
        axes[1].set(title="by weekday")
        axes[2].bar(hourly.index, hourly.to_numpy(), color="C5")
        axes[2].set(title="by hour", xlabel="hour of day")
        full_months = monthly.iloc[:-1] if len(monthly) > 1 else monthly
        self._save(fig, "seasonality", "Seasonality: month, weekday, hour",
                   f"The best month is {full_months.idxmax()} ({full_months.max() / full_months.mean():.1f}x the monthly "
                   f"mean); {weekday.idxmax()} is the busiest weekday and {hourly.idxmax()}:00 the busiest hour.")

    def countries(self) -> None:
        by_country = self.df.groupby("country")["revenue"].sum().sort_values(ascending=False)
        top = by_country.head(10)
        fig, ax = plt.subplots(figsize=(8, 4.5))
        sns.barplot(x=top.to_numpy(), y=top.index, ax=ax, color="C0")
        ax.set(xlabel="revenue", ylabel="")
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
                   f"{df['item_id'].nunique():,} products, {df['timestamp'].min():%Y-%m-%d} to {df['timestamp'].max():%Y-%m-%d}.")
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
