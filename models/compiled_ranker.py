"""A LightGBM ranker's trees compiled to machine code (lleaves, on LLVM), to score the export's candidates.

Scoring every customer's candidates is the largest single cost of publishing lists: at 1M
order lines, LightGBM's own ``predict`` took about 40% of the export. The compiled trees give
the same scores (to the last bit or two of a double; lists rank them as float32) about
seven times as fast on one core. Each ranker is compiled once per process, on first use or
ahead of it (``compile_ahead``), in about a second: more than LightGBM takes to score one
validation period's candidates, which validation's rankers therefore score themselves. Forked
scoring processes inherit the compiled code. It stays in memory beside the ranker and never
travels with it: rankers are saved and loaded as LightGBM models. Where the trees cannot be
compiled (LLVM may find no executable memory on a locked-down host), LightGBM scores them
itself, with a warning.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import weakref
from typing import Iterable

import lleaves
import numpy as np
from lightgbm import LGBMClassifier, LGBMModel
from scipy.special import expit

log = logging.getLogger(__name__)

_compiled: weakref.WeakKeyDictionary[LGBMModel, lleaves.Model | None] = weakref.WeakKeyDictionary()
_compiling = threading.Lock()


def relevance(ranker: LGBMModel, features: np.ndarray, threads: int = 0) -> np.ndarray:
    """``ranker``'s score for each row of candidate ``features``, in (0, 1) and in the ranker's
    order: a classifier's probability that the candidate is bought, a ranking model's score
    through the logistic function; on ``threads`` threads (0: one per core)."""
    if len(features) == 0:  # lleaves would split no rows among threads in steps of zero, and fail
        return np.zeros(0)
    trees = _compiled_trees(ranker)
    if trees is None:
        return lightgbm_relevance(ranker, features, threads)
    scores = trees.predict(features, n_jobs=threads or os.cpu_count() or 1)  # a classifier's already probabilities
    return scores if isinstance(ranker, LGBMClassifier) else expit(scores)


def lightgbm_relevance(ranker: LGBMModel, features: np.ndarray, threads: int = 0) -> np.ndarray:
    """``relevance`` as LightGBM's own trees score it."""
    if isinstance(ranker, LGBMClassifier):
        return ranker.predict_proba(features, num_threads=threads)[:, 1]
    return expit(ranker.predict(features, num_threads=threads))


def compile_ahead(rankers: Iterable[LGBMModel]) -> None:
    """Compiles ``rankers`` now rather than on first use: on a thread of its own, compiling
    goes on beside other work instead of holding up the first scoring."""
    for ranker in rankers:
        _compiled_trees(ranker)


def _compiled_trees(ranker: LGBMModel) -> lleaves.Model | None:
    with _compiling:
        if ranker not in _compiled:
            try:
                _compiled[ranker] = _compile(ranker)
            except Exception as exc:  # whatever LLVM fails on, LightGBM can still score
                log.warning("ranker scored by LightGBM: its trees could not be compiled (%s)", exc)
                _compiled[ranker] = None
        return _compiled[ranker]


def _compile(ranker: LGBMModel) -> lleaves.Model:
    # lleaves reads a model only from a path: a private temporary file (mode 0600), removed
    # once compiled; the one file that code in models/ touches.
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as model_file:
        model_file.write(ranker.booster_.model_to_string())
        model_file.flush()
        trees = lleaves.Model(model_file=model_file.name)
        # The small code model addresses code within 2 GB, which a ranker's few hundred small
        # trees are far from: a fifth faster to score and a third faster to compile than the
        # default large one, with the same scores to the bit.
        trees.compile(fcodemodel="small")
    return trees
