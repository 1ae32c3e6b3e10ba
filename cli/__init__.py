"""The ``ragkit`` command line: one file per command, each only parses, calls the API, renders."""
