"""Typer command groups; each module holds one group and only parses arguments."""
