"""The shared kernel: money, the event contract, Redis keys and client, settings, logs, client addresses. Imports no service."""
