"""End-to-end, ClickHouse store: tests/e2e/test_collector.py run whole against a
real ClickHouse server (Debian's clickhouse-server on loopback ports, its own
data directory, stopped afterwards) instead of SQLite. Same agent, same
clients, same questions; the answers must be the same."""
import os
import runpy
import sys

os.environ["VIGIL_COLLECTOR_STORE"] = "clickhouse"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_collector.py"), run_name="__main__")
