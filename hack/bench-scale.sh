#!/usr/bin/env bash
# The scale benchmark of issues 12, 17 and 18: the operator (release build) against the local control plane and
# the emulator (quota 100 calls/s, 40 ms per call). Each scenario starts its own emulator, namespace
# and operator, and appends a markdown table to .local/bench/SCENARIO.txt (also printed):
#   hack/bench-scale.sh converge [N]   N UserMfaSettings (default 2000) in one directory of 2N users,
#                                      half by userName, half changing their user (a write), one
#                                      DirectoryMfaPolicy: time to all Ready vs the floor
#                                      (2N + writes + ListUsers pages) / 100 s, the calls made until
#                                      then vs the floor's (2N + writes + pages), calls by action, VmHWM
#   hack/bench-scale.sh drift [N]      converge N (default 10000) with --resync-interval 60s; right
#                                      after the last turns Ready, 100 managed users' setting changed in
#                                      the cloud (a console change: the API call, own key): time to each
#                                      repair (its Update call) p50/p99/max, how many took longer than
#                                      one interval; calls per managed user in the first and the next
#                                      interval after converging
#   hack/bench-scale.sh steady [N]     converge, then calls per managed user over one resync
#                                      (default 2000, --resync-interval 120s); again with
#                                      --device-resync-interval when the operator has it; again with
#                                      spec.census.enabled: calls per directory user
#   hack/bench-scale.sh three [M]      3 UserMfaSettings in a directory of M users (default 10000), no
#                                      census: reads of users no resource manages (expected 0)
#   hack/bench-scale.sh latency [N]    spec change -> its Update call, p50/p99/max of 100 changes made
#                                      one at a time, (a) idle and (b) after a restart: a new operator
#                                      resyncing N resources (default 10000) saturates the quota
#   hack/bench-scale.sh bulk [N]       1000 converged UserMfaSettings, then N new ones (default 4000)
#                                      created at once (one burst of concurrent POSTs, as a large
#                                      `kubectl apply -f` would) and meanwhile 100 spec changes of
#                                      existing ones, one at a time from a process of its own
#                                      (spread over the bulk's floor): change -> Update p50/p99/max,
#                                      how many over 20 s; the bulk's time to all Ready
#                                      (--resync-interval 5m, the default)
#   hack/bench-scale.sh throttle [N]   quota 5 calls/s for a minute under --resync-interval 10s, N
#                                      resources (default 200): calls attempted per minute
#   hack/bench-scale.sh secrets [S]    S unrelated 48 KB Secrets (default 5000) in 10 namespaces, 10
#                                      resources, all namespaces watched: peak RSS; Secrets removed after
#   hack/bench-scale.sh policy [N]     one UserMfaPolicy `users: {all: true}` (Enabled,
#                                      requireBoundDevice false) over a directory of N users (default
#                                      10000), half Disabled (a write), half with a device; the
#                                      PolicyReport CRD installed (tests/crds/policyreport.yaml);
#                                      --resync-interval 60s (the budget stretches it: the effective
#                                      interval is reported). Time from the apply until the status
#                                      counts N compliant (and the cloud has no Disabled user left)
#                                      vs the floor (2N + N/2 writes + ceil(N/100) pages) / 100 s,
#                                      the calls until then vs the floor's, calls by action, each
#                                      pass (its lastSyncTime) with its calls, then steady: calls per
#                                      user over BENCH_STEADY_WINDOWS (2) effective intervals after
#                                      converging (capped at BENCH_STEADY_MAX_S seconds, if set: the
#                                      window is then partial and said so); VmHWM and VmRSS of the
#                                      operator and of the emulator; PolicyReport writes (a watch).
#                                      The devices are bound 2025-01-01 and never used: each is
#                                      stale (a `warn` result in the report, N/2 of them);
#                                      BENCH_POLICY_DEVICES=recent: used yesterday (no results)
#   hack/bench-scale.sh all            converge 2000 and 10000, drift 10000, steady 2000, three 10000,
#                                      latency 10000, bulk 4000, throttle 200, secrets 5000, policy
#                                      10000; one table in .local/bench/all.txt
#   hack/bench-scale.sh N              (the old form) converge N
# "change -> Update" is timed from just before the PATCH (or the PUT of the state) to the arrival
# time (atMs) of that user's successful UpdateUserMFAAuthenticationSettings in GET /_emulator/writes.
# Every wait has a deadline (3x its floor or interval + 60 s): past it the scenario is reported as
# FAILED (not finished) with what it reached, and the others go on.
# Knobs (environment): BENCH_QPS (100), BENCH_LATENCY_MS (40), BENCH_RESYNC (a duration, overrides
# each scenario's resync interval), BENCH_TIMEOUT_FACTOR (3: a wait fails after 3x its floor + 60 s),
# BENCH_OPERATOR_FLAGS (extra flags for `cloudsso-mfa-operator run`; default none: the defaults a
# user gets, beside --cloud-qps 100 and each scenario's --resync-interval), BENCH_OPERATOR_WRAP (a
# command to run the operator under, e.g. `heaptrack -o FILE`). Logs and generated
# files: .local/bench/SCENARIO-N/. The cluster is the one `hack/local-cluster.sh up` starts (or
# reuses); this script leaves it running.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
case "${1:-converge}" in
  converge|drift|steady|three|latency|bulk|throttle|secrets|policy|all) scenario=${1:-converge}; size=${2:-} ;;
  [0-9]*) scenario=converge; size=$1 ;;
  -h|--help|help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 converge|drift|steady|three|latency|bulk|throttle|secrets|policy|all [N]  (--help)" >&2; exit 2 ;;
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
if [[ $scenario == policy || $scenario == all ]]; then  # the PolicyReport CRD, so the report path is exercised
  kubectl apply --server-side --force-conflicts -f tests/crds/policyreport.yaml >/dev/null
  kubectl wait --for condition=established --timeout 60s crd/policyreports.wgpolicyk8s.io >/dev/null
fi
export BENCH_COMMIT; BENCH_COMMIT=$(git describe --always --dirty 2>/dev/null || echo unknown)

exec python3 - "$scenario" "$size" <<'PY'
import base64, hashlib, hmac, http.client, json, math, os, re, signal, socket, ssl, statistics, subprocess, sys
import tempfile, threading, time, urllib.parse, uuid
from concurrent.futures import ThreadPoolExecutor

SCENARIO, SIZE = sys.argv[1], sys.argv[2]
ROOT, BIN = os.getcwd(), os.environ["BENCH_BIN"]
BENCH = os.path.join(ROOT, ".local", "bench")
QPS = int(os.environ.get("BENCH_QPS", "100"))
LATENCY_MS = int(os.environ.get("BENCH_LATENCY_MS", "40"))
FACTOR = float(os.environ.get("BENCH_TIMEOUT_FACTOR", "3"))
OPERATOR_FLAGS = os.environ.get("BENCH_OPERATOR_FLAGS", "").split()  # the defaults a user gets
# A command the operator runs under, e.g. `heaptrack -o FILE` for where its peak memory goes (the
# VmHWM rows then measure the wrapper's process, not the operator's).
WRAP = os.environ.get("BENCH_OPERATOR_WRAP", "").split()
GROUP = "/apis/cloudsso.mfa-operator.dev/v1alpha1"
KEY_ID, KEY_SECRET = "LTAI5tBenchKey", "bench-secret"
# The console's key (drift): its own quota window, so a console change does not take the operator's.
CONSOLE_KEY_ID, CONSOLE_KEY_SECRET = "LTAI5tBenchConsole", "bench-console-secret"
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


def create_all(objects, threads=8):
    def create(obj):
        ns = obj["metadata"].get("namespace")
        plural = {"Secret": "secrets", "DirectoryMfaPolicy": "directorymfapolicies",
                  "UserMfaSetting": "usermfasettings", "Namespace": "namespaces"}[obj["kind"]]
        base = "/api/v1" if obj["apiVersion"] == "v1" else GROUP
        path = f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"
        return KUBE.request("POST", path, obj, ok=(200, 201, 202, 409))  # 409: a retried POST
    return parallel(create, objects, threads)


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
        for plural in ("usermfasettings", "directorymfapolicies", "usermfapolicies"):
            items = KUBE.request("GET", f"{GROUP}/namespaces/{ns}/{plural}", ok=(200, 404)) or {}
            stuck = [i["metadata"]["name"] for i in items.get("items", []) if i["metadata"].get("finalizers")]
            parallel(lambda name: KUBE.request("PATCH", f"{GROUP}/namespaces/{ns}/{plural}/{name}",
                                               {"metadata": {"finalizers": None}},
                                               "application/merge-patch+json", ok=(200, 404)), stuck)
            KUBE.request("DELETE", f"{GROUP}/namespaces/{ns}/{plural}", ok=(200, 404))
        KUBE.request("DELETE", f"/apis/wgpolicyk8s.io/v1alpha2/namespaces/{ns}/policyreports", ok=(200, 404))
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
        for proc in list(reversed(self.procs)):  # the operator before its emulator: no "could not reach" at the end
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
        argv = [*WRAP, f"{BIN}/cloudsso-mfa-operator", "run", "--metrics-addr", f"127.0.0.1:{self.metrics_port}",
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
    return {"accessKeys": [{"accessKeyId": KEY_ID, "accessKeySecret": KEY_SECRET},
                           {"accessKeyId": CONSOLE_KEY_ID, "accessKeySecret": CONSOLE_KEY_SECRET}],
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

    def __init__(self, procs, name, users, managed, census=False, initial=None):
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
        # `initial` of them now, the rest (self.later) when the scenario applies them.
        initial = managed if initial is None else initial
        create_all(docs[2:2 + initial])
        self.later = docs[2 + initial:]
        log(f"{self.ns}: {initial} of {managed} UserMfaSettings in a directory of {users} users created in {time.time() - t:.1f}s")
        spec = KUBE.request("GET", f"{GROUP}/namespaces/{self.ns}/directorymfapolicies/dir")["spec"]
        self.census_kept = "census" in spec
        self.watch = ReadyWatch(self.ns, "usermfasettings")
        procs.watches.append(self.watch)

    def ready_count(self):
        policy = KUBE.request("GET", f"{GROUP}/namespaces/{self.ns}/directorymfapolicies/dir")
        return self.watch.count() + ready(policy)

    def wait_ready(self, operator, floor_s, what="every resource Ready", want=None, since=None):
        """Seconds from the operator's start (or `since`) until `want` resources (default: every
        one) are Ready; Failed past the deadline."""
        deadline = FACTOR * floor_s + 60
        want, poll = (want or self.managed + 1), 0.5
        since = since or operator.started
        last = 0
        while True:
            count = self.ready_count()
            now = time.time()
            if count >= want:
                return now - since
            if not operator.alive():
                raise Failed(f"the operator exited; see {operator.log}")
            if now - since > deadline:
                raise Failed(f"{what}: not within {deadline:.0f}s ({FACTOR:g}x the floor {floor_s:.0f}s + 60s): "
                             f"{count}/{want} Ready; see {operator.log}")
            if now - last > 30:
                log(f"{count}/{want} Ready after {now - since:.0f}s")
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
    floor_calls = 2 * n + writes + pages
    floor = floor_calls / QPS
    log(f"{label} {n}: all Ready after {elapsed:.1f}s (floor {floor:.1f}s); {total(calls)} calls (floor's {floor_calls})")
    world.elapsed, world.floor, world.floor_calls, world.converge_calls = elapsed, floor, floor_calls, calls
    if report:
        converge_rows(rows, "converge", n, world, operator, resync)
        row(rows, "converge", n, "cloud calls by action (ok, failures)", describe_calls(calls), "")
        row(rows, "converge", n, "peak RSS (VmHWM)", mib(operator.peak_kib()), "≤ 64 MiB at 10,000")
    return world, operator, resync


def converge_rows(rows, scenario, n, world, operator, resync):
    """Time and calls of a converge against its floor (its reads, writes and pages at the quota)."""
    flags = " ".join(OPERATOR_FLAGS) or "default flags"
    row(rows, scenario, n, f"all Ready after ({flags}, --resync-interval {resync:.0f}s)", f"{world.elapsed:.1f} s", "")
    pages = action_count(world.converge_calls, "ListUsers")
    writes = world.floor_calls - 2 * n - pages
    row(rows, scenario, n, f"floor (2N + {writes} writes + {pages} pages) / {QPS}", f"{world.floor:.1f} s", "")
    row(rows, scenario, n, "ratio to the floor", f"{world.elapsed / world.floor:.2f}x", "≤ 1.2x")
    attempts = total(world.converge_calls)
    row(rows, scenario, n, f"cloud calls until all Ready (all outcomes) vs the floor's {world.floor_calls}",
        f"{attempts} ({attempts - world.floor_calls:+d}, {attempts / world.floor_calls:.2f}x)", "no call beyond the floor's")


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


def timed_changes(world, indices, setting, timeout_s, pace_s=0.0, until=None, sent=None, detail=None):
    """Patches the resources `indices` one at a time; ms from just before each PATCH to the
    emulator's arrival time (`atMs`) of the Update call for that user that succeeded. A change
    whose Update is not seen within `timeout_s` is a miss (None) and the next one goes on; past
    `until` (an epoch second) the rest are not made. `pace_s`: at least this long from one change
    to the next (spreads them over a bulk); `sent` (a list) gets each PATCH's epoch second;
    `detail` (a list) gets (epoch second sent, ms the PATCH itself took, ms to the Update) of each
    timed change, so a slow one can be put down to the API server's answer or to what followed.
    Returns (samples, misses, made)."""
    samples, misses, made = [], [], 0
    t0 = time.time()
    for k, i in enumerate(indices):
        if until and time.time() > until:
            break
        wait = t0 + k * pace_s - time.time()
        if wait > 0:
            time.sleep(wait)
        uid = user_id(world.directory, i)
        world.emulator.clear_writes()
        sent_ms = time.time() * 1000
        KUBE.request("PATCH", f"{GROUP}/namespaces/{world.ns}/usermfasettings/user{i}",
                     {"spec": {"userMfaAuthenticationSettings": setting}}, "application/merge-patch+json")
        patched_ms = time.time() * 1000 - sent_ms
        made += 1
        if sent is not None:
            sent.append(sent_ms / 1000)
        deadline = time.time() + timeout_s
        while True:
            hit = [w for w in world.emulator.writes() if w.get("userId") == uid and w["outcome"] == "ok"
                   and w["action"] == "UpdateUserMFAAuthenticationSettings"]
            if hit:
                samples.append(hit[0]["atMs"] - sent_ms)
                if detail is not None:
                    detail.append((sent_ms / 1000, patched_ms, samples[-1]))
                break
            if time.time() > deadline:
                misses.append(i)
                log(f"no Update for user{i} within {timeout_s:.0f}s of its spec change")
                break
            time.sleep(0.005)
    return samples, misses, made


def in_own_process(clients, function, *args, **kwargs):
    """`function(*args, **kwargs)` run in a forked process of its own (on fresh connections of
    `clients`); returns its result, which must be JSON. The spec changes made during a bulk come
    from another client, as a second user's kubectl would: threads of this interpreter would wait
    for its lock behind the bulk's 16 POST threads and the Ready watch's JSON parsing, and a PATCH
    timed here would include that wait."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            # Fresh streams and connections: another thread may have held the old ones' locks.
            sys.stdout, sys.stderr = os.fdopen(os.dup(1), "w"), os.fdopen(os.dup(2), "w")
            for client in clients:
                client.local = threading.local()
            answer = {"ok": function(*args, **kwargs)}
        except BaseException as error:
            answer = {"error": f"{type(error).__name__}: {error}"}
        with os.fdopen(write, "w") as out:
            json.dump(answer, out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer_in:
        raw = answer_in.read()
    os.waitpid(pid, 0)
    answer = json.loads(raw) if raw else {"error": "the process sent nothing back"}
    if "error" in answer:
        raise Failed(f"{getattr(function, '__name__', function)} in its own process: {answer['error']}")
    return answer["ok"]


def timed_changes_apart(world, indices, setting, timeout_s, pace_s, until):
    """`timed_changes` in a process of its own (see `in_own_process`): (samples, misses, made,
    sent, detail)."""
    def run():
        sent, detail = [], []
        samples, misses, made = timed_changes(world, indices, setting, timeout_s, pace_s, until, sent, detail)
        return samples, misses, made, sent, detail
    return in_own_process([KUBE, world.emulator.http], run)


def changes(world, count, timeout_s, setting):
    """`count` resources spread over the world, changed one at a time (timed_changes); Failed at
    the first change whose Update does not come within `timeout_s`."""
    step = max(1, world.managed // count)
    indices = [(k * step) % world.managed for k in range(count)]
    samples = []
    for i in indices:
        got, missed, _ = timed_changes(world, [i], setting, timeout_s)
        if missed:
            raise Failed(f"no Update for user{i} within {timeout_s:.0f}s of its spec change")
        samples += got
    return samples


def spread(samples):
    """p50 / p99 / max of ms samples."""
    return f"{percentile(samples, 50):.0f} ms / {percentile(samples, 99):.0f} ms / {max(samples):.0f} ms"


def latency(procs, rows, n):
    world, operator, _ = converge_run(procs, rows, n, "latency", resync=3600, report=False)
    samples = changes(world, 100, 60, "Disabled")
    row(rows, "latency", n, "spec change -> Update, idle: p50 / p99 / max (100 changes)", spread(samples), "")
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
        row(rows, "latency", n, f"spec change -> Update, after a restart (a new operator resyncing {n}, "
            f"--resync-interval {resync}s): p50 / p99 / max (100 changes)", spread(samples), "p99 < 250 ms")
        row(rows, "latency", n, "cloud calls/s while measuring (b) (the quota)", f"{busy:.0f} ({QPS})", "")
        row(rows, "latency", n, "peak RSS of the restarted operator (VmHWM)", mib(operator.peak_kib()), "")
    except Failed as error:
        row(rows, "latency", n, "FAILED", f"spec change -> Update, after a restart (a new operator resyncing {n}): {error}", "")


def rpc_call(emulator, action, **params):
    """One CloudSSO call signed as the aliyun CLI does (RPC, HMAC-SHA1) with the console's key."""
    quote = lambda v: urllib.parse.quote(str(v), safe="-_.~")
    query = {"Action": action, "Version": "2021-05-15", "Format": "JSON", "AccessKeyId": CONSOLE_KEY_ID,
             "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0", "SignatureNonce": uuid.uuid4().hex,
             "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **params}
    canonical = "&".join(f"{quote(k)}={quote(v)}" for k, v in sorted(query.items()))
    to_sign = f"GET&{quote('/')}&{quote(canonical)}"
    query["Signature"] = base64.b64encode(hmac.new(f"{CONSOLE_KEY_SECRET}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    return emulator.http.request("GET", "/?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote))


def set_cloud_settings(world, indices, setting):
    """A console change: the MFA setting of users `indices` changed through the CloudSSO API
    (UpdateUserMFAAuthenticationSettings, signed with the console's own key), 16 at a time.
    (PUT /_emulator/state would replace the state whole, but the emulator takes at most 2 MB a
    body: the state of 20,000 users is 3.6 MB.) Their writes are in /_emulator/writes."""
    parallel(lambda i: rpc_call(world.emulator, "UpdateUserMFAAuthenticationSettings", DirectoryId=world.directory,
                                UserId=user_id(world.directory, i), UserMFAAuthenticationSettings=setting), indices, 16)


def cloud_settings(world, indices):
    ids = {user_id(world.directory, i) for i in indices}
    state = world.emulator.http.request("GET", "/_emulator/state")
    directory = next(d for d in state["directories"] if d["directoryId"] == world.directory)
    return [u["userMfaAuthenticationSettings"] for u in directory["users"] if u["userId"] in ids]


def drift(procs, rows, n):
    """Converge N at a 60 s resync, then change 100 managed users' setting in the cloud right
    after the last turns Ready: time until each is repaired (its Update call), and the calls per
    managed user in the first and the second interval after converging."""
    asked = parse_duration(os.environ.get("BENCH_RESYNC", "0s")) or 60
    world, operator, resync = converge_run(procs, rows, n, "drift", resync=asked, report=False)
    converged = time.time()
    converge_rows(rows, "drift", n, world, operator, resync)
    world.emulator.reset_calls()
    world.emulator.clear_writes()
    count = min(100, n)
    step = max(1, n // count)
    # Spread over the world, both halves (by userName: even, by userId: odd).
    indices = sorted({min(n - 1, k * step + k % 2) for k in range(count)})
    ids = {user_id(world.directory, i) for i in indices}
    set_cloud_settings(world, indices, "Disabled")
    console = len(indices)  # its writes, taken out of the calls counted below
    # Each user's drift is the arrival (atMs) of the console's write; its repair, the next
    # successful Update of that user.
    changed, repaired = {}, {}
    for w in world.emulator.writes():
        if w.get("userId") in ids and w["outcome"] == "ok" and w["action"] == "UpdateUserMFAAuthenticationSettings":
            if w["userId"] not in changed:
                changed[w["userId"]] = w["atMs"]
            elif w["userId"] not in repaired:
                repaired[w["userId"]] = w["atMs"] - changed[w["userId"]]
    if len(changed) < len(ids):
        raise Failed(f"the console changed only {len(changed)} of {len(ids)} users")
    changed_ms = min(changed.values())
    after_s = changed_ms / 1000 - converged
    effective = operator.metric("cloudsso_mfa_operator_effective_resync_seconds") or resync
    log(f"drift: {len(indices)} users set to Disabled in the cloud {after_s:.1f}s after the last Ready "
        f"(effective resync {effective:.0f}s); waiting for their repairs")
    interval = max(resync, effective)
    deadline = changed_ms / 1000 + FACTOR * interval + 60
    snapshots, last = [], 0
    while True:
        now = time.time()
        if len(snapshots) < 2 and now >= converged + resync * (len(snapshots) + 1):
            snapshots.append(world.emulator.calls())
        for w in world.emulator.writes():
            uid = w.get("userId")
            if uid in ids and uid not in repaired and w["outcome"] == "ok" \
                    and w["action"] == "UpdateUserMFAAuthenticationSettings" and w["atMs"] > changed[uid]:
                repaired[uid] = w["atMs"] - changed[uid]
        if len(repaired) == len(ids) and len(snapshots) == 2:
            break
        if now > deadline:
            break
        if not operator.alive():
            raise Failed(f"the operator exited; see {operator.log}")
        if now - last > 30:
            log(f"drift: {len(repaired)}/{len(ids)} repaired after {now - changed_ms / 1000:.0f}s")
            last = now
        time.sleep(0.25)
    samples = list(repaired.values())
    row(rows, "drift", n, f"cloud setting of {len(ids)} managed users changed (a console's UpdateUserMFAAuthenticationSettings, "
        f"own key), after the last Ready", f"{after_s:.1f} s (all within {(max(changed.values()) - changed_ms) / 1000:.1f} s)", "")
    row(rows, "drift", n, "effective resync (effective_resync_seconds) at the change; at the end",
        f"{effective:.0f} s; {operator.metric('cloudsso_mfa_operator_effective_resync_seconds') or resync:.0f} s", "")
    if samples:
        row(rows, "drift", n, f"drift -> repaired (its Update): p50 / p99 / max ({len(samples)} of {len(ids)} repaired)",
            spread(samples), f"max ≤ {resync:.0f} s")
    missing = len(ids) - len(repaired)
    late = sum(1 for v in samples if v > resync * 1000) + missing
    row(rows, "drift", n, f"repaired later than one interval ({resync:.0f}s), or not at all", f"{late} ({missing} not at all)", "0")
    if effective > resync:
        late_eff = sum(1 for v in samples if v > effective * 1000) + missing
        row(rows, "drift", n, f"repaired later than the effective interval ({effective:.0f}s), or not at all", str(late_eff), "0")
    back = cloud_settings(world, indices).count("Enabled")
    row(rows, "drift", n, "cloud back to the spec at the end", f"{back}/{len(ids)}", f"{len(ids)}/{len(ids)}")
    for k, (label, snap) in enumerate(zip(("first", "next"), snapshots)):
        delta = diff_calls(snap, snapshots[k - 1]) if k else snap
        if not k:  # the console's own writes are not the operator's
            delta = {a: dict(o) for a, o in snap.items()}
            update = delta.setdefault("UpdateUserMFAAuthenticationSettings", {})
            update["ok"] = update.get("ok", 0) - console
        row(rows, "drift", n, f"calls per managed user in the {label} {resync:.0f} s after converging (calls/s)",
            f"{total(delta) / n:.2f} ({total(delta) / resync:.0f}/s; {describe_calls(delta)})", "")
    row(rows, "drift", n, "peak RSS (VmHWM)", mib(operator.peak_kib()), "")
    if len(repaired) < len(ids):
        raise Failed(f"{len(ids) - len(repaired)} of {len(ids)} drifted users not repaired within "
                     f"{FACTOR:g}x the interval ({interval:.0f}s) + 60s")


def bulk(procs, rows, n, existing=1000):
    """1000 converged UserMfaSettings, then N new ones created at once (16 POSTs at a time, as a
    large `kubectl apply` burst), and meanwhile 100 spec changes of existing ones, one at a time:
    change -> Update latency while the new ones converge."""
    world = World(procs, f"bulk-{n}", 2 * (existing + n), existing + n, initial=existing)
    resync = parse_duration(os.environ.get("BENCH_RESYNC", "0s")) or 300  # the operator's default, 5m
    operator = Operator(procs, world.work, "bulk", resync, world.ns)
    elapsed = world.wait_ready(operator, estimated_floor(existing, 2 * (existing + n)), want=existing + 1)
    row(rows, "bulk", n, f"{existing} existing UserMfaSettings Ready after (default flags, --resync-interval {resync:.0f}s)",
        f"{elapsed:.1f} s", "")
    floor_new = estimated_floor(n, 2 * (existing + n))
    before, burst, converged = world.emulator.calls(), {}, {}

    def apply():
        t = time.time()
        try:
            create_all(world.later, threads=16)
        except Exception as error:
            burst["error"] = str(error)
        burst["s"] = time.time() - t

    def all_ready():
        try:
            converged["s"] = world.wait_ready(operator, floor_new, f"{n} new UserMfaSettings Ready",
                                              want=existing + n + 1, since=started)
        except Failed as error:
            converged["error"] = str(error)

    started = time.time()
    threads = [threading.Thread(target=apply, daemon=True), threading.Thread(target=all_ready, daemon=True)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    count = min(100, existing)
    step = max(1, existing // count)
    indices = [min(existing - 1, k * step + k % 2) for k in range(count)]
    pace = 0.8 * floor_new / count
    log(f"bulk: {n} new UserMfaSettings being created; {count} spec changes of existing ones, one every {pace:.1f}s or more")
    samples, misses, made, sent, detail = timed_changes_apart(world, indices, "Disabled", timeout_s=120, pace_s=pace,
                                                              until=started + FACTOR * floor_new + 60)
    for at, patched, took in sorted(detail, key=lambda d: -d[2])[:5]:
        log(f"bulk: a slow change, {at - started:.1f}s into the burst: {took:.0f} ms to its Update, "
            f"of which its own PATCH {patched:.0f} ms")
    busy = (total(world.emulator.calls()) - total(before)) / (time.time() - started)
    changes_done = time.time() - started
    threads[0].join(FACTOR * floor_new + 60)
    threads[1].join(max(1, started + FACTOR * floor_new + 90 - time.time()))
    calls = diff_calls(world.emulator.calls(), before)
    row(rows, "bulk", n, f"{n} new UserMfaSettings created at once (POSTs 16 at a time): burst took",
        f"{burst['s']:.1f} s" if "s" in burst and "error" not in burst else f"not finished: {burst.get('error', 'still running')}", "")
    if samples:
        row(rows, "bulk", n, f"spec change of an existing resource -> Update, during the bulk: p50 / p99 / max ({len(samples)} of {made} changes)",
            spread(samples), "p99 < 250 ms")
    over = sum(1 for v in samples if v > 20000) + len(misses)
    if detail:
        row(rows, "bulk", n, "of which the PATCH itself (the API server's answer): p50 / p99 / max",
            spread([patched for _, patched, _ in detail]), "")
        row(rows, "bulk", n, "and from the PATCH's answer to the Update (the watch's delivery, the operator, the cloud): p50 / p99 / max",
            spread([took - patched for _, patched, took in detail]), "")
    row(rows, "bulk", n, "changes whose Update came after 20 s (or not within 120 s)", f"{over} ({len(misses)} not within 120 s)", "0")
    row(rows, "bulk", n, f"changes made in (from the burst's start); cloud calls/s meanwhile",
        f"{changes_done:.1f} s; {busy:.0f}/s ({QPS})", "")
    if "s" in converged:
        row(rows, "bulk", n, f"{n} new all Ready after the burst's start (estimated floor)",
            f"{converged['s']:.1f} s ({floor_new:.1f} s)", "")
        during = sum(1 for t in sent if t < started + converged["s"])
        row(rows, "bulk", n, "changes made before the new ones were all Ready", f"{during} of {made}", f"{count}")
    row(rows, "bulk", n, "cloud calls from the burst's start (ok, failures)", describe_calls(calls), "")
    row(rows, "bulk", n, "peak RSS (VmHWM)", mib(operator.peak_kib()), "")
    problems = []
    if misses or made < count:
        problems.append(f"{len(misses)} changes without their Update within 120 s, {count - made} not made before the deadline")
    if "s" not in converged:
        problems.append(converged.get("error", f"the {n} new ones not Ready"))
    if "error" in burst or "s" not in burst:
        problems.append(f"the burst of creates did not finish: {burst.get('error', 'still running')}")
    if problems:
        raise Failed("; ".join(problems))


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


class EventCounter:
    """ADDED / MODIFIED / DELETED events of a kind in a namespace, by a watch (the API server's
    writes of those objects, as this client sees them)."""

    def __init__(self, path):
        self.path, self.counts, self.lock, self.stopped = path, {}, threading.Lock(), False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def snapshot(self):
        with self.lock:
            return dict(self.counts)

    def _run(self):
        version = None
        while not self.stopped:
            try:
                if version is None:
                    version = KUBE.request("GET", f"{self.path}?limit=1")["metadata"]["resourceVersion"]
                conn = http.client.HTTPSConnection(KUBE.host, KUBE.port, context=KUBE.context, timeout=600) \
                    if KUBE.https else http.client.HTTPConnection(KUBE.host, KUBE.port, timeout=600)
                conn.request("GET", f"{self.path}?watch=1&resourceVersion={version}&timeoutSeconds=300&allowWatchBookmarks=true",
                             headers=dict(KUBE.headers, Accept="application/json"))
                response = conn.getresponse()
                while not self.stopped:
                    line = response.readline()
                    if not line:
                        break
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        version = None
                        break
                    version = event["object"]["metadata"].get("resourceVersion", version)
                    if event["type"] != "BOOKMARK":
                        with self.lock:
                            self.counts[event["type"]] = self.counts.get(event["type"], 0) + 1
                conn.close()
            except Exception as error:
                if not self.stopped:
                    log(f"watch of {self.path}: {error}; again")
                    version = None
                    time.sleep(1)

    def stop(self):
        self.stopped = True


def policy(procs, rows, n):
    """One UserMfaPolicy over every user of a directory of N, half of them to change."""
    name = f"policy-{n}"
    work = os.path.join(BENCH, name)
    os.makedirs(work, exist_ok=True)
    directory = f"d-bench{os.getpid() % 100000:05d}{abs(hash(name)) % 1000:03d}"
    ns = f"bench-{name}-{os.getpid() % 100000}"
    t = time.time()
    seed = make_seed(directory, n, n)  # users i % 4 in (0, 1) Disabled; odd i a device
    devices = os.environ.get("BENCH_POLICY_DEVICES", "stale")
    if devices == "recent":  # used yesterday: compliant without a warning, so the report stays short
        used = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 86400))
        for user in seed["directories"][0]["users"]:
            for device in user["mfaDevices"]:
                device["lastUseTime"] = used
    emulator = Emulator(procs, work, seed)
    del seed
    log(f"{name}: emulator with {n} users up in {time.time() - t:.1f}s")
    to_change = sum(1 for i in range(n) if changing(i))
    procs.namespaces.append(ns)
    create_all([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": ns},
                 "stringData": {"accessKeyId": KEY_ID, "accessKeySecret": KEY_SECRET}}])
    reports_path = f"/apis/wgpolicyk8s.io/v1alpha2/namespaces/{ns}/policyreports"
    reports = EventCounter(reports_path)
    procs.watches.append(reports)
    resync = parse_duration(os.environ.get("BENCH_RESYNC", "0s")) or 60
    operator = Operator(procs, work, "policy", resync, ns)
    for _ in range(100):  # serving (its watches started) before the apply
        if operator.metric("cloudsso_mfa_operator_effective_resync_seconds") is not None:
            break
        if not operator.alive():
            raise Failed(f"the operator exited; see {operator.log}")
        time.sleep(0.2)
    time.sleep(1)
    doc = {"apiVersion": "cloudsso.mfa-operator.dev/v1alpha1", "kind": "UserMfaPolicy",
           "metadata": {"name": "everyone", "namespace": ns},
           "spec": {"directoryId": directory, "users": {"all": True}, "userMfaAuthenticationSettings": "Enabled",
                    "requireBoundDevice": False, "endpoint": emulator.url, "credentialsSecretRef": {"name": "keys"}}}
    with open(os.path.join(work, "policy.json"), "w") as f:
        json.dump(doc, f)
    pages = math.ceil(n / 100)
    floor_calls = 2 * n + to_change + pages
    floor = floor_calls / QPS
    path = f"{GROUP}/namespaces/{ns}/usermfapolicies/everyone"
    applied = time.time()
    KUBE.request("POST", f"{GROUP}/namespaces/{ns}/usermfapolicies", doc)
    log(f"{name}: policy applied; floor {floor:.0f}s ({floor_calls} calls)")
    passes = []  # (seconds since the apply, lastSyncTime, calls so far, status counts)
    state = {"status": {}, "sync": None}

    def observe():
        status = (KUBE.request("GET", path).get("status") or {})
        state["status"] = status
        sync = status.get("lastSyncTime")
        if sync and sync != state["sync"]:
            state["sync"] = sync
            passes.append((time.time() - applied, sync, emulator.calls(),
                           {k: status.get(k) for k in ("matchedUsers", "compliantUsers", "nonCompliantUsers", "errorUsers")}))
            log(f"{name}: pass {len(passes)} seen at {passes[-1][0]:.0f}s: {passes[-1][3]}, {total(passes[-1][2])} calls so far")
        return status

    def converged(status):
        return (status.get("matchedUsers") == n and status.get("compliantUsers") == n
                and not status.get("nonCompliantUsers") and not status.get("errorUsers"))

    deadline, last = FACTOR * floor + 60, 0
    while True:
        status = observe()
        now = time.time()
        if converged(status):
            break
        if not operator.alive():
            raise Failed(f"the operator exited; see {operator.log}")
        if now - applied > deadline:
            calls = emulator.calls()
            row(rows, "policy", n, "cloud calls by action until the deadline", describe_calls(calls), "")
            row(rows, "policy", n, "peak RSS (VmHWM) at the deadline", mib(operator.peak_kib()), "")
            raise Failed(f"not converged within {deadline:.0f}s ({FACTOR:g}x the floor {floor:.0f}s + 60s): status "
                         f"{ {k: status.get(k) for k in ('matchedUsers', 'compliantUsers', 'nonCompliantUsers', 'errorUsers')} }, "
                         f"{action_count(calls, 'UpdateUserMFAAuthenticationSettings')} writes of {to_change}; see {operator.log}")
        if now - last > 30:
            calls = emulator.calls()
            log(f"{name}: {now - applied:.0f}s: {total(calls)} calls ({describe_calls(calls)}); RSS {mib(operator.rss_kib())}")
            last = now
        time.sleep(1)
    elapsed = time.time() - applied
    converged_at = time.time()
    calls = emulator.calls()
    rss, peak = operator.rss_kib(), operator.peak_kib()
    emu_rss, emu_peak = status_kib(emulator.proc.pid, "VmRSS"), status_kib(emulator.proc.pid, "VmHWM")
    effective = operator.metric("cloudsso_mfa_operator_effective_resync_seconds") or resync
    writes = action_count(calls, "UpdateUserMFAAuthenticationSettings")
    attempts = total(calls)
    cloud = emulator.http.request("GET", "/_emulator/state")
    users = next(d for d in cloud["directories"] if d["directoryId"] == directory)["users"]
    disabled = sum(1 for u in users if u.get("userMfaAuthenticationSettings") != "Enabled")
    del cloud, users
    report_events = reports.snapshot()
    names = ((state["status"].get("report") or {}).get("names")) or []
    message = (state["status"].get("report") or {}).get("message")
    log(f"{name}: converged after {elapsed:.1f}s (floor {floor:.1f}s, {elapsed / floor:.2f}x); {attempts} calls "
        f"(floor's {floor_calls}); {describe_calls(calls)}; RSS {mib(rss)} / peak {mib(peak)}; emulator {mib(emu_rss)} / {mib(emu_peak)}")
    row(rows, "policy", n, f"converged after the apply (status: {n} matched, {n} compliant, 0 failing or error; "
        f"default flags, --resync-interval {resync:.0f}s, requireBoundDevice false, devices {devices})", f"{elapsed:.1f} s", "")
    row(rows, "policy", n, f"floor (2N + {to_change} writes + {pages} pages) / {QPS}", f"{floor:.1f} s", "")
    row(rows, "policy", n, "ratio to the floor", f"{elapsed / floor:.2f}x", "≤ 1.2x")
    row(rows, "policy", n, f"cloud calls until converged (all outcomes) vs the floor's {floor_calls}",
        f"{attempts} ({attempts - floor_calls:+d}, {attempts / floor_calls:.2f}x)", "no call beyond the floor's")
    row(rows, "policy", n, "cloud calls by action (ok, failures)", describe_calls(calls), "")
    row(rows, "policy", n, f"users not Enabled in the emulator at converge (of {to_change} to change); ok writes",
        f"{disabled}; {writes}", f"0; {to_change}")
    row(rows, "policy", n, "passes seen until converged (each: seconds after the apply, calls so far)",
        "; ".join(f"{p[0]:.0f} s, {total(p[2])}" for p in passes) or "none", "")
    row(rows, "policy", n, "effective resync (effective_resync_seconds) at converge", f"{effective:.0f} s (asked {resync:.0f} s)", "")
    row(rows, "policy", n, "operator RSS at converge (VmRSS / VmHWM)", f"{mib(rss)} / {mib(peak)}",
        "VmHWM ≤ 32 MiB at 10,000, ≤ 64 MiB at 100,000")
    row(rows, "policy", n, "emulator RSS at converge (VmRSS / VmHWM)", f"{mib(emu_rss)} / {mib(emu_peak)}", "")
    row(rows, "policy", n, "PolicyReports (status.report) and their watch events until converged",
        f"{', '.join(names) or message or 'none'}; {report_events or 'no events'}", "")
    for r in rows[-11:]:
        log("row: " + " | ".join(r))
    # Steady: the calls of the next effective intervals, and each pass seen meanwhile.
    windows = float(os.environ.get("BENCH_STEADY_WINDOWS", "2"))
    cap = float(os.environ.get("BENCH_STEADY_MAX_S", "0"))
    window = windows * effective
    partial = bool(cap and cap < window)
    window = min(window, cap) if cap else window
    seen = len(passes)
    log(f"{name}: steady: counting calls over {window:.0f}s ({windows:g} x {effective:.0f}s{', capped' if partial else ''})")
    start, last = emulator.calls(), 0
    while time.time() < converged_at + window:
        observe()
        if not operator.alive():
            raise Failed(f"the operator exited during steady; see {operator.log}")
        if time.time() - last > 60:
            now_calls = emulator.calls()
            log(f"{name}: steady {time.time() - converged_at:.0f}s: {total(diff_calls(now_calls, start))} calls; RSS {mib(operator.rss_kib())}")
            last = time.time()
        time.sleep(2)
    spent = time.time() - converged_at
    delta = diff_calls(emulator.calls(), start)
    effective_end = operator.metric("cloudsso_mfa_operator_effective_resync_seconds") or resync
    per_resync = total(delta) / n / (spent / effective)
    label = "partial window" if partial else f"{spent / effective:.2f} intervals"
    row(rows, "policy", n, f"steady: calls per user per effective resync ({effective:.0f} s) over {spent:.0f} s after converging ({label})",
        f"{per_resync:.2f} ({total(delta)} calls, {total(delta) / spent:.1f}/s; {describe_calls(delta)})", "≤ 2")
    later = passes[seen:]
    prev = passes[seen - 1] if seen else None
    parts = []
    for p in later:
        d = total(diff_calls(p[2], prev[2])) if prev else total(p[2])
        parts.append(f"{p[0]:.0f} s after the apply: {d} calls ({d / n:.2f}/user)")
        prev = p
    row(rows, "policy", n, "steady: passes seen (lastSyncTime changes) and the calls since the pass before",
        "; ".join(parts) or "none in the window", "")
    row(rows, "policy", n, "effective resync at the end; operator VmRSS / VmHWM at the end",
        f"{effective_end:.0f} s; {mib(operator.rss_kib())} / {mib(operator.peak_kib())}", "")
    row(rows, "policy", n, "emulator VmRSS / VmHWM at the end",
        f"{mib(status_kib(emulator.proc.pid, 'VmRSS'))} / {mib(status_kib(emulator.proc.pid, 'VmHWM'))}", "")
    row(rows, "policy", n, "PolicyReport watch events, whole run", str(reports.snapshot() or "none"), "")
    for r in rows[-5:]:
        log("row: " + " | ".join(r))


SCENARIOS = {"converge": (lambda p, r, n: converge_run(p, r, n), 2000), "steady": (steady, 2000), "three": (three, 10000),
             "latency": (latency, 10000), "drift": (drift, 10000), "bulk": (bulk, 4000),
             "throttle": (throttle, 200), "secrets": (secrets, 5000), "policy": (policy, 10000)}
ALL = [("converge", 2000), ("converge", 10000), ("drift", 10000), ("steady", 2000), ("three", 10000),
       ("latency", 10000), ("bulk", 4000), ("throttle", 200), ("secrets", 5000), ("policy", 10000)]


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
