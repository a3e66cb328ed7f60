"""The action stage's resources, bound from the environment when the code location loads."""

import dagster as dg

from orderwatch_dagster.defs.actions.resources import controls_from_env, sink_from_env


@dg.definitions
def actions() -> dg.Definitions:
    return dg.Definitions(
        resources={"action_sink": sink_from_env(), "action_controls": controls_from_env()}
    )
