"""Resources configured from the environment when the code location loads (README
"Configuration").

Each `EnvSetting` (lib/settings.py) names one variable and the resource field it sets. Plain
settings are read when the definitions load, with their documented defaults. A secret is bound
as `dg.EnvVar`, which Dagster resolves when a run starts and hides in the UI. Whether a secret
is bound depends on the settings only (a connector's key once its transport is `http`, the
PostgreSQL password unless ORDERWATCH_PG_AUTH is `trust`), never on whether the variable happens
to be set where the definitions load: a code server without the key, with the key injected
into the run workers only, still binds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from orderwatch_dagster.lib.settings import EnvSetting


def resource_fields(settings: Sequence[EnvSetting], *, bind_secrets: bool) -> dict[str, Any]:
    """Field values for a resource: plain settings read now; with `bind_secrets`, every secret
    as `dg.EnvVar` (a run then fails at launch, naming the variable, if it is unset there)."""
    fields: dict[str, Any] = {}
    for setting in settings:
        if setting.secret:
            if bind_secrets:
                fields[setting.field] = dg.EnvVar(setting.name)
            continue
        value = setting.value()
        if value is not None:
            fields[setting.field] = value
    return fields
