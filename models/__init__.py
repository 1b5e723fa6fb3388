"""Pure recommendation algorithms: no I/O, one small contract (see models.base)."""

import os

# LightGBM, implicit and scikit-learn share one OpenMP runtime (GNU's, in their Linux wheels),
# whose idle threads spin this many times before they sleep; it reads this when it loads. Its own
# 300,000 spins suit an idle machine, but where other processes keep the cores busy (a worker
# beside the trainer, a test run) the spinning threads hold the cores that the threads they wait
# for need: beside one busy process per core, learning one ranker took 16x as long as on an idle
# machine, and 2.5x at 20,000 spins (bench/busy_cores.py), while training at 1M order lines on
# an idle machine took 1.04x as long at 20,000. An operator's own setting stands.
os.environ.setdefault("GOMP_SPINCOUNT", "20000")
