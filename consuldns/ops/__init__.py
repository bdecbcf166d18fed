"""Running consuldns: settings and the TOML config (settings, config, validate), turning them
into running objects (build), the process lifecycle (app, reload, workers, privileges) and
what operators read (admin, metrics, querylog, cacheview). May import every other package
but cli."""
