"""The feature store: Parquet tables read through DuckDB, one feature at a time.

`open_store(path)` gives a `FeatureStore` (the app's read API); `analyze(...)` fills a store
from a model and SAEs; `write_table` lets other packages add rows (complexity, shortcut).
`update_sae` / `update_features` add what later stages compute. Names load on first use: the
reader needs no torch, and `import featlab.store` needs neither torch nor DuckDB.
"""

from __future__ import annotations

from featlab._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("NotAStoreError", "StoreError", "StoreFormatError"), "featlab.store.errors"),
    **dict.fromkeys(("FeatureCard", "FeatureStore", "open_store"), "featlab.store.reader"),
    **dict.fromkeys(("FORMAT_VERSION", "SCHEMAS", "TABLES"), "featlab.store.schema"),
    **dict.fromkeys(("init_store", "write_table"), "featlab.store.writer"),
    **dict.fromkeys(("update_features", "update_sae"), "featlab.store.update"),
    **dict.fromkeys(("analyze", "AnalyzeConfig"), "featlab.store.analysis"),
    "top_features_for_prompt": "featlab.store.live",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
__all__ = sorted(_EXPORTS)
