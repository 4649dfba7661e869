import sys

from gradflow.cli import main

sys.exit(main())
