import sys

from mobilenetv3.cli import main

sys.exit(main())
