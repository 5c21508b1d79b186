"""Starts the emulator binary on a free port with a seed the test writes."""
import json
import os
import pathlib
import subprocess
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ACCESS_KEY_ID = "LTAI5tEmulatorKey01"
ACCESS_KEY_SECRET = "emulator-secret-01"
# Two more keys, each of its own account (STS GetCallerIdentity tells which); the key above has
# none in the seed, so it is of the emulator's default account.
TEAM_A = {"accessKeyId": "LTAI5tTeamAKey", "accessKeySecret": "team-a-secret",
          "accountId": "5012345678901234", "userName": "mfa-operator"}
TEAM_B = {"accessKeyId": "LTAI5tTeamBKey", "accessKeySecret": "team-b-secret",
          "accountId": "5098765432109876"}
DEFAULT_ACCOUNT_ID = "1000000000000001"

SEED = {
    "accessKeys": [{"accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET}, TEAM_A, TEAM_B],
    "directories": [{
        "directoryId": "d-00fc2p61abcd",
        "mfaAuthenticationSettings": "Byuser",
        "operationForRiskLogin": "Autonomous",
        "users": [
            {"userId": "u-00q8wbq42wiltcrk0001", "userName": "alice",
             "userMfaAuthenticationSettings": "Enabled",
             "mfaDevices": [{"deviceId": "mfa-00ujhet8pycljj7j0001", "deviceName": "Alice-MFA1",
                             "deviceType": "TOTP", "effectiveTime": "2021-10-29T09:14:06Z"}]},
            {"userId": "u-00q8wbq42wiltcrk0002", "userName": "alan",
             "userMfaAuthenticationSettings": "Disabled"},
        ] + [
            {"userId": f"u-bulk{i:04d}", "userName": f"bulk{i:04d}",
             "userMfaAuthenticationSettings": "Enabled"} for i in range(25)
        ],
    }],
    "ramUsers": [
        {"userPrincipalName": "bob@example.onaliyun.com",
         "mfaDevice": {"serialNumber": "acs:ram::1234:mfa/bob", "type": "VMFA"}},
        {"userPrincipalName": "carol@example.onaliyun.com"},
    ],
}


def emulator_binary():
    path = os.environ.get("CLOUDSSO_EMULATOR_BIN") or str(ROOT / "target" / "debug" / "cloudsso-emulator")
    if not os.access(path, os.X_OK):
        pytest.fail(f"emulator binary {path} not built: run cargo build first")
    return path


class Emulator:
    def __init__(self, process, address):
        self.process = process
        self.address = address  # host:port
        self.url = f"http://{address}"

    def admin(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                text = response.read()
                return response.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")


@pytest.fixture()
def emulator(tmp_path):
    seed_path = tmp_path / "seed.json"
    seed_path.write_text(json.dumps(SEED))
    process = subprocess.Popen(
        [emulator_binary(), "--listen", "127.0.0.1:0", "--seed", str(seed_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline()
    if "listening on http://" not in line:
        process.kill()
        pytest.fail(f"emulator did not start: {line} {process.stderr.read()}")
    yield Emulator(process, line.strip().rsplit("http://", 1)[1])
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture()
def sts_credentials(emulator):
    """Temporary credentials from the emulator's STS (AssumeRoleWithOIDC, as RRSA gets them)."""
    form = ("RoleArn=acs:ram::1234:role/operator&OIDCProviderArn=acs:ram::1234:oidc-provider/ack"
            "&OIDCToken=a.b.c&RoleSessionName=sdk-test")
    request = urllib.request.Request(
        emulator.url + "/?Action=AssumeRoleWithOIDC&Version=2015-04-01&Format=JSON",
        data=form.encode(), method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["Credentials"]
