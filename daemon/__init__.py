"""The running service: ingest API, background components, command loop.

``daemon/`` never imports ``textual``: the data plane must run on a server
with no terminal UI installed.
"""
