"""Resources configured from the environment when the code location loads (README
"Configuration").

Each `EnvSetting` (lib/settings.py) names one variable and the resource field it sets. Plain
settings are read when the definitions load, with their documented defaults. A secret is bound
as `dg.EnvVar`, which Dagster resolves when a run starts and hides in the UI; it is bound only
when the variable is set, so the embedded file-drop world needs none.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import dagster as dg

from orderwatch_dagster.lib.settings import EnvSetting


def resource_fields(settings: Sequence[EnvSetting]) -> dict[str, Any]:
    """Field values for a resource: plain settings read now, secrets as `dg.EnvVar`."""
    fields: dict[str, Any] = {}
    for setting in settings:
        if setting.secret:
            if os.environ.get(setting.name, "").strip():  # only whether it is set
                fields[setting.field] = dg.EnvVar(setting.name)
            continue
        value = setting.value()
        if value is not None:
            fields[setting.field] = value
    return fields
