"""Measure the CPU and wall cost of each NVML read wattlens' sampler uses (run on the GPU machine)."""
import ctypes, time, json, os, sys

nvml = ctypes.CDLL("libnvidia-ml.so.1")
assert nvml.nvmlInit_v2() == 0
h = ctypes.c_void_p()
assert nvml.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(h)) == 0
name = ctypes.create_string_buffer(96); nvml.nvmlDeviceGetName(h, name, 96)
drv = ctypes.create_string_buffer(96); nvml.nvmlSystemGetDriverVersion(drv, 96)

class Val(ctypes.Union):
    _fields_ = [("d", ctypes.c_double), ("ui", ctypes.c_uint), ("ul", ctypes.c_ulong), ("ull", ctypes.c_ulonglong), ("sll", ctypes.c_longlong), ("si", ctypes.c_int), ("us", ctypes.c_ushort)]
class FV(ctypes.Structure):
    _fields_ = [("fieldId", ctypes.c_uint), ("scopeId", ctypes.c_uint), ("timestamp", ctypes.c_longlong), ("latencyUsec", ctypes.c_longlong), ("valueType", ctypes.c_int), ("nvmlReturn", ctypes.c_int), ("value", Val)]
class Sample(ctypes.Structure):
    _fields_ = [("timeStamp", ctypes.c_ulonglong), ("sampleValue", Val)]

def cost(f, n=50):
    c0, w0 = time.thread_time(), time.perf_counter()
    for _ in range(n): f()
    return (time.thread_time() - c0) / n * 1e3, (time.perf_counter() - w0) / n * 1e3

e = ctypes.c_ulonglong()
def energy(): nvml.nvmlDeviceGetTotalEnergyConsumption(h, ctypes.byref(e))
def fields(ids):
    arr = (FV * len(ids))()
    for i, (f, s) in enumerate(ids): arr[i].fieldId = f; arr[i].scopeId = s
    def go():
        nvml.nvmlDeviceGetFieldValues(h, len(ids), arr); return arr
    return go
vt = ctypes.c_int(); cnt = ctypes.c_uint(); buf = (Sample * 200)()
def samples(since=0):
    cnt.value = 200
    return nvml.nvmlDeviceGetSamples(h, 0, ctypes.c_ulonglong(since), ctypes.byref(vt), ctypes.byref(cnt), buf)
pw = ctypes.c_uint()
def usage(): nvml.nvmlDeviceGetPowerUsage(h, ctypes.byref(pw))

out = {"name": name.value.decode(), "driver": drv.value.decode()}
out["energy_ms_cpu_wall"] = cost(energy)
out["power_usage_ms"] = cost(usage)
out["samples_ms"] = cost(samples)
f1 = fields([(83, 0)]); f3 = fields([(83, 0), (186, 0), (186, 2)]); f4 = fields([(83, 0), (186, 0), (186, 1), (186, 2)])
out["fields1_ms"] = cost(f1); out["fields3_ms"] = cost(f3); out["fields4_ms"] = cost(f4)
a = f4()
out["fields4"] = [(x.fieldId, x.scopeId, x.nvmlReturn, x.valueType, x.value.ull if x.valueType in (3,4) else x.value.ui, x.timestamp, x.latencyUsec) for x in a]
out["now_us"] = time.time_ns() // 1000
r = samples(); out["samples_ret"] = r; out["samples_n"] = cnt.value; out["sample_vt"] = vt.value
out["samples_first_last"] = [buf[0].timeStamp, buf[cnt.value - 1].timeStamp] if cnt.value else None
# counter update phase: dense reads for 0.6 s
trace = []
t_end = time.perf_counter() + 0.6
while time.perf_counter() < t_end:
    t0 = time.time_ns(); energy(); t1 = time.time_ns(); trace.append((t0, t1, e.value))
ch = [trace[i] for i in range(1, len(trace)) if trace[i][2] != trace[i-1][2]]
out["energy_reads"] = len(trace)
out["energy_changes"] = [(c[0] // 1000, c[2]) for c in ch]
a = f1(); out["f83_ts_vs_now_us"] = (a[0].timestamp, time.time_ns() // 1000, a[0].value.ull)
json.dump(out, sys.stdout, indent=1)
