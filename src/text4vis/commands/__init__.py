"""Command-line commands; each module defines `register(subparsers)`. See `text4vis.cli`."""
