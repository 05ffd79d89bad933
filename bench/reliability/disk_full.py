"""The SQLite store on a full disk: the daemon stays up, ingest answers 503, nothing lost.

The scenario lives with the tests (``tests/reliability/disk_full.py``, where its usage
and checks are described); this script runs it with the command-line options.
"""

import asyncio
import sys
from pathlib import Path

# A script, not a test: the scenarios are importable from tests/ (pytest puts it
# on the path for the tests themselves).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from reliability.disk_full import main, parse_args

if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
