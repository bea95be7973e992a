"""``python -m onnxplain``: the same as the ``onnxplain`` command."""

import sys

from onnxplain.cli import main

sys.exit(main())
