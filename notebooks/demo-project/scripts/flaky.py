"""Fails its first two attempts and succeeds on the third, like a flaky upstream.

Attempts are counted in data/flaky.attempts.out (deleted on success; a count
older than a minute is stale and starts over).
"""

import os
import sys
import time
from pathlib import Path

SUCCEED_ON = 3
counter = Path(os.environ.get("PROJECT_DIRECTORY", ".")) / "data" / "flaky.attempts.out"

attempt = 1
if counter.exists() and time.time() - counter.stat().st_mtime < 60:
    attempt = int(counter.read_text() or 0) + 1
counter.write_text(str(attempt))

print(f"attempt {attempt}: calling the upstream service ...", flush=True)
time.sleep(0.2)
if attempt < SUCCEED_ON:
    print(f"attempt {attempt}: upstream not ready (503), giving up", file=sys.stderr)
    sys.exit(1)
counter.unlink()
print(f"attempt {attempt}: upstream answered, done")
