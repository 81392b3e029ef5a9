"""A 1,000,000-row, 4-column DataFrame into an echo stage (sandboxed where bwrap
is usable) and back as Arrow IPC, against `df.to_parquet` + `pd.read_parquet`
in memory in this process, interleaved (target: <= 1.5). Served warm (the cell
imports pandas once per worker) that is the data's own path; cold, each call
also starts Python and imports pandas and pyarrow in the sandbox."""

from __future__ import annotations

import io
import os
import sys
import tempfile

import numpy as np
import pandas as pd

from ipyrunner import Stage
from ipyrunner.config import settings
from ipyrunner.sandbox.probe import bwrap_status
from ipyrunner.sinks import NullSink

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import interleaved, row  # benchmarks/timing.py, beside this file

ROWS = 1_000_000


def frame() -> pd.DataFrame:
    generator = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": np.arange(ROWS, dtype="int64"),
            "value": generator.random(ROWS),
            "flag": generator.random(ROWS) < 0.5,
            "group": pd.Categorical(generator.choice(["a", "b", "c", "d"], ROWS)),
        }
    )


def main(rounds: int) -> None:
    data = frame()
    config = settings()
    config.max_result = 1 << 30  # the frame is over the default 32M result cap
    isolate = "bwrap" if bwrap_status().usable else "none"
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        code = "import pandas, pyarrow\n\ndef execute(frame):\n    return frame\n"
        cold = Stage(code, isolate=isolate)
        warm = Stage(code, isolate=isolate, warm=isolate == "bwrap")

        def parquet() -> None:
            buffer = io.BytesIO()
            data.to_parquet(buffer)
            buffer.seek(0)
            pd.read_parquet(buffer)

        def staged(stage: Stage) -> None:
            result = stage.run(data, sink=NullSink(), config=config)
            assert result.ok, result.error

        staged(warm)  # the worker starts
        local, served = interleaved(parquet, lambda: staged(warm), max(rounds, 1))
        again, through = interleaved(parquet, lambda: staged(cold), max(rounds, 1))
        warm.close()
    print(row("1M x 4 frame: to_parquet + read_parquet", local))
    print(row(f"the same frame into a warm stage and back ({isolate})", served, local))
    print(row("to_parquet + read_parquet (paired with the next)", again))
    print(row(f"the same, a cold stage (Python, pandas, {isolate})", through, again))


if __name__ == "__main__":
    main(int(os.environ.get("BENCH_FRAME_ROUNDS", "5")))
