import sys

from apiary.cli import main

sys.exit(main())
