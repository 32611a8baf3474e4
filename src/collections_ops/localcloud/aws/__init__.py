"""The local cloud's AWS: moto's server in its own process (`emulator`), the durable store it
writes through to (`store`), the front door that authenticates every request as AWS does
(`frontdoor`), the IAM evaluator and the roles' policies (`iam`, `policies`), the clients the
CLI and tests sign with (`access`), and every change made to moto (`moto_patches`, the registry;
`moto_tuning`, the speed-only caches)."""
