"""Writes output forever: what an output cap is for."""

import itertools
import sys

for number in itertools.count(1):
    sys.stdout.write(f"line {number:>9}: all work and no play makes a very noisy script\n")
