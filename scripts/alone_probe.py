"""Feasibility probe: dynamic power of tiny kernels run alone, back to back, vs idle (held)."""
import ctypes, time, torch, sys
nv = ctypes.CDLL("libnvidia-ml.so.1")
nv.nvmlInit_v2()
h = ctypes.c_void_p()
nv.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(h))
def energy_mj():
    e = ctypes.c_ulonglong()
    nv.nvmlDeviceGetTotalEnergyConsumption(h, ctypes.byref(e))
    return e.value
def wait_update():
    e0 = energy_mj()
    while energy_mj() == e0:
        time.sleep(0.001)
    return time.monotonic(), energy_mj()
dev = "cuda"
x = torch.randn(8, 768, device=dev)
ln = torch.nn.LayerNorm(768).to(dev)
w = torch.randn(768, 768, device=dev)
w4 = torch.randn(768, 3072, device=dev)
big = torch.randn(4096, 4096, device=dev)
def idle():
    torch.cuda.synchronize(); time.sleep(0.001)
def job_ln(): ln(x)
def job_mm(): x @ w
def job_mm4(): x @ w4
def job_add(): x.add_(0.0)
def job_big(): big @ big
jobs = {"idle": None, "layernorm 8x768": job_ln, "matmul 8x768x768": job_mm,
        "matmul 8x768x3072": job_mm4, "add_ 8x768": job_add, "gemm 4096^3": job_big}
def measure(name, fn, secs=1.5):
    for _ in range(200):
        if fn: fn()
    torch.cuda.synchronize()
    t0, e0 = wait_update()
    n = 0
    s = torch.cuda.Event(enable_timing=True); f = torch.cuda.Event(enable_timing=True)
    s.record()
    end = t0 + secs
    if fn is None:
        time.sleep(secs)
    else:
        while time.monotonic() < end:
            for _ in range(100):
                fn()
            n += 100
    f.record(); torch.cuda.synchronize()
    t1, e1 = wait_update()
    T = t1 - t0
    return (e1 - e0) / T / 1000.0, n, s.elapsed_time(f) / 1000.0, T
res = {}
for rep in range(3):
    for name, fn in jobs.items():
        p, n, gpu_s, T = measure(name, fn)
        res.setdefault(name, []).append((p, n, gpu_s, T))
        time.sleep(0.3)
idle_w = sorted(r[0] for r in res["idle"])[1]
print(f"idle (held) {idle_w:.1f} W  {[round(r[0],1) for r in res['idle']]}")
for name, rs in res.items():
    if name == "idle": continue
    for p, n, gpu_s, T in rs:
        per = gpu_s / max(n, 1) * 1e6
        print(f"{name:20s} {p:7.1f} W  dyn {p-idle_w:6.1f} W  launches {n:8d}  {per:6.2f} us/launch  gpu {gpu_s:.2f}s of {T:.2f}s")
