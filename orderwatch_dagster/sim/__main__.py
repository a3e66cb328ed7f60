from orderwatch_dagster.sim.cli import main

if __name__ == "__main__":  # guard: worker processes may re-import this module
    raise SystemExit(main())
