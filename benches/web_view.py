#!/usr/bin/env python3
"""Runner CPU of a 1,000-node demo-fleet run with and without --serve and a
headless Chromium attached to the live page (interleaved pairs), then the
load time of the finished run's page in Chromium (WebDriver)."""
import json, os, re, signal, socket, subprocess, sys, tempfile, time, urllib.request

# Usage: python3 benches/web_view.py PATH/TO/fleetfix [PAIRS]
# (MODES=plain,browser by default; plain,serve,browser adds --serve alone.)
# Needs chromium and chromium-driver; pins the fleet and Chromium to core 0
# and the run to core 1 with taskset (BROWSER_SCHED below). Results: BENCHMARKS.md, issue 18.
FF = sys.argv[1]
PAIRS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
work = tempfile.mkdtemp(prefix="fleetfix-webbench-")
PLAYBOOK = f"{work}/look.toml"
with open(PLAYBOOK, "w") as f:
    f.write('''name = "look"
[rollout]
batches = [1, "25%"]
[[steps]]
name = "version"
run = "cat version"
changes = false
[[steps]]
name = "system"
run = "uname -a; echo ok"
changes = false
[[steps]]
name = "files"
run = "ls -la"
changes = false
''')
env = dict(os.environ, FLEETFIX_STATE_DIR=f"{work}/state", NO_COLOR="1")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]

demo = subprocess.Popen(["taskset", "-c", "0", FF, "demo", "--serve", "--nodes", "1000", "--fail", "none"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
inv = kh = None
deadline = time.time() + 300
out = ""
while time.time() < deadline and not (inv and kh):
    line = demo.stdout.readline()
    out += line
    m = re.search(r"(/\S+/inventory\.toml)", line)
    if m: inv = m.group(1)
    m = re.search(r"(/\S+/known_hosts)", line)
    if m: kh = m.group(1)
if not (inv and kh):
    print("demo did not print its inventory:", out); demo.kill(); sys.exit(1)
print("fleet:", inv, kh, flush=True)

def port_open(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0

# The browser: Chromium driven over WebDriver, pinned to core 0 with the
# fleet. BROWSER_SCHED=idle (the default) runs it under SCHED_IDLE: it gets
# only what the fleet leaves, as a browser on the operator's own machine
# takes nothing from the nodes; BROWSER_SCHED=normal lets it compete.
SCHED = os.environ.get("BROWSER_SCHED", "idle")
drv_port = 18797
drv_cmd = ["taskset", "-c", "0", "chromedriver", f"--port={drv_port}"]
if SCHED == "idle":
    drv_cmd = ["chrt", "-i", "0", *drv_cmd]
driver = subprocess.Popen(drv_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def wd(method, path, body=None, port=drv_port):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=300))["value"]

def run(serve, port, browser=True):
    cmd = ["taskset", "-c", "1", "/usr/bin/time", "-f", "%U %S", FF, "run", "-i", inv, "--known-hosts", kh, "-y",
           "--progress", "never", PLAYBOOK]
    if serve:
        cmd += ["--serve", f"127.0.0.1:{port}"]
    sess = None
    if serve and browser:
        # The browser is up before the run starts, and opens the page as
        # soon as the server listens.
        while not port_open(drv_port): time.sleep(0.05)
        udd = tempfile.mkdtemp(prefix="fleetfix-webbench-chrome-")
        sess = wd("POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium", "args": [*CHROME_FLAGS, f"--user-data-dir={udd}"]}}}})["sessionId"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    followed = None
    if sess:
        t0 = time.time()
        while not port_open(port) and time.time() - t0 < 30:
            time.sleep(0.01)
        wd("POST", f"/session/{sess}/url", {"url": f"http://127.0.0.1:{port}/"})
    _, err = p.communicate()
    if sess:
        # What the page shows once the run is over: it followed the whole
        # run live if every node is done in it and it was never reloaded.
        # (A browser that got little CPU may still be catching up.)
        done_at = time.time()
        while True:
            followed = wd("POST", f"/session/{sess}/execute/sync", {"script":
                "return [document.querySelectorAll('#grid a.s-ok').length, document.body.dataset.live === '', performance.getEntriesByType('navigation')[0].type];", "args": []})
            if followed[1] or time.time() - done_at > 60:
                break
            time.sleep(0.5)
        followed.append(round(time.time() - done_at, 1))
        wd("DELETE", f"/session/{sess}")
    u, s = err.strip().splitlines()[-1].split()
    return float(u) + float(s), p.returncode, followed

rows = []
MODES = os.environ.get("MODES", "plain,browser").split(",")
for i in range(PAIRS):
    for mode in MODES:
        cpu, rc, followed = run(mode != "plain", 18700 + i, browser=(mode == "browser"))
        rows.append((mode, cpu, rc))
        seen = f", page: {followed[0]} nodes ok, finished {followed[1]}, {followed[2]}, caught up {followed[3]} s after the run" if followed else ""
        print(f"{mode} pair {i+1}: runner CPU {cpu:.2f} s, exit {rc}{seen}", flush=True)
sums = {m: sum(c for mm, c, _ in rows if mm == m) for m in MODES}
import statistics
ratios = [rows[i + 1][1] / rows[i][1] for i in range(0, len(rows), len(MODES))] if MODES == ["plain", "browser"] else []
if ratios: print("per-pair ratios:", [round(r, 3) for r in ratios], "median", round(statistics.median(ratios), 3))
print("sums:", {m: round(v, 2) for m, v in sums.items()}, {m: f"{100*(v/sums['plain']-1):+.1f}%" for m, v in sums.items()})
if os.environ.get("NOPAGE"):
    for p in (demo, driver):
        p.send_signal(signal.SIGINT); p.wait(timeout=20)
    sys.exit(0)

# The finished run's page, replayed from its journal, loaded in Chromium.
runs = sorted(os.listdir(f"{work}/state/runs"))
run_id = runs[-1].removesuffix(".jsonl")
srv = subprocess.Popen([FF, "runs", "--serve", "127.0.0.1:18799"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while not port_open(18799): time.sleep(0.05)
drv = driver
udd = tempfile.mkdtemp(prefix="fleetfix-webbench-chrome-")
sess = wd("POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
    "binary": "/usr/bin/chromium", "args": [*CHROME_FLAGS, f"--user-data-dir={udd}"]}}}})["sessionId"]
loads = []
for i in range(5):
    wd("POST", f"/session/{sess}/url", {"url": "about:blank"})
    t0 = time.time()
    wd("POST", f"/session/{sess}/url", {"url": f"http://127.0.0.1:18799/runs/{run_id}"})
    wall = time.time() - t0
    nav = wd("POST", f"/session/{sess}/execute/sync", {"script":
        "const n = performance.getEntriesByType('navigation')[0]; return [n.domContentLoadedEventEnd, n.loadEventEnd, n.transferSize, document.querySelectorAll('[data-node]').length];", "args": []})
    loads.append((wall, nav))
    print(f"run page load {i+1}: navigate {wall*1000:.0f} ms, DOMContentLoaded {nav[0]:.0f} ms, load {nav[1]:.0f} ms, {nav[2]} bytes, nodes in DOM {nav[3]}", flush=True)
wd("DELETE", f"/session/{sess}")
for p in (drv, srv, demo):
    p.send_signal(signal.SIGINT)
    try: p.wait(timeout=10)
    except subprocess.TimeoutExpired: p.kill(); p.wait()
