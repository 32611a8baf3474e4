"""SSM parameters are durable as SSM's are: what `PutParameter` wrote survives a restart of
the emulator, and what `DeleteParameter` or `DeleteParameters` removed stays removed. A real
moto server with the durable store's hooks, in a child process; the parent reads what a
restart would restore (`Store.parameters`, which `restore` puts back into moto)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from collections_ops.localcloud.aws.store import Store

_CHILD = textwrap.dedent("""
    import json, sys, threading
    from pathlib import Path

    import boto3
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from collections_ops.localcloud.aws import store as kept, write_through

    store = kept.Store(Path(sys.argv[1]))
    write_through.install(store)
    server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app),
                         threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ssm = boto3.client("ssm", endpoint_url=f"http://127.0.0.1:{server.server_port}",
                       region_name="us-east-1", aws_access_key_id="k",
                       aws_secret_access_key="s")
    for name in ("/collections/a", "/collections/b", "/collections/c", "/collections/d"):
        ssm.put_parameter(Name=name, Value=name[-1], Type="String")
    answer = ssm.delete_parameters(Names=["/collections/a", "/collections/b",
                                          "/collections/missing"])
    ssm.delete_parameter(Name="/collections/c")
    print(json.dumps({"deleted": sorted(answer["DeletedParameters"]),
                      "invalid": answer["InvalidParameters"]}))
""")


def test_deleted_parameters_stay_deleted_after_a_restart(tmp_path: Path) -> None:
    # GIVEN four parameters, WHEN two are deleted with DeleteParameters (with a name that
    # does not exist among them) and one with DeleteParameter
    root = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(root)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer == {"deleted": ["/collections/a", "/collections/b"],
                      "invalid": ["/collections/missing"]}
    # THEN a restart restores the one parameter left, and none of those deleted
    assert sorted(p["name"] for p in Store(root).parameters()) == ["/collections/d"]
