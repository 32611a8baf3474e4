"""The installed `collections` CLI, driven as a subprocess against a real local cloud: the
README's main job, the guide's SQL, secrets that never leak, and a crashed part reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests import images
from tests.e2e.cli import owner_url, run, upload_golden

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "test-image.jpg"
CANARY = "sk-ant-e2e-canary-5b7c9d1e3f"





def test_deploying_twice_is_harmless(cli_env):
    again = run(cli_env, "deploy", "local")
    assert again.returncode == 0
    assert "already running" in again.stdout


def test_status_json_describes_the_local_cloud(cli_env):
    result = run(cli_env, "status", "--env", "local", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["endpoint_url"].startswith("http://127.0.0.1:")
    assert status["region"] == "us-east-1"
    assert status["buckets"]["images"] == "collections-images-local-123456789012"
    assert status["database_url"].startswith("postgresql://")
    password = urlsplit(owner_url(status)).password
    assert password and password not in result.stdout  # shown masked
    assert ":****@" in status["database_url"]
    assert status["functions"] == {
        "processor": "collections-local-ImageProcessorLambda",
        "analyzer": "collections-local-AnalyzerLambda",
        "embedder": "collections-local-EmbedderLambda"}
    assert all(part["up"] for part in status["parts"].values()), status["parts"]


def test_the_main_job_uploads_follows_and_verifies_the_sample(cli_env):
    upload = run(cli_env, "test-upload", str(SAMPLE), "--user", "user123", "--follow",
                 "--timeout", "60")
    assert upload.returncode == 0, upload.stdout + upload.stderr
    for stage in ("thumbnail", "analysis", "embedding"):
        assert f"✓ {stage} in" in upload.stdout
    assert "Embedding stored in pgvector" in upload.stdout

    verify = run(cli_env, "verify", "test-image", "--env", "local", "--json")
    assert verify.returncode == 0, verify.stderr
    report = json.loads(verify.stdout)
    assert report["ok"] is True
    assert report["analysis"]["category"] and report["analysis"]["summary"]
    assert report["embedding"]["stored_dimensions"] == report["embedding"]["embedding_dimensions"]

    import psycopg
    status = json.loads(run(cli_env, "status", "--json").stdout)
    with psycopg.connect(owner_url(status)) as conn:
        assert conn.execute("SELECT * FROM items WHERE id = 'test-image'").fetchall()
        assert conn.execute("SELECT id, item_id, category, summary FROM analyses"
                            " WHERE item_id = 'test-image'").fetchall()
        assert conn.execute("SELECT id, item_id, embedding_model, embedding_dimensions"
                            " FROM embeddings WHERE item_id = 'test-image'").fetchall()


def test_search_finds_the_sample_by_what_its_analysis_says(cli_env):
    verify = json.loads(run(cli_env, "verify", "test-image", "--json").stdout)
    summary = verify["analysis"]["summary"]
    result = run(cli_env, "search", summary, "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert hits[0]["item_id"] == "test-image" and hits[0]["similarity"] > 0.5
    none = run(cli_env, "search", summary, "--user", "nobody", "--json")
    assert json.loads(none.stdout) == []


def test_search_for_cat_finds_the_cat_photo_first(cli_env, tmp_path):
    # GIVEN scikit-image's cat (chelsea) and, as a distractor, its rocket, through the pipeline
    upload_golden(cli_env, tmp_path, "photos", {"chelsea": "chelsea.png", "rocket": "rocket.jpg"})

    # WHEN the offline search is asked for "cat", across every user's items
    result = run(cli_env, "search", "cat", "--env", "local", "--json")

    # THEN the cat comes first: the analysis named it and the embedding knows the word
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert hits[0]["item_id"] == "chelsea", hits
    assert "cat" in hits[0]["summary"]


def test_eval_uploads_a_golden_set_and_reports_recall_and_mrr(cli_env, tmp_path):
    # GIVEN a golden set of two photos and three queries (the bundled one has 16 and 24)
    golden = tmp_path / "golden.json"
    golden.write_text(json.dumps({
        "photos": {"cat": "chelsea.png", "cup": "coffee.png"},
        "queries": [{"query": "cat", "expected": ["cat"]},
                    {"query": "espresso", "expected": ["cup"]},
                    {"query": "a cup of coffee", "expected": ["cup"]}]}))

    # WHEN eval runs it through the local cloud
    result = run(cli_env, "eval", "local", "--golden", str(golden), "-o", "json")

    # THEN every query found its photo first, among that run's photos only
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["photos"], report["queries"]) == (2, 3)
    assert report["model"] == "multilingual-e5-small-q4"
    assert report["recall_at_1"] == report["recall_at_5"] == report["mrr"] == 1.0
    assert {tuple(r["ranked"]) for r in report["results"]} <= {("cat", "cup"), ("cup", "cat")}



def test_eval_compare_scores_a_candidate_beside_the_pipeline_and_writes_nothing(cli_env,
                                                                                tmp_path):
    # GIVEN the same two-photo golden set, and the rows the database holds before
    import psycopg

    golden = tmp_path / "golden.json"
    golden.write_text(json.dumps({
        "photos": {"cat": "chelsea.png", "cup": "coffee.png"},
        "queries": [{"query": "cat", "expected": ["cat"]},
                    {"query": "espresso", "expected": ["cup"]}]}))
    status = json.loads(run(cli_env, "status", "--json").stdout)

    def counts():
        with psycopg.connect(owner_url(status)) as conn:
            return [conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                    for table in ("analyses", "embeddings")]

    before = counts()

    # WHEN eval compares the offline colours-only analysis with the hash embedding
    result = run(cli_env, "eval", "local", "--golden", str(golden), "--compare",
                 "local-pillow-v1+local-hash-v1", "-o", "json")

    # THEN both pairs are scored on the same photos, each item's analysis is diffed,
    assert result.returncode == 0, result.stdout + result.stderr
    compared = json.loads(result.stdout)
    assert compared["baseline"] == "local-mobilenet-v2 + multilingual-e5-small-q4"
    assert compared["candidate"] == "local-pillow-v1 + local-hash-v1"
    assert compared["figures"]["baseline"]["recall_at_1"] == 1.0
    cat = next(i for i in compared["items"] if i["item_id"] == "cat")
    assert "cat" in cat["summary"][0] and "cat" in cat["tags_removed"]  # the stored analysis
    assert [q["query"] for q in compared["queries"]] == ["cat", "espresso"]
    assert compared["cost"]["offline"] and compared["cost"]["run_usd"] == 0.0
    # and only the pipeline's own run wrote rows (two photos), the candidate none
    assert [b + 2 for b in before] == counts()


def test_a_failing_stage_is_named_with_its_own_exit_code(cli_env, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(images.truncated(images.photo(1200, 900)))
    result = run(cli_env, "test-upload", str(broken), "--follow", "--timeout", "30")
    assert result.returncode == 7, result.stdout + result.stderr
    assert "the thumbnail stage (processor) failed" in result.stderr
    assert "corrupt or truncated" in result.stderr


def test_the_failed_upload_is_in_the_dead_letter_queue_and_can_be_redriven(cli_env):
    shown = run(cli_env, "dlq", "show", "processor", "--json")
    assert shown.returncode == 0, shown.stderr
    [failed] = [f for f in json.loads(shown.stdout) if f["item_id"] == "broken"]
    assert failed["condition"] == "TerminalError" and "truncated" in failed["error_message"]
    dry = json.loads(run(cli_env, "dlq", "redrive", "processor", "--dry-run", "--json").stdout)
    assert dry["dry_run"] is True
    listed = json.loads(run(cli_env, "dlq", "list", "--json").stdout)
    assert {q["function_key"]: q["depth"] for q in listed}["processor"] >= 1, "nothing removed"


def test_verify_of_the_failed_upload_says_where_and_why_and_redrive_keeps_it(cli_env):
    result = run(cli_env, "verify", "broken")
    assert result.returncode == 8, result.stdout + result.stderr
    assert "failed in the processor" in result.stderr and "truncated" in result.stderr
    assert "failed in the processor" in result.stdout  # the check in the table
    redrive = run(cli_env, "dlq", "redrive", "processor", "--json")
    assert redrive.returncode == 0, redrive.stderr
    report = json.loads(redrive.stdout)
    assert report["skipped_terminal"] >= 1
    skipped = [o for o in report["outcomes"] if o["item_id"] == "broken"]
    assert skipped and all(o["status"] == "skipped" and o["terminal"] for o in skipped)
    listed = json.loads(run(cli_env, "dlq", "list", "--json").stdout)
    assert {q["function_key"]: q["depth"] for q in listed}["processor"] >= 1, "kept"


def test_load_test_reports_throughput_and_stage_latencies(cli_env):
    result = run(cli_env, "load-test", "local", "--count", "6", "--concurrency", "3", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["completed"] == 6 and report["throughput_per_s"] > 0
    assert report["latency_s"]["end_to_end"]["p50"] > 0


def test_versions_and_a_function_rollback_from_the_cli(cli_env):
    listed = json.loads(run(cli_env, "versions", "embedder", "--json").stdout)
    assert [(v["version"], v["live"]) for v in listed] == [("1", True)]
    result = run(cli_env, "rollback", "local", "--function", "embedder")
    assert result.returncode == 3 and "no version before 1" in result.stderr


def test_verify_of_a_missing_item_is_a_clear_not_found(cli_env):
    result = run(cli_env, "verify", "no-such-item")
    assert result.returncode == 3
    assert "no row in items with id = 'no-such-item'" in result.stdout
    assert "Traceback" not in result.stderr


def test_a_secret_put_through_stdin_never_appears_in_output(cli_env):
    put = run(cli_env, "secrets", "put", "ANTHROPIC_API_KEY", "--stdin", input=CANARY + "\n")
    assert put.returncode == 0, put.stderr
    listed = run(cli_env, "secrets", "list", "--json")
    assert listed.returncode == 0
    entry = next(s for s in json.loads(listed.stdout) if s["name"] == "ANTHROPIC_API_KEY")
    assert entry["present"] and entry["fingerprint"].startswith("sha256:")
    for out in (put.stdout, put.stderr, listed.stdout, listed.stderr):
        assert CANARY not in out
    log = Path(cli_env["COLLECTIONS_STATE_DIR"], "local", "daemon.log").read_text()
    assert CANARY not in log


def test_an_unknown_environment_is_a_configuration_error(cli_env):
    result = run(cli_env, "verify", "x", "--env", "staging")
    assert result.returncode == 10
    assert "unknown environment 'staging'" in result.stderr


HOSTILE_NAME = "[b]\x1b[2Jx.jpg"  # markup brackets and a clear-screen escape sequence


def _shown_as_text(result: subprocess.CompletedProcess[str]) -> None:
    out = result.stdout + result.stderr
    assert "\x1b" not in out, "a control sequence reached the terminal"
    assert "MarkupError" not in out and "unexpected" not in out, out


def test_hostile_object_names_are_shown_as_text(cli_env, tmp_path):
    # GIVEN a good upload named `[/].jpg` and a broken one whose name carries markup and an
    # escape sequence (so it lands in the dead-letter queue)
    good = run(cli_env, "test-upload", str(SAMPLE), "-u", "u", "--name", "[/].jpg", "-f",
               "--timeout", "60")
    _shown_as_text(good)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(images.truncated(images.photo(640, 480)))
    failed = run(cli_env, "test-upload", str(broken), "-u", "u", "--name", HOSTILE_NAME, "-f",
                 "--timeout", "30")
    assert failed.returncode == 7, failed.stdout + failed.stderr
    _shown_as_text(failed)
    # WHEN verify, search, dlq show and dlq redrive display them THEN none crashes, and the
    # names appear as plain text with the control bytes removed
    verify = run(cli_env, "verify", "[/]", "-u", "u")
    assert verify.returncode in (0, 3, 8), verify.stderr
    _shown_as_text(verify)
    search = run(cli_env, "search", "a photo", "-n", "50")
    assert search.returncode == 0, search.stderr
    _shown_as_text(search)
    shown = run(cli_env, "dlq", "show", "processor", "-n", "50")
    assert shown.returncode == 0, shown.stderr
    _shown_as_text(shown)
    assert "[b]x" in shown.stdout
    redrive = run(cli_env, "dlq", "redrive", "processor", "--dry-run")
    assert redrive.returncode == 0, redrive.stderr
    _shown_as_text(redrive)


def _interrupt_after(env: dict[str, str], ready: str, *args: str) -> tuple[int, str, str]:
    """Start the CLI, wait (generously) for `ready` on stdout, then press Ctrl-C."""
    proc = subprocess.Popen([sys.executable, "-m", "collections_ops", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    seen = ""
    while ready not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen += line
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, seen + out, err


def test_ctrl_c_while_following_logs_exits_130(cli_env):
    # The uploads earlier in this module logged within the hour: a first line means running.
    code, _, err = _interrupt_after(cli_env, ":", "logs", "all", "-f", "--since", "1h")
    assert code == 130 and "interrupted" in err
    assert "Traceback" not in err


def test_ctrl_c_while_following_an_upload_exits_130(cli_env):
    code, out, err = _interrupt_after(cli_env, "uploaded", "test-upload", "--sample", "-u",
                                      "ctrlc", "-f", "--timeout", "120")
    assert "uploaded" in out
    # The pipeline may finish first on a fast machine; otherwise Ctrl-C is 130, never 0.
    assert (code == 130 and "interrupted" in err) or (code == 0 and "✓ embedding" in out), (out, err)
    assert "Traceback" not in err


def test_zz_a_crashed_local_cloud_is_reported_and_destroy_cleans_up(cli_env):
    status = json.loads(run(cli_env, "status", "--json").stdout)
    state = json.loads(Path(status["state_dir"], "state.json").read_text())
    os.kill(state["pid"], signal.SIGKILL)
    from collections_ops.localcloud.supervisor.manager import pid_alive

    deadline = time.monotonic() + 10  # the kill is delivered at once; reaping may lag
    while pid_alive(state["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(state["pid"])
    result = run(cli_env, "status", "--json", timeout=30)
    assert result.returncode == 4
    report = json.loads(result.stdout)
    assert report["parts"]["daemon"]["up"] is False
    assert "degraded" in result.stderr

    destroyed = run(cli_env, "destroy", "local")
    assert destroyed.returncode == 0
    assert not Path(status["state_dir"]).exists()
    assert state["pg_pid"] and not pid_alive(state["pg_pid"]), "destroy stops the orphan"
