"""A Celery worker whose protect job is the fast stand-in (for queue-mechanics tests).

``python tests/fake_worker.py worker --queues gpu,cpu``; ``FC_FAKE_DELAY`` sets seconds per photo.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import facecloak.contract.runner as runner
from service.commands import main
from tests.service_fixtures import fake_protect

runner._protect = fake_protect(float(os.environ.get("FC_FAKE_DELAY", "0.05")))
runner._verify = lambda original, protected, models: {"sizes": [len(original), len(protected)]}

if __name__ == "__main__":
    sys.exit(main())
