"""`python -m text4vis ...` (used with torchrun: `torchrun --nproc_per_node N -m text4vis train ...`)."""

from text4vis.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
