"""The pipeline definition is the one place names live; the handlers agree with it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from collections_ops import pipeline

ROOT = Path(__file__).resolve().parents[2]
LAMBDAS = ROOT / "lambdas"


def test_function_names_follow_the_guide():
    names = [fn.function_name("dev") for fn in pipeline.FUNCTIONS]
    assert names == ["collections-dev-ImageProcessorLambda", "collections-dev-AnalyzerLambda",
                     "collections-dev-EmbedderLambda"]
    assert pipeline.ANALYZER.rule_name("dev") == "collections-dev-ImageProcessedRule"
    assert pipeline.ANALYZER.role_name("dev") == "collections-dev-AnalyzerLambdaRole"
    assert pipeline.environment("prod").stack_name() == "CollectionsComputeStack-prod"
    assert pipeline.environment("dev").images_bucket("123456789") == \
        "collections-images-dev-123456789"
    dev = pipeline.environment("dev")
    # The guide's names: the API keys in the shared scope; DATABASE_URL per environment, and
    # beside it each function's own.
    assert [dev.parameter_name(s.name) for s in pipeline.SECRETS] == [
        "/collections/dev/DATABASE_URL", "/collections/dev/DATABASE_URL_PROCESSOR",
        "/collections/dev/DATABASE_URL_ANALYZER", "/collections/dev/DATABASE_URL_EMBEDDER",
        "/collections/ANTHROPIC_API_KEY",
        "/collections/OPENAI_API_KEY", "/collections/LANGSMITH_API_KEY",
        "/collections/VOYAGE_API_KEY"]
    assert dev.parameter_lookup("ANTHROPIC_API_KEY") == (
        "/collections/dev/ANTHROPIC_API_KEY", "/collections/ANTHROPIC_API_KEY")
    assert dev.parameter_lookup("DATABASE_URL") == ("/collections/dev/DATABASE_URL",)
    assert dev.record_parameter() == "/collections/dev/deployment"
    with pytest.raises(ValueError):
        dev.parameter_name("DATABASE_URL", "shared")


def _required_detail(handler: Path) -> tuple[str, ...]:
    tree = ast.parse(handler.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "REQUIRED_DETAIL" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError(f"{handler} has no REQUIRED_DETAIL")


@pytest.mark.parametrize("fn", [f for f in pipeline.FUNCTIONS if f.trigger.event])
def test_each_handler_requires_exactly_the_fields_its_event_promises(fn):
    assert fn.trigger.event is not None
    assert _required_detail(LAMBDAS / fn.code_dir / "handler.py") == \
        fn.trigger.event.required_detail


def test_helper_modules_in_function_directories_have_unique_names():
    """The local cloud loads all three functions in one interpreter."""
    seen: dict[str, str] = {}
    for fn in pipeline.FUNCTIONS:
        for path in (LAMBDAS / fn.code_dir).glob("*.py"):
            if path.name == "handler.py":
                continue
            assert path.stem not in seen, f"{path.stem} is in {seen.get(path.stem)} and {fn.key}"
            assert not (LAMBDAS / "shared" / f"{path.stem}.py").exists()
            seen[path.stem] = fn.key


def test_every_setting_the_functions_read_is_in_the_common_environment():
    env = pipeline.common_env(pipeline.environment("dev"), account="1",
                              dlq_urls={f.key: "u" for f in pipeline.FUNCTIONS})
    source = (LAMBDAS / "shared" / "collections_core" / "config.py").read_text()
    read = set(re.findall(r'env\("([A-Z_]+)"', source))
    assert read <= set(env), read - set(env)
    assert {f.dlq_env_var() for f in pipeline.FUNCTIONS} <= set(env)


def test_functions_import_nothing_from_the_cli_package():
    for path in LAMBDAS.rglob("*.py"):
        assert "collections_ops" not in path.read_text(), path


def test_required_secrets_follow_the_selected_providers():
    names = {s.name for s in pipeline.environment("dev").required_secrets()}
    assert names == {"DATABASE_URL", "ANTHROPIC_API_KEY", "VOYAGE_API_KEY"}
    assert pipeline.environment("local").required_secrets() == ()


def test_each_function_reads_its_own_database_url_and_only_the_operations_function_the_owners():
    from collections_core import roles

    for fn in pipeline.FUNCTIONS:
        # The shared code names a function's URL as the definition does.
        assert fn.database_url_name == roles.secret_name(fn.key)
        assert fn.database_url_name in fn.secrets and "DATABASE_URL" not in fn.secrets
        assert pipeline.secret(fn.database_url_name).used_by == (fn.key,)
        for database in ("collections", "d" * 70):
            assert fn.database_role(database) == roles.role_name(database, fn.key)
    assert pipeline.OPERATIONS.secrets == ("DATABASE_URL",)
    assert tuple(fn.key for fn in pipeline.FUNCTIONS) == roles.FUNCTION_KEYS
