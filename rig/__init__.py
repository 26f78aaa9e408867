"""Controller for an intrathecal drug-pump verification rig."""

__version__ = "0.1.0"
