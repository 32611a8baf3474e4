"""The local cloud's Lambda service: the dispatcher that polls the trigger queues and invokes
the handlers with Lambda's asynchronous-invocation semantics (`dispatcher`; its retry and
dead-letter policy in `retry_policy`, its crash journal in `journal`, reserved concurrency in
`concurrency`, its logs and metrics in `telemetry`), the in-process runtime that loads and runs
a function's package (`lambda_runtime`), version numbering as AWS does it (`lambda_versions`),
and hot reload of changed code (`watch` in the CLI and the emulator, `reloader` in each
dispatcher)."""
