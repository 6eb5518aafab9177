"""wattlens audit: arm the audit of PyTorch operations (wattlens_audit.py), then run the
sitecustomize this one shadows, if the interpreter has one."""

import os
import sys


def _chain():
    here = os.path.dirname(os.path.abspath(__file__))
    saved = sys.path[:]
    mine = sys.modules.pop("sitecustomize", None)
    try:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
        import importlib

        importlib.import_module("sitecustomize")
    except ImportError:
        pass
    finally:
        sys.path[:] = saved
        if mine is not None:
            sys.modules["sitecustomize"] = mine


try:
    import wattlens_audit

    wattlens_audit.arm()
except Exception as e:  # the program must run even when the audit cannot
    print(f"wattlens: audit off: {e}", file=sys.stderr)
_chain()
