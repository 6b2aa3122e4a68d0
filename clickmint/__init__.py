"""Clickmint: the command line, the embedded servers and what the services share."""
