"""The Redis client of every service: where Redis is and whether it is a cluster (`nodes`), raw RESP
pipelines for the hot paths (`resp`, `cluster`, `client`), the key layout and scripts (`scripts`),
expected cluster states (`states`) and redis-py for cold paths (`pyclient`). Imports no service."""
