"""Adapters that let other frameworks use a ragkit workspace.

Each integration lives in its own module and imports its framework only when that module is
imported, so ``import ragkit`` never needs them: ``from ragkit.integrations.langchain import
RagkitRetriever`` needs ``pip install 'ragkit[langchain]'``.
"""
