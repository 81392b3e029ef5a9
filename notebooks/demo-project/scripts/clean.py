"""Clean data/raw.csv into data/clean.csv.

Rules: trim and collapse whitespace, capitalise names and cities, lower-case
e-mail addresses, parse amounts ("$99.95", "1,250.00", " 42 "), and drop
blank rows, rows without a name or e-mail address, rows whose amount is not a
non-negative number, and duplicates (same e-mail address, first one wins).

Paths are relative to the project directory ($PROJECT_DIRECTORY, which
ipyrunner sets for every script).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

FIELDS = ["name", "email", "city", "amount"]
THOUSANDS = re.compile(r"\d{1,3}(,\d{3})+(\.\d+)?")
PAUSE = 0.15  # seconds per row, so the live output visibly streams


def say(line: str) -> None:
    print(line, flush=True)  # flush: each line shows up as soon as it is printed


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def project_path(relative: str) -> Path:
    return Path(os.environ.get("PROJECT_DIRECTORY", ".")) / relative


def words(text: str) -> str:
    """Trim, collapse inner whitespace, capitalise the first letter of each word."""
    return " ".join(word[:1].upper() + word[1:] for word in text.split())


def amount(text: str) -> float:
    text = text.strip().removeprefix("$")
    if THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    value = float(text)  # ValueError for "n/a", "12..5", ...
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{value} is not a non-negative amount")
    return value


def clean_row(record: list[str]) -> dict[str, str]:
    """One cleaned row, or ValueError with the reason it is dropped."""
    if not any(cell.strip() for cell in record):
        raise ValueError("blank")
    name, email, city, raw_amount = (record + [""] * 4)[:4]
    row = {"name": words(name), "email": email.strip().lower(), "city": words(city)}
    if not row["name"]:
        raise ValueError("missing name")
    if "@" not in row["email"]:
        raise ValueError("missing e-mail")
    try:
        row["amount"] = f"{amount(raw_amount):.2f}"
    except ValueError:
        raise ValueError(f"bad amount {raw_amount.strip()!r}") from None
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="read only the first N rows of the input")
    parser.add_argument("--input", default="data/raw.csv", help="default: %(default)s")
    parser.add_argument("--output", default="data/clean.csv", help="default: %(default)s")
    parser.add_argument("--dry-run", action="store_true", help="clean, but write nothing")
    args = parser.parse_args()

    source = project_path(args.input)
    with source.open(newline="", encoding="utf-8") as handle:
        records = list(csv.reader(handle))[1:]  # skip the header
    todo = records if args.limit is None else records[: max(args.limit, 0)]
    say(f"cleaning {args.input}: {plural(len(records), 'row')}, reading {len(todo)}")

    kept: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    dropped: Counter[str] = Counter()
    for number, record in enumerate(todo, 1):
        time.sleep(PAUSE)
        try:
            row = clean_row(record)
        except ValueError as exc:
            reason = str(exc)
            dropped[reason.split(" '")[0]] += 1
            say(f"  row {number:>2}: dropped ({reason})")
            continue
        if row["email"] in seen:
            dropped["duplicate"] += 1
            say(f"  row {number:>2}: dropped (duplicate of row {seen[row['email']]})")
            continue
        seen[row["email"]] = number
        kept.append(row)
        say(f"  row {number:>2}: kept    {row['name']} <{row['email']}> {row['amount']}")

    if args.dry_run:
        print("dry run: nothing written")
    else:
        target = project_path(args.output)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(kept)
        print(f"wrote {args.output}")
    why = ", ".join(f"{reason} {count}" for reason, count in sorted(dropped.items()))
    unread = len(records) - len(todo)
    print(
        f"summary: read {plural(len(todo), 'row')}, kept {len(kept)}, "
        f"dropped {sum(dropped.values())}"
        + (f" ({why})" if why else "")
        + (f", left {unread} unread (--limit {args.limit})" if unread else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
