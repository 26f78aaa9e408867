"""CLI subcommands. Each module here exposes ``register(subparsers)``; rig.cli.main discovers them.

Why discovery: each capability (check, sim, run, report, keys, ...) owns its command module, so
adding a command never edits a shared file.
"""
