"""A script that fails the way real ones do: a clear message on stderr, exit 1."""

import sys

print("loading settings from data/settings.json ...", flush=True)
print(
    "error: data/settings.json does not exist; create it (see README) and run again",
    file=sys.stderr,
)
sys.exit(1)
