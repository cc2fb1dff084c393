"""Run several `posttrain` command lines one after another in each torchrun process (one start-up, one process group
for all of them): `torchrun --nproc_per_node=2 tests/torchrun_commands.py COMMANDS.json`, a JSON list of argv lists.
Exits with the first non-zero code."""

import json
import sys
from pathlib import Path

from posttrain.cli import main

if __name__ == "__main__":
    for argv in json.loads(Path(sys.argv[1]).read_text()):
        code = main(argv)
        if code:
            sys.exit(code)
