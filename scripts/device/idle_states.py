"""What "idle" is on this GPU, for the replay closure of launch-bound programs (issue #10).

The closure compares what replayed kernels predict against the energy counter above idle over
the program's steady stretches. In a launch-bound loop the dynamic energy is a few percent of
the total, so which idle power is subtracted decides the ratio: traces show quiet windows at
116-118 W before CUDA starts, about 122 W with a context between the program's phases, and
124-130 W right after replay bursts. This measures, with the energy counter alone (no wattlens):

1. quiet power with no CUDA context, then with one (3 s each);
2. a launch-bound loop of one small kernel (what fraction of the time it is busy, from the
   kernel's own duration back to back in a CUDA graph) and the power it draws in place,
   against the same kernel back to back: the in-place dynamic power the back-to-back power
   predicts, and what the counter shows above each idle level (the "premium" of a GPU kept
   awake between launches);
3. quiet power right after the loop and right after heavy compute, in 0.5 s slices (how fast
   the GPU falls back to idle, and to which level).

    python3 scripts/device/idle_states.py > idle-states.json
"""
import ctypes
import json
import time

nvml = ctypes.CDLL("libnvidia-ml.so.1")
assert nvml.nvmlInit_v2() == 0
handle = ctypes.c_void_p()
assert nvml.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(handle)) == 0
_energy = ctypes.c_ulonglong()


def energy_mj():
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(handle, ctypes.byref(_energy)) == 0
    return _energy.value


def mean_power_w(seconds, work=None):
    """Mean power over `seconds` (the counter's 100 ms steps make this good to ~0.1 W over
    3 s), calling `work()` in a loop meanwhile if given; (watts, calls of work)."""
    e0, t0, calls = energy_mj(), time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        if work is None:
            time.sleep(0.01)
        else:
            work()
            calls += 1
    e1, t1 = energy_mj(), time.perf_counter()
    return (e1 - e0) / 1e3 / (t1 - t0), calls


def slices(n, seconds):
    return [round(mean_power_w(seconds)[0], 2) for _ in range(n)]


out = {"no_context_w": round(mean_power_w(3)[0], 2)}
import torch  # noqa: E402  (after the no-context stretch)

torch.cuda.init()
x = torch.zeros(1024, device="cuda")
torch.cuda.synchronize()
out["context_quiet_w"] = round(mean_power_w(3)[0], 2)

# The small kernel back to back (a CUDA graph of 1000 launches): its duration and power.
stream = torch.cuda.Stream()
with torch.cuda.stream(stream):
    for _ in range(3):
        x.add_(1.0)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        for _ in range(1000):
            x.add_(1.0)
torch.cuda.synchronize()
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
start.record()
for _ in range(20):
    graph.replay()
end.record()
torch.cuda.synchronize()
kernel_us = start.elapsed_time(end) * 1e3 / 20000
b2b_w, b2b_calls = mean_power_w(3, lambda: (graph.replay(), torch.cuda.synchronize()))
out["kernel_us_back_to_back"] = round(kernel_us, 3)
out["back_to_back_w"] = round(b2b_w, 2)
out["after_back_to_back_quiet_w_0.5s"] = slices(6, 0.5)

# The same kernel launched one by one from Python: launch-bound.
loop_w, launches = mean_power_w(5, lambda: x.add_(1.0))
torch.cuda.synchronize()
busy = launches * kernel_us * 1e-6 / 5.0
out["loop_launches_per_s"] = round(launches / 5.0)
out["loop_busy_share"] = round(busy, 4)
out["loop_w"] = round(loop_w, 2)
out["after_loop_quiet_w_0.5s"] = slices(6, 0.5)
for name in ("no_context_w", "context_quiet_w"):
    idle = out[name]
    predicted = busy * (b2b_w - idle)
    out[f"loop_above_{name}"] = {
        "measured_w": round(loop_w - idle, 2),
        "predicted_from_back_to_back_w": round(predicted, 2),
        "ratio_predicted_over_measured": round(predicted / (loop_w - idle), 3)
        if loop_w != idle else None,
    }

# Heavy compute, then quiet.
a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
heavy_w, _ = mean_power_w(5, lambda: (a @ a, torch.cuda.synchronize()))
out["heavy_w"] = round(heavy_w, 2)
out["after_heavy_quiet_w_0.5s"] = slices(10, 0.5)
out["end_quiet_w"] = round(mean_power_w(3)[0], 2)
print(json.dumps(out))
