import sys

from .selector import main

sys.exit(main())
