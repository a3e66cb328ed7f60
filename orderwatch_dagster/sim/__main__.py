from orderwatch_dagster.sim.cli import main

raise SystemExit(main())
