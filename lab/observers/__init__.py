"""Observers: how the lab looks at a worker and a broker, apart from any scenario.

Contract: observers read (the process table, the log, the journal, the
broker) and never decide a verdict; scenarios keep only their workload and
their judge. Modules:
  exit            exit_observation (exit code, orphans, log facts) and the start-failure judge
  broker_snapshot where a message is now (read-only look into the broker)
  drain           a fresh worker on the same queue shows what went back to the broker
  start_watch     one start watched as `lab diagnose` does (silent-exit)
"""
