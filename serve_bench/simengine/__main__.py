from serve_bench.simengine.server import main

main()
