"""The local cloud's Lambda service: the dispatcher that polls the trigger queues and invokes
the handlers with Lambda's asynchronous-invocation semantics (`dispatcher`), the in-process
runtime that loads and runs a function's package (`lambda_runtime`), version numbering as AWS
does it (`lambda_versions`), and hot reload of changed code (`watch`)."""
