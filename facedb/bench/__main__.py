"""python -m facedb.bench ingest PATH | search: the same as `facedb bench ...`."""

import sys

from ..cli import cli

cli(["bench", *sys.argv[1:]], prog_name="python -m facedb.bench")
