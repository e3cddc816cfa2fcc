"""comicgen: turn a story written as YAML into comic pages."""

__version__ = "0.1.0"
