"""raynode.dag: lazy task graphs built with ``.bind()``, run with ``execute``."""
