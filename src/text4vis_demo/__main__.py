"""`python -m text4vis_demo [--quick] [--out DIR] ...`: the same as `text4vis demo ...`."""

import sys

from text4vis.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["demo", *sys.argv[1:]]))
