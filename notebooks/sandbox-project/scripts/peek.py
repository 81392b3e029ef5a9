"""What a script sees of its project: read data, try the .env, write into out/."""

import os
from pathlib import Path

project = Path(os.environ["PROJECT_DIRECTORY"])

for name in ["data/readings.csv", ".env"]:
    try:
        lines = (project / name).read_text().splitlines()
        print(f"read  {name}: {len(lines)} lines")
    except OSError as e:
        print(f"read  {name}: {type(e).__name__}: {e.strerror}")

try:
    (project / "out" / "peek.txt").write_text("written by scripts/peek.py\n")
    print("write out/peek.txt: done")
except OSError as e:
    print(f"write out/peek.txt: {type(e).__name__}: {e.strerror}")
