"""Retrieval: metadata filters, dense search through an alias, and (later) fusion and rerank."""

from ragkit.retrieval.filters import Filter, parse_filters

__all__ = ["Filter", "parse_filters"]
