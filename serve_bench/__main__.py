import sys

from serve_bench.cli.main import main

sys.exit(main())
