#!/usr/bin/env bash
# The scale benchmark of issue 12: the operator (release build) against the local control plane and
# the emulator (quota 100 calls/s, 40 ms per call). Each scenario starts its own emulator, namespace
# and operator, and appends a markdown table to .local/bench/SCENARIO.txt (also printed):
#   hack/bench-scale.sh converge [N]   N UserMfaSettings (default 2000) in one directory of 2N users,
#                                      half by userName, half changing their user (a write), one
#                                      DirectoryMfaPolicy: time to all Ready vs the floor
#                                      (2N + writes + ListUsers pages) / 100 s, calls by action, VmHWM
#   hack/bench-scale.sh steady [N]     converge, then calls per managed user over one resync
#                                      (default 2000, --resync-interval 120s); again with
#                                      --device-resync-interval when the operator has it; again with
#                                      spec.census.enabled: calls per directory user
#   hack/bench-scale.sh three [M]      3 UserMfaSettings in a directory of M users (default 10000), no
#                                      census: reads of users no resource manages (expected 0)
#   hack/bench-scale.sh latency [N]    spec change -> its Update call, p50/p99 of 100 changes, (a) idle
#                                      and (b) while a resync of N resources (default 10000) saturates
#                                      the quota
#   hack/bench-scale.sh throttle [N]   quota 5 calls/s for a minute under --resync-interval 10s, N
#                                      resources (default 200): calls attempted per minute
#   hack/bench-scale.sh secrets [S]    S unrelated 48 KB Secrets (default 5000) in 10 namespaces, 10
#                                      resources, all namespaces watched: peak RSS; Secrets removed after
#   hack/bench-scale.sh all            converge 2000 and 10000, steady 2000, three 10000, latency 10000,
#                                      throttle 200, secrets 5000; one table in .local/bench/all.txt
#   hack/bench-scale.sh N              (the old form) converge N
# Knobs (environment): BENCH_QPS (100), BENCH_LATENCY_MS (40), BENCH_RESYNC (a duration, overrides
# each scenario's resync interval), BENCH_TIMEOUT_FACTOR (3: a wait fails after 3x its floor + 60 s),
# BENCH_OPERATOR_FLAGS (extra flags for `cloudsso-mfa-operator run`; default
# --max-concurrent-reconciles 8). Logs and generated files: .local/bench/SCENARIO-N/. The cluster is
# the one `hack/local-cluster.sh up` starts (or reuses); this script leaves it running.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
case "${1:-converge}" in
  converge|steady|three|latency|throttle|secrets|all) scenario=${1:-converge}; size=${2:-} ;;
  [0-9]*) scenario=converge; size=$1 ;;
  -h|--help|help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 converge|steady|three|latency|throttle|secrets|all [N]  (--help)" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${CLOUDSSO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudsso-mfa-operator}/target}
cargo build --quiet --release --bins --features emulator
# A copy: the target directory may be shared with other checkouts, whose builds must not swap the
# binaries under a running benchmark.
export BENCH_BIN="$ROOT/.local/bench/bin"
mkdir -p "$BENCH_BIN"
install -m 755 "$CARGO_TARGET_DIR/release/cloudsso-mfa-operator" "$CARGO_TARGET_DIR/release/cloudsso-emulator" "$BENCH_BIN/"
export KUBECONFIG; KUBECONFIG=$(hack/local-cluster.sh up)
eval "$(hack/local-cluster.sh env 2>/dev/null)"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
export BENCH_COMMIT; BENCH_COMMIT=$(git describe --always --dirty 2>/dev/null || echo unknown)

exec python3 - "$scenario" "$size" <<'PY'
import base64, http.client, json, math, os, re, signal, socket, ssl, statistics, subprocess, sys
import tempfile, threading, time, urllib.parse
from concurrent.futures import ThreadPoolExecutor

SCENARIO, SIZE = sys.argv[1], sys.argv[2]
ROOT, BIN = os.getcwd(), os.environ["BENCH_BIN"]
BENCH = os.path.join(ROOT, ".local", "bench")
QPS = int(os.environ.get("BENCH_QPS", "100"))
LATENCY_MS = int(os.environ.get("BENCH_LATENCY_MS", "40"))
FACTOR = float(os.environ.get("BENCH_TIMEOUT_FACTOR", "3"))
OPERATOR_FLAGS = os.environ.get("BENCH_OPERATOR_FLAGS", "--max-concurrent-reconciles 8").split()
GROUP = "/apis/cloudsso.mfa-operator.dev/v1alpha1"
KEY_ID, KEY_SECRET = "LTAI5tBenchKey", "bench-secret"
MIB = 1024 * 1024


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Failed(Exception):
    """A scenario that could not finish (it is reported as such, the others go on)."""


def parse_duration(text):
    total, matched = 0.0, False
    for value, unit in re.findall(r"([0-9.]+)(ms|s|m|h)", text):
        total += float(value) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
        matched = True
    if not matched:
        raise SystemExit(f"bench-scale: '{text}' is not a duration such as 30s, 2m or 1h")
    return total


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Http:
    """Keep-alive HTTP(S) to one server, one connection per thread."""

    def __init__(self, base, context=None, headers=None):
        url = urllib.parse.urlsplit(base)
        self.host, self.port, self.https = url.hostname, url.port, url.scheme == "https"
        self.context, self.headers, self.local = context, headers or {}, threading.local()

    def _connection(self):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            if self.https:
                conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=120)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            self.local.conn = conn
        return conn

    def request(self, method, path, body=None, content_type="application/json", ok=(200, 201, 202, 204)):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        headers = dict(self.headers, Accept="application/json")
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in range(3):
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
                time.sleep(0.2)
        if response.status not in ok:
            raise Failed(f"{method} {path}: HTTP {response.status}: {raw[:300].decode(errors='replace')}")
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")


def kube_client():
    config = json.loads(subprocess.check_output(["kubectl", "config", "view", "--raw", "--minify", "--flatten", "-o", "json"]))
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    pem = tempfile.mkdtemp(prefix="bench-kube-")
    def material(name):
        if f"{name}-data" in user or f"{name}-data" in cluster:
            path = os.path.join(pem, name)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(base64.b64decode((user.get(f"{name}-data") or cluster.get(f"{name}-data"))))
            return path
        return user.get(name) or cluster.get(name)
    context = ssl.create_default_context(cafile=material("certificate-authority"))
    if material("client-certificate"):
        context.load_cert_chain(material("client-certificate"), material("client-key"))
    headers = {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}
    return Http(cluster["server"], context, headers)


KUBE = kube_client()


def parallel(function, items, threads=8):
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(function, items))


def create_all(objects):
    def create(obj):
        ns = obj["metadata"].get("namespace")
        plural = {"Secret": "secrets", "DirectoryMfaPolicy": "directorymfapolicies",
                  "UserMfaSetting": "usermfasettings", "Namespace": "namespaces"}[obj["kind"]]
        base = "/api/v1" if obj["apiVersion"] == "v1" else GROUP
        path = f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"
        return KUBE.request("POST", path, obj, ok=(200, 201, 202, 409))  # 409: a retried POST
    return parallel(create, objects)


def ready(obj):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions", []))


class ReadyWatch:
    """Which objects of a kind in a namespace are Ready, kept by a watch (a list of 10,000
    objects every second would load the API server the operator shares the 2 cores with)."""

    def __init__(self, ns, plural):
        self.path, self.ready, self.lock = f"{GROUP}/namespaces/{ns}/{plural}", {}, threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return sum(self.ready.values())

    def _run(self):
        while not self.stopped:
            try:
                listed = KUBE.request("GET", self.path)
                with self.lock:
                    self.ready = {i["metadata"]["name"]: ready(i) for i in listed["items"]}
                version = listed["metadata"]["resourceVersion"]
                conn = http.client.HTTPSConnection(KUBE.host, KUBE.port, context=KUBE.context, timeout=600) \
                    if KUBE.https else http.client.HTTPConnection(KUBE.host, KUBE.port, timeout=600)
                conn.request("GET", f"{self.path}?watch=1&resourceVersion={version}&timeoutSeconds=300",
                             headers=dict(KUBE.headers, Accept="application/json"))
                response = conn.getresponse()
                while not self.stopped:
                    line = response.readline()
                    if not line:
                        break
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        break
                    obj = event["object"]
                    with self.lock:
                        if event["type"] == "DELETED":
                            self.ready.pop(obj["metadata"]["name"], None)
                        else:
                            self.ready[obj["metadata"]["name"]] = ready(obj)
                conn.close()
            except Exception as error:
                if not self.stopped:
                    log(f"watch of {self.path}: {error}; listing again")
                    time.sleep(1)

    def stop(self):
        self.stopped = True


def remove_namespace(ns):
    """Empties and deletes a namespace without a namespace controller (the plain local cluster has
    none): finalizers off the custom resources, delete collections, then finalize the namespace."""
    try:
        for plural in ("usermfasettings", "directorymfapolicies"):
            items = KUBE.request("GET", f"{GROUP}/namespaces/{ns}/{plural}", ok=(200, 404)) or {}
            stuck = [i["metadata"]["name"] for i in items.get("items", []) if i["metadata"].get("finalizers")]
            parallel(lambda name: KUBE.request("PATCH", f"{GROUP}/namespaces/{ns}/{plural}/{name}",
                                               {"metadata": {"finalizers": None}},
                                               "application/merge-patch+json", ok=(200, 404)), stuck)
            KUBE.request("DELETE", f"{GROUP}/namespaces/{ns}/{plural}", ok=(200, 404))
        KUBE.request("DELETE", f"/api/v1/namespaces/{ns}/secrets", ok=(200, 404))
        KUBE.request("DELETE", f"/api/v1/namespaces/{ns}", ok=(200, 202, 404, 409))
        current = KUBE.request("GET", f"/api/v1/namespaces/{ns}", ok=(200, 404))
        if current:
            current["spec"]["finalizers"] = []
            KUBE.request("PUT", f"/api/v1/namespaces/{ns}/finalize", current, ok=(200, 404, 409))
    except Exception as error:  # cleanup must not hide the report
        log(f"cleanup of namespace {ns} failed: {error}")


class Procs:
    """Every process the scenario started, stopped at its end (and on SIGINT/SIGTERM)."""

    def __init__(self):
        self.procs, self.namespaces, self.watches = [], [], []

    def start(self, argv, logfile):
        proc = subprocess.Popen(argv, stdout=open(logfile, "ab"), stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self, proc):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self):
        for watch in self.watches:
            watch.stop()
        self.watches = []
        for proc in list(self.procs):
            self.stop(proc)
        for ns in self.namespaces:
            remove_namespace(ns)
        self.namespaces = []


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, on_signal)


class Emulator:
    def __init__(self, procs, work, seed):
        path = os.path.join(work, "seed.json")
        with open(path, "w") as f:
            json.dump(seed, f)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = procs.start([f"{BIN}/cloudsso-emulator", "--listen", f"127.0.0.1:{self.port}", "--seed", path],
                                os.path.join(work, "emulator.log"))
        self.http = Http(self.url)
        for _ in range(100):
            try:
                self.http.request("GET", "/_emulator/healthz")
                break
            except Exception:
                time.sleep(0.1)
        else:
            raise Failed(f"the emulator did not start; see {work}/emulator.log")
        self.faults(qps=QPS, latencyMs=LATENCY_MS)

    def faults(self, **faults):
        self.http.request("PUT", "/_emulator/faults", faults)

    def calls(self):
        return self.http.request("GET", "/_emulator/calls")

    def user_calls(self):
        return self.http.request("GET", "/_emulator/calls/users", ok=(200, 404)) or {}

    def reset_calls(self):
        self.http.request("DELETE", "/_emulator/calls")

    def writes(self):
        return self.http.request("GET", "/_emulator/writes")

    def clear_writes(self):
        self.http.request("DELETE", "/_emulator/writes")


def total(calls, outcome=None):
    return sum(n for outcomes in calls.values() for o, n in outcomes.items() if outcome in (None, o))


def action_count(calls, action, outcome="ok"):
    return sum(n for o, n in calls.get(action, {}).items() if outcome in (None, o))


def describe_calls(calls):
    parts = []
    for action, outcomes in sorted(calls.items()):
        failed = {o: n for o, n in outcomes.items() if o != "ok"}
        extra = f" ({', '.join(f'{o} {n}' for o, n in sorted(failed.items()))})" if failed else ""
        parts.append(f"{action} {outcomes.get('ok', 0)}{extra}")
    return ", ".join(parts)


def diff_calls(after, before):
    return {a: {o: n - before.get(a, {}).get(o, 0) for o, n in outcomes.items() if n - before.get(a, {}).get(o, 0)}
            for a, outcomes in after.items() if any(n - before.get(a, {}).get(o, 0) for o, n in outcomes.items())}


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def mib(kib):
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


def operator_has(flag):
    out = subprocess.run([f"{BIN}/cloudsso-mfa-operator", "run", "--help"], capture_output=True, text=True)
    return flag in out.stdout


class Operator:
    def __init__(self, procs, work, name, resync, namespace=None, extra=()):
        self.procs, self.metrics_port = procs, free_port()
        self.log = os.path.join(work, f"operator-{name}.log")
        argv = [f"{BIN}/cloudsso-mfa-operator", "run", "--metrics-addr", f"127.0.0.1:{self.metrics_port}",
                "--cloud-qps", str(min(QPS, 100)), "--resync-interval", f"{int(resync)}s", *OPERATOR_FLAGS, *extra]
        if namespace:
            argv += ["--watch-namespace", namespace]
        log(" ".join(argv[1:]))
        self.started = time.time()
        self.proc = procs.start(argv, self.log)

    def alive(self):
        return self.proc.poll() is None

    def peak_kib(self):
        return status_kib(self.proc.pid, "VmHWM")

    def rss_kib(self):
        return status_kib(self.proc.pid, "VmRSS")

    def metric(self, name):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=5)
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        except OSError:
            return None
        values = [float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", text, re.M)]
        return max(values) if values else None

    def stop(self):
        self.procs.stop(self.proc)


# --- the generated world -------------------------------------------------------------------------

def user_id(directory, i):
    return f"u-{directory[2:]}{i:07d}"


def changing(i):
    """Half the managed users have the other setting in the cloud (a write), across both halves."""
    return i % 4 in (0, 1)


def make_seed(directory, users, managed):
    return {"accessKeys": [{"accessKeyId": KEY_ID, "accessKeySecret": KEY_SECRET}],
            "directories": [{"directoryId": directory, "mfaAuthenticationSettings": "Byuser",
                             "operationForRiskLogin": "Autonomous",
                             "users": [{"userId": user_id(directory, i), "userName": f"user{i}",
                                        "userMfaAuthenticationSettings": "Disabled" if i < managed and changing(i) else "Enabled",
                                        "mfaDevices": [{"deviceId": f"mfa-{directory[2:]}{i:07d}", "deviceName": f"user{i}-totp",
                                                        "deviceType": "TOTP", "effectiveTime": "2025-01-01T00:00:00Z"}] if i % 2 else []}
                                       for i in range(users)]}]}


def make_resources(ns, directory, managed, endpoint, census=False):
    common = {"endpoint": endpoint, "credentialsSecretRef": {"name": "keys"}}
    policy = {"directoryId": directory, "mfaAuthenticationSettings": "Byuser", "operationForRiskLogin": "Autonomous", **common}
    if census:
        policy["census"] = {"enabled": True}
    docs = [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": ns},
             "stringData": {"accessKeyId": KEY_ID, "accessKeySecret": KEY_SECRET}},
            {"apiVersion": "cloudsso.mfa-operator.dev/v1alpha1", "kind": "DirectoryMfaPolicy",
             "metadata": {"name": "dir", "namespace": ns}, "spec": policy}]
    for i in range(managed):
        who = {"userName": f"user{i}"} if i % 2 == 0 else {"userId": user_id(directory, i)}
        docs.append({"apiVersion": "cloudsso.mfa-operator.dev/v1alpha1", "kind": "UserMfaSetting",
                     "metadata": {"name": f"user{i}", "namespace": ns},
                     "spec": {"directoryId": directory, **who, "userMfaAuthenticationSettings": "Enabled", **common}})
    return docs


class World:
    """One scenario's emulator, namespace and resources."""

    def __init__(self, procs, name, users, managed, census=False):
        self.work = os.path.join(BENCH, name)
        os.makedirs(self.work, exist_ok=True)
        self.procs, self.users, self.managed = procs, users, managed
        self.directory = f"d-bench{os.getpid() % 100000:05d}{abs(hash(name)) % 1000:03d}"
        self.ns = f"bench-{name}-{os.getpid() % 100000}".lower()
        self.emulator = Emulator(procs, self.work, make_seed(self.directory, users, managed))
        docs = make_resources(self.ns, self.directory, managed, self.emulator.url, census)
        with open(os.path.join(self.work, "resources.json"), "w") as f:
            json.dump({"apiVersion": "v1", "kind": "List", "items": docs}, f)
        procs.namespaces.append(self.ns)
        create_all([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.ns}}])
        t = time.time()
        create_all(docs[:2])
        create_all(docs[2:])
        log(f"{self.ns}: {managed} UserMfaSettings in a directory of {users} users created in {time.time() - t:.1f}s")
        spec = KUBE.request("GET", f"{GROUP}/namespaces/{self.ns}/directorymfapolicies/dir")["spec"]
        self.census_kept = "census" in spec
        self.watch = ReadyWatch(self.ns, "usermfasettings")
        procs.watches.append(self.watch)

    def ready_count(self):
        policy = KUBE.request("GET", f"{GROUP}/namespaces/{self.ns}/directorymfapolicies/dir")
        return self.watch.count() + ready(policy)

    def wait_ready(self, operator, floor_s, what="every resource Ready"):
        """Seconds from the operator's start until every resource is Ready; Failed past the deadline."""
        deadline = FACTOR * floor_s + 60
        want, poll = self.managed + 1, 0.5
        last = 0
        while True:
            count = self.ready_count()
            now = time.time()
            if count >= want:
                return now - operator.started
            if not operator.alive():
                raise Failed(f"the operator exited; see {operator.log}")
            if now - operator.started > deadline:
                raise Failed(f"{what}: not within {deadline:.0f}s ({FACTOR:g}x the floor {floor_s:.0f}s + 60s): "
                             f"{count}/{want} Ready; see {operator.log}")
            if now - last > 30:
                log(f"{count}/{want} Ready after {now - operator.started:.0f}s")
                last = now
            time.sleep(poll)


def estimated_floor(n, users):
    """The converge floor before the calls are known: 2 reads per user, half of them writing, and
    the ListUsers pages of the directory (100 a page)."""
    return (2 * n + n / 2 + math.ceil(users / 100)) / QPS


# --- the scenarios -------------------------------------------------------------------------------

def row(rows, scenario, n, measure, value, target=""):
    rows.append((scenario, str(n), measure, value, target))


def converge_run(procs, rows, n, label="converge", resync=None, census=False, extra=(), report=True):
    world = World(procs, f"{label}-{n}", 2 * n, n, census)
    floor_guess = estimated_floor(n, 2 * n)
    resync = resync or parse_duration(os.environ.get("BENCH_RESYNC", "0s")) or max(120, math.ceil(3 * floor_guess))
    operator = Operator(procs, world.work, label, resync, world.ns, extra)
    elapsed = world.wait_ready(operator, floor_guess)
    calls = world.emulator.calls()
    writes = sum(action_count(calls, a) for a in calls if a.startswith("Update"))
    pages = action_count(calls, "ListUsers")
    floor = (2 * n + writes + pages) / QPS
    log(f"{label} {n}: all Ready after {elapsed:.1f}s (floor {floor:.1f}s)")
    world.elapsed, world.floor = elapsed, floor
    if report:
        row(rows, "converge", n, "all Ready after", f"{elapsed:.1f} s", "")
        row(rows, "converge", n, f"floor (2N + {writes} writes + {pages} pages) / {QPS}", f"{floor:.1f} s", "")
        row(rows, "converge", n, "ratio to the floor", f"{elapsed / floor:.2f}x", "≤ 1.2x")
        row(rows, "converge", n, "cloud calls by action (ok, failures)", describe_calls(calls), "")
        row(rows, "converge", n, "peak RSS (VmHWM)", mib(operator.peak_kib()), "≤ 64 MiB at 10,000")
    return world, operator, resync


def resync_window(operator, asked):
    effective = operator.metric("cloudsso_mfa_operator_effective_resync_seconds")
    return (effective, "effective_resync_seconds") if effective else (asked, "--resync-interval")


def steady(procs, rows, n):
    asked = parse_duration(os.environ.get("BENCH_RESYNC", "0s")) or max(120, math.ceil(2.4 * estimated_floor(n, 2 * n)))
    variants = [("plain", (), False)]
    if operator_has("--device-resync-interval"):
        variants.append(("device", ("--device-resync-interval", f"{int(10 * asked)}s"), False))
    else:
        row(rows, "steady", n, "calls per managed user per resync, --device-resync-interval", "(flag absent)", "≤ 1")
    variants.append(("census", (), True))
    for name, extra, census in variants:
        try:
            world, operator, resync = converge_run(procs, rows, n, f"steady-{name}", asked, census, extra, report=False)
            if census and not world.census_kept:
                row(rows, "steady", n, "calls per directory user per resync, census on", "(spec.census pruned: not in this CRD)", "≤ 2")
                continue
            row(rows, "steady", n, f"{name}: all Ready after (floor)", f"{world.elapsed:.1f} s ({world.floor:.1f} s)", "")
            window, source = resync_window(operator, resync)
            # Each resource's first resync after convergence lands anywhere in [P/2, 3P/2) (its
            # phase) and may find its read still fresh: from 1.5 intervals on, every resource
            # is on its once-per-interval beat, and that is what is counted.
            log(f"steady {name}: {1.5 * window:.0f}s for every resource to reach its phase")
            time.sleep(1.5 * window)
            window, source = resync_window(operator, resync)
            world.emulator.reset_calls()
            log(f"steady {name}: counting calls over {window:.0f}s ({source})")
            time.sleep(window)
            calls = world.emulator.calls()
            attempts = total(calls)
            if census:
                row(rows, "steady", n, f"calls per directory user ({2 * n}) per resync ({window:.0f}s), census on",
                    f"{attempts / (2 * n):.2f} ({describe_calls(calls)})", "≤ 2")
            else:
                flag = " with --device-resync-interval" if extra else ""
                row(rows, "steady", n, f"calls per managed user per resync ({window:.0f}s, {source}){flag}",
                    f"{attempts / n:.2f} ({describe_calls(calls)})", "≤ 1" if extra else "≤ 2")
            if not census and not extra:
                row(rows, "steady", n, "RSS after one more resync (VmRSS / VmHWM)", f"{mib(operator.rss_kib())} / {mib(operator.peak_kib())}", "")
        finally:
            procs.close()


def three(procs, rows, users):
    world = World(procs, f"three-{users}", users, 3)
    resync = parse_duration(os.environ.get("BENCH_RESYNC", "0s")) or 30
    operator = Operator(procs, world.work, "three", resync, world.ns)
    elapsed = world.wait_ready(operator, estimated_floor(3, users))
    window, source = resync_window(operator, resync)
    log(f"three: Ready after {elapsed:.1f}s; counting over one more resync ({window:.0f}s)")
    time.sleep(window)
    calls, by_user = world.emulator.calls(), world.emulator.user_calls()
    managed = {user_id(world.directory, i) for i in range(3)}
    for action in ("ListMFADevicesForUser", "GetUserMFAAuthenticationSettings"):
        others = sum(c for u, c in by_user.get(action, {}).items() if u not in managed)
        row(rows, "three", users, f"{action} for users no resource manages (start + {window:.0f}s)", str(others), "0")
    row(rows, "three", users, "all cloud calls (start + one resync)", f"{total(calls)} ({describe_calls(calls)})", "")


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def changes(world, count, timeout_s, setting):
    """Patches `count` resources one at a time; ms from just before each PATCH to the emulator's
    arrival time of the Update call for that user that succeeded."""
    step = max(1, world.managed // count)
    samples = []
    for k in range(count):
        i = (k * step) % world.managed
        uid = user_id(world.directory, i)
        world.emulator.clear_writes()
        sent_ms = time.time() * 1000
        KUBE.request("PATCH", f"{GROUP}/namespaces/{world.ns}/usermfasettings/user{i}",
                     {"spec": {"userMfaAuthenticationSettings": setting}}, "application/merge-patch+json")
        deadline = time.time() + timeout_s
        while True:
            hit = [w for w in world.emulator.writes() if w.get("userId") == uid and w["outcome"] == "ok"
                   and w["action"] == "UpdateUserMFAAuthenticationSettings"]
            if hit:
                samples.append(hit[0]["atMs"] - sent_ms)
                break
            if time.time() > deadline:
                raise Failed(f"no Update for user{i} within {timeout_s:.0f}s of its spec change")
            time.sleep(0.005)
    return samples


def latency(procs, rows, n):
    world, operator, _ = converge_run(procs, rows, n, "latency", resync=3600, report=False)
    samples = changes(world, 100, 60, "Disabled")
    row(rows, "latency", n, "spec change -> Update, idle: p50 / p99 (100 changes)",
        f"{percentile(samples, 50):.0f} ms / {percentile(samples, 99):.0f} ms", "")
    # (b): a new operator reads all N users again (a full resync) and, with a short resync
    # interval, keeps doing so: the quota stays saturated while the spec changes wait their turn.
    operator.stop()
    resync = max(30, math.ceil(estimated_floor(n, 0) / 2))
    operator = Operator(procs, world.work, "latency-saturated", resync, world.ns)
    before, t0 = total(world.emulator.calls()), time.time()
    time.sleep(3)
    try:
        samples = changes(world, 100, max(120, FACTOR * 2 * n / QPS), "Enabled")
        busy = (total(world.emulator.calls()) - before) / (time.time() - t0)
        row(rows, "latency", n, f"spec change -> Update, during a resync of {n}: p50 / p99 (100 changes)",
            f"{percentile(samples, 50):.0f} ms / {percentile(samples, 99):.0f} ms", "")
        row(rows, "latency", n, "cloud calls/s while measuring (b) (the quota)", f"{busy:.0f} ({QPS})", "")
    except Failed as error:
        row(rows, "latency", n, f"spec change -> Update, during a resync of {n}", f"FAILED: {error}", "")


def throttle(procs, rows, n):
    world, operator, _ = converge_run(procs, rows, n, "throttle", resync=10, report=False)
    before = world.emulator.calls()
    world.emulator.faults(qps=5, latencyMs=LATENCY_MS)
    log("throttle: quota 5 calls/s for 60s")
    time.sleep(60)
    after = world.emulator.calls()
    world.emulator.faults(qps=QPS, latencyMs=LATENCY_MS)
    delta = diff_calls(after, before)
    row(rows, "throttle", n, "calls attempted in the minute at 5 calls/s, --resync-interval 10s (all outcomes)",
        f"{total(delta)} ({total(delta, 'ok')} ok, {total(delta, 'Throttling.User')} throttled)", "≤ 450")
    if not operator.alive():
        row(rows, "throttle", n, "operator", "exited during the minute", "")


def secrets(procs, rows, count):
    spaces = [f"bench-secrets-{k}-{os.getpid() % 100000}" for k in range(10)]
    procs.namespaces.extend(spaces)
    create_all([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in spaces])
    blob = base64.b64encode(os.urandom(48 * 1024)).decode()
    t = time.time()
    create_all([{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"blob-{k}", "namespace": spaces[k % 10]},
                 "data": {"blob": blob}} for k in range(count)], )
    log(f"secrets: {count} Secrets of 48 KB in 10 namespaces created in {time.time() - t:.0f}s")
    world = World(procs, f"secrets-{count}", 20, 10)
    resync = parse_duration(os.environ.get("BENCH_RESYNC", "0s")) or 30
    operator = Operator(procs, world.work, "secrets", resync)  # every namespace
    elapsed = world.wait_ready(operator, 30 + count / 500)
    time.sleep(resync)
    row(rows, "secrets", count, f"10 resources Ready after (all namespaces watched, {count} Secrets of 48 KB)", f"{elapsed:.1f} s", "")
    row(rows, "secrets", count, f"peak RSS (VmHWM) after one more resync ({resync:.0f}s); VmRSS", f"{mib(operator.peak_kib())}; {mib(operator.rss_kib())}", "≤ 64 MiB")


SCENARIOS = {"converge": (lambda p, r, n: converge_run(p, r, n), 2000), "steady": (steady, 2000), "three": (three, 10000),
             "latency": (latency, 10000), "throttle": (throttle, 200), "secrets": (secrets, 5000)}
ALL = [("converge", 2000), ("converge", 10000), ("steady", 2000), ("three", 10000), ("latency", 10000),
       ("throttle", 200), ("secrets", 5000)]


def table(rows, title):
    lines = [f"### {title}", "", "| scenario | N | measure | value | target |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def run(name, n):
    rows, procs = [], Procs()
    function, default = SCENARIOS[name]
    n = n or default
    log(f"scenario {name} {n}")
    try:
        function(procs, rows, n)
    except Failed as error:
        log(f"{name} {n}: FAILED: {error}")
        row(rows, name, n, "FAILED", str(error), "")
    finally:
        procs.close()
    return rows


def main():
    stamp = f"{time.strftime('%Y-%m-%d %H:%M')} at {os.environ.get('BENCH_COMMIT', '?')}, quota {QPS} calls/s, {LATENCY_MS} ms a call"
    if SCENARIO == "all":
        rows = []
        for name, n in ALL:
            rows += run(name, n)
        out, path = table(rows, f"all scenarios, {stamp}"), os.path.join(BENCH, "all.txt")
    else:
        rows = run(SCENARIO, int(SIZE) if SIZE else 0)
        out, path = table(rows, f"{SCENARIO}, {stamp}"), os.path.join(BENCH, f"{SCENARIO}.txt")
    with open(path, "a") as f:
        f.write(out + "\n")
    print(out)
    return 1 if any(r[2] == "FAILED" for r in rows) else 0


sys.exit(main())
PY
