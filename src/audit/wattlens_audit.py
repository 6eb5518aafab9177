"""wattlens audit: content facts for every PyTorch operation of an unmodified program.

`wattlens run --audit -- python3 prog.py` puts this module's folder first on PYTHONPATH; its
`sitecustomize` calls `arm()`, which waits for the program to import torch and then pushes
`AuditMode`, a TorchDispatchMode that sees every aten operation of the main thread.

For each operation that computes something (views and metadata queries are left out) it
records, in a JSON-lines file that `wattlens run` merges into the trace:

- the digest of every tensor input and output, and of every tensor the operation wrote in
  place, before and after;
- how many of each output's rows (its last dimension) equal rows that the same operation at
  the same place in the model (module instance, position in its forward, the same parameter
  content) produced in its previous call: the rows a decode step without a KV cache recomputes;
- when each output tensor was freed, so that "the earlier result was still held" is a fact.

Digests are computed on the tensor's own device by torch operations of ours, inside the NVTX
range `wattlens.audit.digest`; the operation itself runs inside `wattlens.audit#SEQ`, so the
injection library's kernel records tell which kernels were the program's and which the audit's.

A digest is a 64-bit multilinear hash of the content's 16-bit words with fixed odd keys: two
different contents collide with probability at most 2**-46 (words differ by less than 2**17).
The audit decides nothing: `wattlens` reads these facts and proves waste from them.
"""

import atexit
import hashlib
import json
import os
import sys
import threading
import time
import weakref

FACTS_ENV = "WATTLENS_AUDIT_FACTS"
DIGEST_RANGE = "wattlens.audit.digest"
OP_RANGE = "wattlens.audit#"
# Operation ranges are named by the operation's number among those on a CUDA device modulo
# this: the injection library keeps 65,536 region paths, and a name per operation would use
# them up (wattlens maps each kernel to the nearest operation of its range's number).
OP_RANGE_CYCLE = 4096
# Widest row whose words get their own digest (wider rows get no row facts).
MAX_ROW_WORDS = 1 << 16
# Words per block of a whole-tensor digest.
BLOCK_WORDS = 4096
# Blocks digested at a time (64 Mi words: 512 MiB of int64 words at most).
CHUNK_BLOCKS = 1 << 14
# Facts buffered before a write to the file.
FLUSH_LINES = 4096
MASK64 = (1 << 64) - 1

# Operations that move, rearrange or fill data rather than compute it: equal rows or equal
# results out of them are copies, not recomputation (a KV cache's concatenation repeats every
# earlier row by design). Their facts say so ("moves"); a repeated upload is still found.
# Operators whose output row i depends only on input row i of this argument (and on
# parameters): equal input rows with the same parameters prove the output rows recomputed even
# where a kernel chosen for another number of rows rounds them differently in their last bits.
ROW_WISE = {
    "aten::addmm": 1, "aten::mm": 0, "aten::linear": 0, "aten::native_layer_norm": 0,
    "aten::layer_norm": 0, "aten::_softmax": 0, "aten::gelu": 0, "aten::silu": 0,
    "aten::rms_norm": 0, "aten::_fused_rms_norm": 0,
}
# Embedding is a lookup: a repeated token gives an equal row without anything recomputed.
MOVEMENT = {
    "aten::cat", "aten::stack", "aten::copy_", "aten::_to_copy", "aten::clone",
    "aten::contiguous", "aten::expand", "aten::index_select", "aten::index",
    "aten::gather", "aten::slice_scatter", "aten::select_scatter", "aten::index_put_",
    "aten::index_copy_", "aten::repeat", "aten::repeat_interleave", "aten::_unsafe_view",
    "aten::narrow_copy", "aten::t_copy", "aten::transpose_copy", "aten::permute_copy",
    "aten::view_copy", "aten::new_empty", "aten::new_zeros", "aten::new_ones", "aten::fill_",
    "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::zeros", "aten::ones",
    "aten::full", "aten::zeros_like", "aten::ones_like", "aten::full_like", "aten::arange",
    "aten::zero_", "aten::lift_fresh", "aten::detach_copy", "aten::masked_fill",
    "aten::masked_fill_", "aten::where", "aten::embedding_dense_backward", "aten::roll",
    "aten::flip", "aten::tril", "aten::triu", "aten::constant_pad_nd", "aten::pad",
    "aten::embedding",
}


class _Keys:
    """Fixed odd 64-bit keys per device and use, in pages of `PAGE` generated from their own
    seeds: key i is the same however many keys were asked for before."""

    PAGE = 1 << 16

    def __init__(self, torch):
        self.torch = torch
        self.by_device = {}

    def _page(self, which, page):
        torch = self.torch
        g = torch.Generator().manual_seed(0x77617474 + which * 1_000_003 + page)
        k = torch.randint(-(1 << 62), 1 << 62, (self.PAGE,), generator=g, dtype=torch.int64)
        return k * 2 + 1

    def get(self, device, which, n):
        key = (str(device), which)
        have = self.by_device.get(key)
        if have is None or have.numel() < n:
            pages = -(-max(n, 1) // self.PAGE)
            have = self.torch.cat([self._page(which, p) for p in range(pages)]).to(device)
            self.by_device[key] = have
        return have[:n]


class _Facts:
    """The facts file of this process: JSON lines, written in batches."""

    def __init__(self, path):
        self.path = path
        self.lines = []
        self.lock = threading.Lock()
        self.file = open(path, "w", encoding="utf-8")

    def add(self, record):
        with self.lock:
            self.lines.append(json.dumps(record, separators=(",", ":")))
            if len(self.lines) >= FLUSH_LINES:
                self._flush()

    def _flush(self):
        if self.lines and self.file is not None:
            self.file.write("\n".join(self.lines) + "\n")
            self.file.flush()
        self.lines = []

    def close(self, summary):
        with self.lock:
            self.lines.append(json.dumps({"end": summary}, separators=(",", ":")))
            self._flush()
            if self.file is not None:
                self.file.close()
                self.file = None


class _ByIdentity:
    """A map keyed by object identity that forgets an object once it is freed (tensors
    compare element-wise, so a WeakKeyDictionary cannot hold them)."""

    def __init__(self):
        self.items = {}

    def get(self, obj):
        entry = self.items.get(id(obj))
        if entry is not None and entry[0]() is obj:
            return entry[1]
        return None

    def set(self, obj, value):
        key = id(obj)

        def forget(ref, key=key, items=self.items):
            entry = items.get(key)
            if entry is not None and entry[0] is ref:
                del items[key]

        self.items[key] = (weakref.ref(obj, forget), value)


def _schema_arguments(func, args, kwargs):
    """(argument schema, value) for every argument given, positional then keyword."""
    schema = func._schema.arguments
    out = list(zip(schema, args))
    by_name = {a.name: a for a in schema}
    for k, v in kwargs.items():
        if k in by_name:
            out.append((by_name[k], v))
    return out


def _tensors_in(value, torch):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, torch.Tensor)]
    return []


def _describe(value, torch):
    """What an argument is, for the operation's identity: a tensor by shape, strides and type
    (its content is digested separately); anything else by its repr."""
    if isinstance(value, torch.Tensor):
        return ("T", tuple(value.shape), tuple(value.stride()) if value.layout == torch.strided
                else (), str(value.dtype), str(value.device))
    if isinstance(value, (list, tuple)):
        return tuple(_describe(v, torch) for v in value)
    return repr(value)


def make_mode(torch, facts):
    from torch.utils._python_dispatch import TorchDispatchMode

    keys = _Keys(torch)
    nvtx = torch.cuda.nvtx if torch.cuda.is_available() else None
    state = {
        "seq": 0,
        "cuda_seq": 0,
        "uid": 0,
        "audit_ns": 0,
        "ops": 0,
        "skipped": {},
        # Calls of torch.compile: under the dispatch mode, TorchDynamo compiles nothing and the
        # compiled code runs eagerly, which the report must say.
        "compiled": 0,
        "modules": [],
        "module_ids": {},
        "previous_rows": {},
    }
    uids = _ByIdentity()
    cache = _ByIdentity()

    def skip(reason):
        state["skipped"][reason] = state["skipped"].get(reason, 0) + 1

    def uid_of(t):
        u = uids.get(t)
        if u is None:
            state["uid"] += 1
            u = state["uid"]
            uids.set(t, u)
            weakref.finalize(t, lambda u=u: facts.add({"free": u, "at": state["seq"]}))
        return u

    def version_of(t):
        try:
            return t._version
        except RuntimeError:  # an inference-mode tensor keeps no version counter
            return None

    def as_bytes(t):
        """`t`'s content as a flat uint8 tensor (a copy only where `t` is not contiguous)."""
        t = t.detach()
        if not t.is_contiguous():
            t = t.contiguous()
        flat = t.reshape(-1)
        if flat.dtype == torch.bool:
            flat = flat.view(torch.uint8)
        return flat.view(torch.uint8)

    def words(b, unit_bytes):
        """Bytes `b` as int64 words of 16 bits, or of 8 where `unit_bytes` (the bytes that
        must stay whole: a row, or the whole tensor) is odd."""
        if unit_bytes % 2 == 0:
            return b.view(torch.int16).to(torch.int64)
        return b.to(torch.int64)

    def digest_device(t):
        """The digest of `t`'s content as a device scalar (an int64 tensor). Taken a chunk at a
        time, so that the audit's memory stays bounded whatever the tensor's size."""
        b = as_bytes(t)
        nbytes = b.numel()
        unit = 2 if nbytes % 2 == 0 else 1
        n = nbytes // unit
        total = torch.zeros((), dtype=torch.int64, device=t.device) + (
            n * 0x9E3779B97F4A7C15 % MASK64 - (1 << 63) if n else t.element_size())
        chunk = CHUNK_BLOCKS * BLOCK_WORDS * unit
        for start in range(0, nbytes, chunk):
            w = words(b[start:start + chunk], unit)
            m = -(-w.numel() // BLOCK_WORDS)
            pad = m * BLOCK_WORDS - w.numel()
            if pad:
                w = torch.nn.functional.pad(w, (0, pad))
            blocks = (w.view(m, BLOCK_WORDS) * keys.get(t.device, 1, BLOCK_WORDS)).sum(1)
            first = start // unit // BLOCK_WORDS
            total += (blocks * keys.get(t.device, 2, first + m)[first:]).sum()
        return total

    def row_digests(t):
        """(each row's digest, which rows cannot count: constant ones and ones repeated
        within the tensor); rows are the last dimension. None where rows are too wide."""
        if t.dim() < 2 or t.shape[-1] == 0 or t.numel() == 0:
            return None
        w = words(as_bytes(t), t.shape[-1] * t.element_size())
        rows = t.numel() // t.shape[-1]
        cols = w.numel() // rows
        if cols > MAX_ROW_WORDS or rows < 1:
            return None
        w2 = w.view(rows, cols)
        rh = (w2 * keys.get(t.device, 3, cols)).sum(1)
        constant = w2.amin(1) == w2.amax(1)
        # Rows equal to another row of the same output (found by sorting: no wait for the
        # device, as torch.unique would).
        ordered, order = rh.sort()
        same = ordered[1:] == ordered[:-1]
        repeated = torch.zeros_like(constant)
        repeated[order[1:]] |= same
        repeated[order[:-1]] |= same
        return rh, constant | repeated

    def cached_digest(t):
        """(cached value, or None, and a function storing the device digest for next time)."""
        v = version_of(t)
        hit = cache.get(t)
        if hit is not None and v is not None and hit[0] == v and hit[1] == t.data_ptr():
            return hit[2], None
        def store(value, t=t, v=v):
            if v is not None:
                cache.set(t, (v, t.data_ptr(), value))
        return None, store

    def module_key():
        if not state["modules"]:
            return ("", 0)
        top = state["modules"][-1]
        top[1] += 1
        return (top[0], top[1])

    def prepare(func, args, kwargs):
        """What the operation will read and write, with the digests taken before it runs;
        `None` for an operation that computes nothing (a view or a query)."""
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            skip("inside a CUDA graph capture (digests would be captured too)")
            return None
        schema = func._schema
        returns_fresh = [r.alias_info is None for r in schema.returns]
        arguments = _schema_arguments(func, args, kwargs)
        written = [
            t for a, v in arguments
            if a.alias_info is not None and a.alias_info.is_write
            for t in _tensors_in(v, torch)
        ]
        if not written and not any(returns_fresh):
            return None
        inputs = [t for _, v in arguments for t in _tensors_in(v, torch)]
        if any(t.layout != torch.strided or t.device.type == "meta" for t in inputs):
            skip("tensors that are not dense")
            return None
        state["seq"] += 1
        plan = {
            "seq": state["seq"],
            "where": module_key(),
            "name": schema.name if "::" in schema.name else "aten::" + schema.name,
            "returns_fresh": returns_fresh,
            "written": written,
            "inputs": inputs,
            "on_cuda": nvtx is not None and any(t.is_cuda for t in inputs),
        }
        with digest_range(plan["on_cuda"]):
            in_values, pending = [], []
            for t in inputs:
                value, store = cached_digest(t)
                if value is None:
                    pending.append((len(in_values), digest_device(t), store))
                in_values.append(value)
            plan["in_values"] = in_values
            plan["pending"] = pending
            plan["before"] = [digest_device(t) for t in written]
        plan["identity"] = hashlib.blake2b(
            repr((plan["name"], [(a.name, _describe(v, torch)) for a, v in arguments])).encode(),
            digest_size=8,
        ).hexdigest()
        plan["random"] = torch.Tag.nondeterministic_seeded in func.tags
        return plan

    def conclude(plan, out):
        """Digest what the operation made and wrote, compare its rows, and record it."""
        fresh = []
        outs = out if isinstance(out, (list, tuple)) else (out,)
        returns_fresh = plan["returns_fresh"]
        for i, o in enumerate(outs):
            if returns_fresh[min(i, len(returns_fresh) - 1)] if returns_fresh else False:
                fresh.extend(t for t in _tensors_in(o, torch) if t.layout == torch.strided)
        inputs, written, in_values = plan["inputs"], plan["written"], plan["in_values"]
        with digest_range(plan["on_cuda"]):
            out_digests = [digest_device(t) for t in fresh]
            after = [digest_device(t) for t in written]
            rows = None
            moves = plan["name"] in MOVEMENT
            if fresh and not moves and inputs:
                rows = row_digests(fresh[0])
                rows = rows and (rows[0], rows[1], row_wise_input(plan, fresh[0]))
            pending = plan["pending"]
            # The rows' key needs the parameters' digests; where they are known already (a
            # parameter's digest is kept while it is unchanged), the rows are compared on the
            # device and come back with the digests, in one wait.
            early = None
            if rows is not None and all(v is not None for v in param_values(plan)):
                early = compare_rows_on_device(plan, rows, tuple(param_values(plan)))
            scalars = [d for _, d, _ in pending] + plan["before"] + out_digests + after
            if early is not None:
                scalars.append(early[0])
            values = torch.stack([s.to("cpu") for s in scalars]).tolist() if scalars else []
            if early is not None:
                row_counts = [values.pop(), early[1], early[2]]
            values = [v & MASK64 for v in values]
            for k, (slot, _, store) in enumerate(pending):
                in_values[slot] = values[k]
                if store is not None:
                    store(values[k])
            k = len(pending)
            before_v = values[k:k + len(plan["before"])]
            k += len(plan["before"])
            out_v = values[k:k + len(out_digests)]
            after_v = values[k + len(out_digests):]
            for t, v in zip(fresh, out_v):
                _, store = cached_digest(t)
                if store is not None:
                    store(v)
            if early is None:
                row_counts = None
                if rows is not None:
                    matched, total, previous = compare_rows_on_device(
                        plan, rows, tuple(param_values(plan)))
                    row_counts = [int(matched.item()), total, previous]
        record = {
            "op": plan["seq"],
            "name": plan["name"],
            "at": list(plan["where"]),
            "id": plan["identity"],
            "in": [tensor_fact(t, v) for t, v in zip(inputs, in_values)],
            "out": [tensor_fact(t, v) for t, v in zip(fresh, out_v)],
            "w": [tensor_fact(t, b)[:3] + [a] + tensor_fact(t, b)[3:]
                  for t, b, a in zip(written, before_v, after_v)],
        }
        if row_counts is not None:
            record["rows"] = row_counts
        if plan["on_cuda"]:
            record["cs"] = plan["cuda_seq"]
        if plan["random"]:
            record["random"] = True
        if moves:
            record["moves"] = True
        facts.add(record)
        state["ops"] += 1

    def param_values(plan):
        """The digests of the operation's parameter inputs (None where not known yet)."""
        return [
            v for t, v in zip(plan["inputs"], plan["in_values"])
            if isinstance(t, torch.nn.Parameter)
            or isinstance(getattr(t, "_base", None), torch.nn.Parameter)
        ]

    def row_wise_input(plan, out):
        """The row digests of a row-wise operator's row input (see ROW_WISE), where its rows
        line up with the output's; else None."""
        index = ROW_WISE.get(plan["name"])
        inputs = plan["inputs"]
        if index is None or index >= len(inputs) or out.dim() < 1:
            return None
        source = inputs[index]
        rows = out.numel() // max(out.shape[-1], 1)
        if source.dim() < 2 or source.numel() // max(source.shape[-1], 1) != rows:
            return None
        return row_digests(source)

    def compare_rows_on_device(plan, rows, params):
        """(matched rows as a device scalar, rows, previous seq): the first output's rows equal
        to rows of the same operation at the same place, with the same parameter content, in
        its previous call; for a row-wise operator, also the rows whose input row equals one of
        the previous call's (the same computation, whatever the last bits of its result).

        Only a recomputed prefix counts: a call with more rows than its previous one that
        reproduces at least half of that one's rows. A decode step with a KV cache has as many
        rows as the step before, and may still repeat one of its rows (the same token at the
        first layer of a model whose positions enter later, as rotary embeddings do); that is
        no prefix recomputed."""
        rh, unusable, row_input = rows
        key = (plan["where"], plan["name"], params)
        previous = state["previous_rows"].get(key)
        state["previous_rows"][key] = (rh, row_input and row_input[0], plan["seq"])
        none = torch.zeros((), dtype=torch.int64, device=rh.device)
        if previous is None or rh.numel() <= previous[0].numel():
            return none, int(rh.numel()), 0 if previous is None else previous[2]
        same = torch.isin(rh, previous[0]) & ~unusable
        if row_input is not None and previous[1] is not None:
            in_rh, in_unusable = row_input
            same = same | (torch.isin(in_rh, previous[1]) & ~in_unusable)
        matched = same.sum()
        # On the device, so that the program's stream is not synchronised here.
        matched = torch.where(matched * 2 >= previous[0].numel(), matched, none)
        return matched, int(rh.numel()), previous[2]

    def tensor_fact(t, digest):
        return [uid_of(t), t.untyped_storage().data_ptr(), digest, t.nbytes, str(t.device)]

    class digest_range:
        """The NVTX range of the audit's own work (on CUDA), timed as the audit's cost."""

        def __init__(self, on_cuda):
            self.on_cuda = on_cuda

        def __enter__(self):
            self.started = time.perf_counter_ns()
            if self.on_cuda:
                nvtx.range_push(DIGEST_RANGE)

        def __exit__(self, *exc):
            if self.on_cuda:
                nvtx.range_pop()
            state["audit_ns"] += time.perf_counter_ns() - self.started
            return False

    class AuditMode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            try:
                plan = prepare(func, args, kwargs)
            except Exception as e:  # the program runs on whatever the audit does
                skip(f"the audit failed before the operation ({type(e).__name__})")
                plan = None
            if plan is None:
                return func(*args, **kwargs)
            if plan["on_cuda"]:
                state["cuda_seq"] += 1
                plan["cuda_seq"] = state["cuda_seq"]
                nvtx.range_push(OP_RANGE + str(plan["cuda_seq"] % OP_RANGE_CYCLE))
            try:
                out = func(*args, **kwargs)
            finally:
                if plan["on_cuda"]:
                    nvtx.range_pop()
            try:
                conclude(plan, out)
            except Exception as e:
                skip(f"the audit failed after the operation ({type(e).__name__})")
            return out

    def pre_hook(module, _inputs):
        ids = state["module_ids"]
        key = ids.get(id(module))
        if key is None:
            key = f"{type(module).__name__}#{len(ids)}"
            ids[id(module)] = key
        state["modules"].append([key, 0])

    def post_hook(module, _inputs, _output):
        key = state["module_ids"].get(id(module))
        stack = state["modules"]
        while stack:
            if stack.pop()[0] == key:
                break

    def summary():
        return {
            "ops": state["ops"],
            "audit_ns": state["audit_ns"],
            "skipped": state["skipped"],
            "compiled": state["compiled"],
        }

    return AuditMode(), pre_hook, post_hook, summary, state


def count_compile_calls(torch, state):
    """Count the program's calls of torch.compile and Module.compile, passing them through."""
    import functools

    def counting(compile_fn):
        @functools.wraps(compile_fn)
        def wrapper(*args, **kwargs):
            state["compiled"] += 1
            return compile_fn(*args, **kwargs)
        return wrapper

    if hasattr(torch, "compile"):
        torch.compile = counting(torch.compile)
    if hasattr(torch.nn.Module, "compile"):
        torch.nn.Module.compile = counting(torch.nn.Module.compile)


def install(torch):
    """Push the audit mode on this thread and start the facts file."""
    path = os.environ.get(FACTS_ENV)
    if not path:
        return
    path = path.replace("{pid}", str(os.getpid()))
    facts = _Facts(path)
    mode, pre, post, summary, state = make_mode(torch, facts)
    count_compile_calls(torch, state)
    from torch.nn.modules import module as nn_module
    nn_module.register_module_forward_pre_hook(pre)
    nn_module.register_module_forward_hook(post)
    mode.__enter__()

    def finish():
        try:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()
        finally:
            facts.close(summary())

    atexit.register(finish)


class _AfterTorch:
    """A meta-path finder that installs the audit once `torch` has been imported."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        import importlib.util
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_install(module):
            exec_module(module)
            try:
                install(module)
            except Exception as e:  # the program must run even when the audit cannot
                print(f"wattlens: audit off: {e}", file=sys.stderr)

        loader.exec_module = exec_then_install
        return spec


def arm():
    """Install the audit when the program imports torch (now, if it already has)."""
    if not os.environ.get(FACTS_ENV):
        return
    if "torch" in sys.modules:
        install(sys.modules["torch"])
    else:
        sys.meta_path.insert(0, _AfterTorch())
