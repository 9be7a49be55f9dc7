"""Boards the project can reach in its own tests: an emulated aarch64 machine (:mod:`.qemu`).

Host-side tools (the standard library, Debian's QEMU and mmdebstrap); nothing here ships to a
board.
"""
