"""Engine pieces around mmengine's Runner: runtime fixes, hooks, checkpoint I/O, the atomic
writer, tool start-up, environment report and the private mmengine APIs in one place."""
