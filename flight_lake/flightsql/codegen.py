"""Regenerate the protobuf modules from this package's ``.proto`` files.

``python -m flight_lake.flightsql.codegen`` rewrites ``flight_sql_pb2.py`` and
``flight_session_pb2.py`` beside their ``.proto`` files with ``grpcio-tools``
(``--python_out`` only: pyarrow carries the gRPC transport). The generated modules are
committed; ``tests/test_flightsql_protocol.py`` checks that regenerating changes nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent.parent  # the repository: proto paths are registered from here
PROTOS = ("flight_sql.proto", "flight_session.proto")


def generate(out_dir: Path) -> list[Path]:
    """Generate every module into ``out_dir`` (mirroring the package path); return them."""
    from grpc_tools import protoc  # a development tool, not a runtime dependency

    relative = PACKAGE.relative_to(ROOT)
    for proto in PROTOS:
        code = protoc.main(["grpc_tools.protoc", f"-I{ROOT}", f"--python_out={out_dir}",
                            str(relative / proto)])
        if code != 0:
            raise RuntimeError(f"protoc failed on {proto} (exit {code})")
    return [out_dir / relative / proto.replace(".proto", "_pb2.py") for proto in PROTOS]


if __name__ == "__main__":
    written = generate(ROOT)
    sys.stdout.write("".join(f"wrote {path.relative_to(ROOT)}\n" for path in written))
