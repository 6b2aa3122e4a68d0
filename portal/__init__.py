"""The partner and operator portal: JSON API and server-rendered pages, in its own process."""
