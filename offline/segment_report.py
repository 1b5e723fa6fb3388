"""`recsys segment`: the silhouette curve, a plot of the segments, profiles, and the per-customer file."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from models.segments import CustomerSegmentation  # noqa: E402


def write_segment_report(seg: CustomerSegmentation, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ks = sorted(seg.silhouette)
    ax.plot(ks, [seg.silhouette[k] for k in ks], marker="o")
    ax.axvline(seg.k, color="grey", ls="--")
    ax.set(xlabel="k (clusters)", ylabel="silhouette", title=f"K-Means silhouette: k = {seg.k} chosen")
    fig.tight_layout()
    fig.savefig(out / "silhouette.png", dpi=110)
    plt.close(fig)

    frame = seg.features.assign(segment=seg.labels)
    sizes = frame["segment"].value_counts()
    colours = dict(zip(sizes.index, sns.color_palette(n_colors=len(sizes))))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    sns.scatterplot(data=frame, x="recency_days", y="monetary", hue="segment", hue_order=list(sizes.index),
                    palette=colours, s=12, alpha=0.6, ax=axes[0])
    axes[0].set(yscale="log", xlabel="days since last order", ylabel="total spend (log)", title="customers")
    axes[1].barh(sizes.index, sizes.to_numpy(), color=[colours[name] for name in sizes.index])
    axes[1].set(xlabel="customers", title="segment sizes")
    fig.tight_layout()
    fig.savefig(out / "segments.png", dpi=110)
    plt.close(fig)

    profiles = pd.DataFrame([{"segment": p.name, "customers": p.customers, "rule": p.rule, **p.centroid}
                             for p in seg.profiles.values()])
    profiles.to_csv(out / "profiles.csv", index=False)
    frame.rename_axis("user_id").reset_index().to_csv(out / "customers.csv", index=False)
    return {"silhouette": out / "silhouette.png", "segments": out / "segments.png",
            "profiles": out / "profiles.csv", "customers": out / "customers.csv"}
