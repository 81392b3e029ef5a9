"""Prints which environment variables this script sees (names, not values)."""

import os

print("variables:", " ".join(sorted(os.environ)))
print("DEMO_API_TOKEN present:", "yes" if "DEMO_API_TOKEN" in os.environ else "no")
if "DEMO_VISIBLE" in os.environ:
    print("DEMO_VISIBLE =", os.environ["DEMO_VISIBLE"])
