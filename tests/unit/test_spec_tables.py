"""The docs' tables of what each role may do, what is alarmed, the queues, the rules and the
parameters are the definition's specs (`pipeline.permissions`, `pipeline.alarms`,
`pipeline.queues`, `pipeline.rules`, `pipeline.parameters`) rendered: one changed in the
definition and not in docs/operations.md fails here.

`python -m tests.unit.test_spec_tables` rewrites the tables from the definition.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from collections_ops.pipeline import (
    DEPLOYED_FUNCTIONS,
    LOCAL_ENV,
    alarms,
    environment,
    parameters,
    permissions,
    queues,
    rules,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
ENV = "dev"  # the tables show dev; prod's differ in the environment's name and timeouts


def _cell(items: list[str]) -> str:
    return "<br>".join(f"`{item}`" for item in items) if items else ""


def permissions_table() -> str:
    env = environment(ENV)
    rows = ["| function | policy | statement | actions | resources | conditions |",
            "|---|---|---|---|---|---|"]
    for fn in DEPLOYED_FUNCTIONS:
        for policy in permissions.role_policies(env, fn):
            name = policy.name if policy.inline else "CDK's default policy"
            for statement in policy.statements:
                conditions = [f"{c.operator} {c.key}: " + (
                    c.value if isinstance(c.value, str) else ", ".join(c.value))
                    for c in statement.conditions]
                rows.append(f"| {fn.key} | {name} | {statement.sid or ''} | "
                            f"{_cell(sorted(statement.actions))} | "
                            f"{_cell(list(statement.resources))} | {_cell(conditions)} |")
    return "\n".join(rows)


def alarms_table() -> str:
    rows = ["| alarm | metric | statistic | fires when | what it means |",
            "|---|---|---|---|---|"]
    for alarm in alarms.alarms(environment(ENV)):
        dimensions = ", ".join(f"{n}={v}" for n, v in alarm.dimensions)
        rows.append(f"| `{alarm.name}` | {alarm.namespace} {alarm.metric} ({dimensions}) | "
                    f"{alarm.statistic} over {alarm.period_s} s | "
                    f"{alarm.comparison} {alarm.threshold} | {alarm.description} |")
    return "\n".join(rows)


def queues_table() -> str:
    env = environment(ENV)
    rows = ["| queue | function | purpose | kept | encrypted | TLS only | who may send | "
            "on failure of |", "|---|---|---|---|---|---|---|---|"]
    invocations = {i.on_failure_queue: i for i in queues.async_invocations(env)}
    # dev's queues, then the trigger queues, which only the local cloud has.
    local = [q for q in queues.queues(environment(LOCAL_ENV), local=True) if q.local_only]
    for queue in (*queues.queues(env, local=False), *local):
        senders = [s.rule for s in queue.senders]
        invocation = invocations.get(queue.name)
        failures = ([f"{invocation.function} ({', '.join(invocation.qualifiers)}): "
                     f"{invocation.retry_attempts} retries, events up to "
                     f"{invocation.max_event_age_s} s old"] if invocation else [])
        rows.append(f"| `{queue.name}` | {queue.function} | {queue.purpose}"
                    f"{' (local cloud only)' if queue.local_only else ''} | "
                    f"{queue.retention_s // 86400} days | "
                    f"{'SQS-managed' if queue.sqs_managed_sse else 'no'} | "
                    f"{'yes' if queue.tls_only else 'no'} | {_cell(senders)} | "
                    f"{'; '.join(failures)} |")
    return "\n".join(rows)


def rules_table() -> str:
    rows = ["| rule | source | detail-type | target | retries | event age | dead-letter queue |",
            "|---|---|---|---|---|---|---|"]
    for rule in rules.rules(environment(ENV)):
        rows.append(f"| `{rule.name}` | `{rule.source}` | `{rule.detail_type}` | "
                    f"`{rule.target_function}:{rule.target_qualifier}` ({rule.target_id}) | "
                    f"{rule.retry_attempts} | {rule.max_event_age_s} s | "
                    f"`{rule.dead_letter_queue}` |")
    return "\n".join(rows)


def parameters_table() -> str:
    rows = ["| parameter | scope | holds | read by | written by |", "|---|---|---|---|---|"]
    for parameter in parameters.parameters(environment(ENV)):
        writer = parameter.writer + (" (locally: the local cloud)" if parameter.local_cloud
                                     else "")
        rows.append(f"| `{parameter.name}` | {parameter.scope} | {parameter.holds} | "
                    f"{', '.join(parameter.readers)} | {writer} |")
    return "\n".join(rows)


TABLES = {"permissions": permissions_table, "alarms": alarms_table, "queues": queues_table,
          "rules": rules_table, "parameters": parameters_table}


def _block(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- {name} table: generated -->\n)(.*?)(\n<!-- end of {name} table -->)",
                      re.S)


def _documented(name: str) -> str:
    found = _block(name).search(DOC.read_text())
    assert found, f"docs/operations.md has no generated {name} table"
    return found.group(2)


@pytest.mark.parametrize("table", TABLES)
def test_the_docs_table_is_the_definitions(table: str) -> None:
    assert _documented(table) == TABLES[table](), (
        "docs/operations.md: run `python -m tests.unit.test_spec_tables`")


if __name__ == "__main__":
    text = DOC.read_text()
    for table, render in TABLES.items():
        text, found = _block(table).subn(lambda m, r=render: m.group(1) + r() + m.group(3), text)
        if not found:
            sys.exit(f"docs/operations.md has no generated {table} table")
    DOC.write_text(text)
