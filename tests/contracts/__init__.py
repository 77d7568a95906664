"""Contracts: observations of real OrbStack from public sources, replayed against the client
and the emulator (see transcripts.py for the format)."""
