import sys

from tuiaudit.cli import main

sys.exit(main())
