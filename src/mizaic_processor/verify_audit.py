"""Verify an exported mizaic_processor audit trail, with the Python standard library only.

Usage (in the export directory, next to ``audit_chain.py``)::

    python verify_audit.py [EXPORT_DIR] [--key HEX_AUDIT_KEY]

It re-hashes every event line of every chain, checks sequence numbers and hash links,
and checks that every checkpoint's sealed head is still in its chain. Give checkpoints
you received from the processor through your own route (not only the exported copy) to
make sure the processor could not have rewritten history. With ``--key`` it also checks
each checkpoint's HMAC. Exit status 0: intact; 1: broken (the first break is printed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Run the verifier; return the process exit status."""
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    import audit_chain  # type: ignore[import-not-found]  # the copy beside this script

    args = [a for a in argv[1:] if not a.startswith("--")]
    key = None
    if "--key" in argv:
        key = bytes.fromhex(argv[argv.index("--key") + 1])
        args = [a for a in args if a != argv[argv.index("--key") + 1]]
    directory = Path(args[0]) if args else here
    heads = {}
    hashes = {}
    events = 0
    for path in sorted((directory / "chains").glob("*.ndjson")):
        lines = path.read_bytes().splitlines()
        head, broken = audit_chain.verify_chain(path.stem, lines)
        if broken is not None:
            print("BROKEN:", broken.describe())
            return 1
        heads[path.stem] = head
        hashes[path.stem] = [audit_chain.line_hash(line) for line in lines]
        events += head.seq
    checkpoints = json.loads((directory / "checkpoints.json").read_text())
    key_for = (lambda _cp: key) if key is not None else None
    broken = audit_chain.verify_checkpoints(key_for, heads, hashes, checkpoints)
    if broken is not None:
        print("BROKEN:", broken.describe())
        return 1
    print(f"OK: {len(heads)} chains, {events} events, {len(checkpoints)} checkpoints verified")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
