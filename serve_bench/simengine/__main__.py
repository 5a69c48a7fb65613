"""``python -m serve_bench.simengine``: the known-capacity engine's server."""

from serve_bench.simengine.server import main

if __name__ == "__main__":
    main()
