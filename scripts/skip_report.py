"""Print the skip report pytest wrote (ABSTRACTVISION_SKIP_REPORT) and fail on unexpected skips.

usage: python scripts/skip_report.py test-artifacts/skips.json
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> int:
    with open(path, encoding="utf-8") as fh:
        skips = json.load(fh)["skips"]
    print(f"skip report: {len(skips)} skipped")
    for skip in skips:
        print(f"  {'allowed   ' if skip['allowed'] else 'UNEXPECTED'} {skip['test']}: {skip['reason']}")
    unexpected = [s for s in skips if not s["allowed"]]
    if unexpected:
        print(f"{len(unexpected)} unexpected skip(s): see tests/_skip_policy.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
