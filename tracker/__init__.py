"""The tracker: redirects, pixels and postbacks answered from memory, events into Redis Streams."""
