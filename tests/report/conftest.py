from __future__ import annotations

from typing import Any

import pytest

from tests.report.report_sample import make_metrics


@pytest.fixture
def metrics() -> dict[str, Any]:
    return make_metrics()
