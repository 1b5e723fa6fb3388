"""The offline side: event history, the platform replay, and the `recsys` command."""

import models  # noqa: F401,E402  first: it sets how OpenMP's threads wait, before anything here loads OpenMP
