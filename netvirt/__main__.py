import sys

from netvirt.cli import main

sys.exit(main())
