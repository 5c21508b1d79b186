"""Alibaba Cloud's older official Python SDK, aliyun-python-sdk-core, unchanged, against the
emulator: its CommonRequest signs with the RPC signature (HMAC-SHA1, `Signature` among the
parameters), as the aliyun CLI and the alicloud Terraform provider do. Every action the emulator
answers, GET with the query and POST with a form body, and the gateway's answers to a wrong
secret, a replayed nonce, a stale timestamp, a missing or mismatched STS token and a tampered
request."""
import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.auth.composer import rpc_signature_composer
from aliyunsdkcore.auth.credentials import StsTokenCredential
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest
from aliyunsdkcore.utils import parameter_helper

from alibabacloud_cloudsso20210515 import models as sso_models
from alibabacloud_cloudsso20210515.client import Client as CloudSsoClient
from alibabacloud_tea_openapi import models as open_api_models

from conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET

CLOUDSSO = "2021-05-15"
IMS = "2019-08-15"
DIRECTORY = "d-00fc2p61abcd"
ALICE = "u-00q8wbq42wiltcrk0001"
ALAN = "u-00q8wbq42wiltcrk0002"


def acs_client(emulator, key_id=ACCESS_KEY_ID, secret=ACCESS_KEY_SECRET, token=None):
    port = int(emulator.address.rsplit(":", 1)[1])
    # auto_retry off: a replayed nonce must reach the emulator exactly as often as the test says.
    options = dict(region_id="cn-shanghai", auto_retry=False, port=port, timeout=5, connect_timeout=5)
    if token is not None:
        return AcsClient(credential=StsTokenCredential(key_id, secret, token), **options)
    return AcsClient(key_id, secret, **options)


def request(emulator, action, params=None, version=CLOUDSSO, method="POST"):
    """A CommonRequest: POST puts the parameters in a form body, GET in the query."""
    common = CommonRequest(domain=emulator.address.rsplit(":", 1)[0], version=version, action_name=action)
    common.set_protocol_type("http")
    common.set_method(method)
    for name, value in (params or {}).items():
        if method == "POST":
            common.add_body_params(name, value)
        else:
            common.add_query_param(name, value)
    return common


def call(emulator, action, params=None, version=CLOUDSSO, method="POST", client=None):
    client = client or acs_client(emulator)
    return json.loads(client.do_action_with_exception(request(emulator, action, params, version, method)))


def failure(emulator, action, params=None, client=None, **kwargs):
    with pytest.raises(ServerException) as caught:
        call(emulator, action, params, client=client, **kwargs)
    error = caught.value
    return error.get_error_code(), error.get_http_status(), error.get_error_msg()


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_directory_setting_roundtrip(emulator, method):
    info = call(emulator, "GetMFAAuthenticationSettingInfo", {"DirectoryId": DIRECTORY}, method=method)
    assert info["RequestId"]
    assert info["MFAAuthenticationSettingInfo"] == {
        "MfaAuthenticationAdvanceSettings": "Byuser", "OperationForRiskLogin": "Autonomous"}
    call(emulator, "UpdateMFAAuthenticationSettings", {
        "DirectoryId": DIRECTORY, "MFAAuthenticationSettings": "OnlyRiskyLogin",
        "OperationForRiskLogin": "EnforceVerify", "AllowedVerificationTypes": '["TOTP"]'}, method=method)
    info = call(emulator, "GetMFAAuthenticationSettingInfo", {"DirectoryId": DIRECTORY}, method=method)
    assert info["MFAAuthenticationSettingInfo"] == {
        "MfaAuthenticationAdvanceSettings": "OnlyRiskyLogin", "OperationForRiskLogin": "EnforceVerify",
        "AllowedVerificationTypes": ["TOTP"]}
    _, state = emulator.admin("GET", "/_emulator/state")
    assert state["directories"][0]["mfaAuthenticationSettings"] == "OnlyRiskyLogin"


def test_user_setting_devices_and_users(emulator):
    assert call(emulator, "GetUserMFAAuthenticationSettings",
                {"DirectoryId": DIRECTORY, "UserId": ALICE})["UserMFAAuthenticationSettings"] == "Enabled"
    call(emulator, "UpdateUserMFAAuthenticationSettings",
         {"DirectoryId": DIRECTORY, "UserId": ALICE, "UserMFAAuthenticationSettings": "Disabled"})
    assert call(emulator, "GetUserMFAAuthenticationSettings",
                {"DirectoryId": DIRECTORY, "UserId": ALICE}, method="GET")["UserMFAAuthenticationSettings"] == "Disabled"

    devices = call(emulator, "ListMFADevicesForUser", {"DirectoryId": DIRECTORY, "UserId": ALICE})
    assert devices["TotalCounts"] == 1
    assert devices["MFADevices"][0] == {
        "DeviceId": "mfa-00ujhet8pycljj7j0001", "DeviceName": "Alice-MFA1", "DeviceType": "TOTP",
        "EffectiveTime": "2021-10-29T09:14:06Z", "UserId": ALICE}
    assert call(emulator, "ListMFADevicesForUser", {"DirectoryId": DIRECTORY, "UserId": ALAN})["MFADevices"] == []

    starts = call(emulator, "ListUsers", {"DirectoryId": DIRECTORY, "Filter": "UserName sw al"}, method="GET")
    assert sorted(u["UserName"] for u in starts["Users"]) == ["alan", "alice"]
    seen, token = [], None
    while True:
        page = call(emulator, "ListUsers", dict({"DirectoryId": DIRECTORY, "MaxResults": "10"},
                                               **({"NextToken": token} if token else {})))
        seen += [u["UserName"] for u in page["Users"]]
        if not page["IsTruncated"]:
            break
        token = page["NextToken"]
    assert len(seen) == len(set(seen)) == 27


def test_ram_user_mfa_info(emulator):
    bob = call(emulator, "GetUserMFAInfo", {"UserPrincipalName": "bob@example.onaliyun.com"}, version=IMS)
    assert bob["IsMFAEnable"] is True
    assert bob["MFADevice"] == {"SerialNumber": "acs:ram::1234:mfa/bob", "Type": "VMFA"}
    carol = call(emulator, "GetUserMFAInfo", {"UserPrincipalName": "carol@example.onaliyun.com"},
                 version=IMS, method="GET")
    assert carol["IsMFAEnable"] is False and "MFADevice" not in carol
    assert failure(emulator, "GetUserMFAInfo", {"UserPrincipalName": "nobody@example.onaliyun.com"},
                   version=IMS)[:2] == ("EntityNotExist.User", 404)


def test_directory_reads(emulator):
    directory = call(emulator, "GetDirectory", {"DirectoryId": DIRECTORY})["Directory"]
    assert directory == {"DirectoryId": DIRECTORY, "DirectoryName": "", "Region": "cn-shanghai",
                         "CreateTime": "2021-10-26T03:13:43Z", "UpdateTime": "2021-10-26T03:13:43Z"}

    provider = call(emulator, "GetDirectorySAMLServiceProviderInfo", {"DirectoryId": DIRECTORY})["SAMLServiceProvider"]
    entity = f"https://signin-cn-shanghai.alibabacloudsso.com/saml/sp/{DIRECTORY}"
    assert (provider["DirectoryId"], provider["EntityId"]) == (DIRECTORY, entity)
    metadata = base64.b64decode(provider["EncodedMetadataDocument"]).decode()
    assert f'entityID="{entity}"' in metadata and provider["AcsUrl"] in metadata
    assert set(provider) == {"DirectoryId", "EntityId", "AcsUrl", "EncodedMetadataDocument",
                             "AuthnSignAlgo", "CertificateType", "SupportEncryptedAssertion"}

    idp = call(emulator, "GetExternalSAMLIdentityProvider", {"DirectoryId": DIRECTORY})["SAMLIdentityProviderConfiguration"]
    assert (idp["DirectoryId"], idp["SSOStatus"], idp["EntityId"], idp["CertificateIds"]) == (DIRECTORY, "Disabled", "", [])

    policy = call(emulator, "GetPasswordPolicy", {"DirectoryId": DIRECTORY}, method="GET")["PasswordPolicy"]
    assert set(policy) == {"MinPasswordLength", "MaxPasswordLength", "MinPasswordDifferentChars",
                           "PasswordNotContainUsername", "MaxPasswordAge", "PasswordReusePrevention",
                           "MaxLoginAttempts", "HardExpire", "RequireNumbers", "RequireLowerCaseChars",
                           "RequireUpperCaseChars", "RequireSymbols"}
    assert 8 <= policy["MinPasswordLength"] <= policy["MaxPasswordLength"] <= 32

    assert call(emulator, "GetLoginPreference", {"DirectoryId": DIRECTORY})["LoginPreference"] == {
        "AllowUserToGetCredentials": False, "LoginNetworkMasks": ""}
    provisioning = call(emulator, "GetUserProvisioningConfiguration", {"DirectoryId": DIRECTORY})
    assert provisioning["UserProvisioningConfiguration"]["DirectoryId"] == DIRECTORY
    assert provisioning["UserProvisioningConfiguration"]["SessionDuration"] == 6
    assert call(emulator, "GetSCIMSynchronizationStatus", {"DirectoryId": DIRECTORY})["SCIMSynchronizationStatus"] == "Disabled"

    assert call(emulator, "GetMFAAuthenticationStatus", {"DirectoryId": DIRECTORY})["MFAAuthenticationStatus"] == "Enabled"
    call(emulator, "UpdateMFAAuthenticationSettings", {"DirectoryId": DIRECTORY, "MFAAuthenticationSettings": "Disabled"})
    assert call(emulator, "GetMFAAuthenticationStatus", {"DirectoryId": DIRECTORY})["MFAAuthenticationStatus"] == "Disabled"


def test_user_reads_and_external_identities(emulator):
    user = call(emulator, "GetUser", {"DirectoryId": DIRECTORY, "UserId": ALICE})["User"]
    assert (user["UserId"], user["UserName"], user["Status"], user["ProvisionType"]) == (ALICE, "alice", "Enabled", "Manual")
    assert (user["Email"], user["Tags"]) == ("", [])

    # A console change: alan now comes from an external IdP through SCIM.
    _, state = emulator.admin("GET", "/_emulator/state")
    state["directories"][0]["directoryName"] = "corp"
    state["directories"][0]["users"][1]["externalId"] = {"id": "ext-0002", "issuer": "https://idp.example.com"}
    assert emulator.admin("PUT", "/_emulator/state", state)[0] == 200
    external = {"Id": "ext-0002", "Issuer": "https://idp.example.com"}
    assert call(emulator, "GetUserId", {"DirectoryId": DIRECTORY, "ExternalId": json.dumps(external)})["UserId"] == ALAN
    assert call(emulator, "GetUserId", {"DirectoryId": DIRECTORY, "ExternalId.Id": "ext-0002",
                                        "ExternalId.Issuer": "https://idp.example.com"}, method="GET")["UserId"] == ALAN
    alan = call(emulator, "GetUser", {"DirectoryId": DIRECTORY, "UserId": ALAN})["User"]
    assert (alan["ProvisionType"], alan["ExternalId"]) == ("Synchronized", external)
    assert call(emulator, "GetDirectory", {"DirectoryId": DIRECTORY})["Directory"]["DirectoryName"] == "corp"
    assert call(emulator, "GetSCIMSynchronizationStatus", {"DirectoryId": DIRECTORY})["SCIMSynchronizationStatus"] == "Enabled"
    synchronized = call(emulator, "ListUsers", {"DirectoryId": DIRECTORY, "ProvisionType": "Synchronized"})
    assert [u["UserId"] for u in synchronized["Users"]] == [ALAN]
    assert failure(emulator, "GetUserId", {"DirectoryId": DIRECTORY, "ExternalId": json.dumps(
        {"Id": "nobody", "Issuer": "https://idp.example.com"})})[:2] == ("EntityNotExists.User", 404)


@pytest.mark.parametrize("action, params, code, status", [
    # The alicloud Terraform provider reads this 404 as "no such directory".
    ("GetDirectorySAMLServiceProviderInfo", {"DirectoryId": "d-missing"}, "EntityNotExists.Directory", 404),
    ("GetDirectory", {"DirectoryId": "d-missing"}, "EntityNotExists.Directory", 404),
    ("GetUser", {"DirectoryId": DIRECTORY, "UserId": "u-missing"}, "EntityNotExists.User", 404),
    ("GetUser", {"DirectoryId": DIRECTORY}, "MissingParameter", 400),
    ("GetUserId", {"DirectoryId": DIRECTORY, "ExternalId": "not json"}, "InvalidParameter.ExternalId", 400),
    ("UpdateMFAAuthenticationSettings", {"DirectoryId": DIRECTORY, "MFAAuthenticationSettings": "Sometimes"},
     "InvalidParameter.MFAAuthenticationSettings", 400),
    ("ListUsers", {"DirectoryId": DIRECTORY, "MaxResults": "101"}, "InvalidParameter.MaxResults", 400),
    ("DeleteDirectory", {"DirectoryId": DIRECTORY}, "InvalidAction.NotFound", 404),
    ("GetDirectoryStatistics", {"DirectoryId": DIRECTORY}, "InvalidAction.NotFound", 404),
])
def test_error_cases_carry_real_codes(emulator, action, params, code, status):
    got_code, got_status, message = failure(emulator, action, params)
    assert (got_code, got_status) == (code, status), message


def test_wrong_secret_and_unknown_key(emulator):
    wrong = request(emulator, "GetUser", {"DirectoryId": DIRECTORY, "UserId": ALICE})
    with pytest.raises(ServerException) as caught:
        acs_client(emulator, secret="wrong-secret").do_action_with_exception(wrong)
    error = caught.value
    assert (error.get_error_code(), error.get_http_status()) == ("SignatureDoesNotMatch", 400)
    # The echoed string to sign is, byte for byte, the one the SDK signed (kept on the RPC request
    # its CommonRequest became): the emulator canonicalized exactly as the SDK did.
    prefix = "Specified signature is not matched with our calculation. server string to sign is:"
    assert error.get_error_msg() == prefix + wrong.request.string_to_sign
    code, status, _ = failure(emulator, "GetUser", {"DirectoryId": DIRECTORY, "UserId": ALICE},
                              client=acs_client(emulator, key_id="LTAI5tUnknown"))
    assert (code, status) == ("InvalidAccessKeyId.NotFound", 404)
    _, calls = emulator.admin("GET", "/_emulator/calls")
    assert calls["GetUser"] == {"SignatureDoesNotMatch": 1, "InvalidAccessKeyId.NotFound": 1}


def test_replayed_nonce_is_refused(emulator, monkeypatch):
    monkeypatch.setattr(parameter_helper, "get_uuid", lambda: "3f2a6a7e-replayed-nonce")
    params = {"DirectoryId": DIRECTORY, "UserId": ALICE}
    assert call(emulator, "GetUser", params)["User"]["UserName"] == "alice"
    code, status, message = failure(emulator, "GetUser", params)
    assert (code, status) == ("SignatureNonceUsed", 400), message
    # The nonce is spent whatever the action and the method.
    code, status, _ = failure(emulator, "ListUsers", {"DirectoryId": DIRECTORY}, method="GET")
    assert (code, status) == ("SignatureNonceUsed", 400)
    _, calls = emulator.admin("GET", "/_emulator/calls")
    assert calls["GetUser"] == {"ok": 1, "SignatureNonceUsed": 1}


@pytest.mark.parametrize("skew", [timedelta(minutes=-20), timedelta(minutes=20)])
def test_timestamp_outside_the_window(emulator, monkeypatch, skew):
    stamp = (datetime.now(timezone.utc) + skew).strftime("%Y-%m-%dT%H:%M:%SZ")
    monkeypatch.setattr(parameter_helper, "get_iso_8061_date", lambda: stamp)
    code, status, message = failure(emulator, "GetUser", {"DirectoryId": DIRECTORY, "UserId": ALICE})
    assert (code, status) == ("InvalidTimeStamp.Expired", 400), message


def test_sts_security_token(emulator, sts_credentials):
    credentials = sts_credentials
    key_id, secret, token = credentials["AccessKeyId"], credentials["AccessKeySecret"], credentials["SecurityToken"]
    params = {"DirectoryId": DIRECTORY, "UserId": ALICE}
    assert call(emulator, "GetUser", params, client=acs_client(emulator, key_id, secret, token))["User"]["UserId"] == ALICE
    cases = [
        (acs_client(emulator, key_id, secret, "CAISforged"), "InvalidSecurityToken.MismatchWithAccessKey"),
        (acs_client(emulator, key_id, secret, "forged"), "InvalidSecurityToken.Malformed"),
        # The temporary key signed as if it were a permanent one: no SecurityToken at all.
        (acs_client(emulator, key_id, secret), "MissingSecurityToken"),
    ]
    for client, expected in cases:
        code, status, message = failure(emulator, "GetUser", params, client=client)
        assert (code, status) == (expected, 400), message


def signed_url(params, body=None, method="GET", secret=ACCESS_KEY_SECRET):
    """What the SDK would send, signed by the SDK's own composer, to alter before sending."""
    url, _ = rpc_signature_composer.get_signed_url(
        dict(params), ACCESS_KEY_ID, secret, "JSON", method, dict(body or {}))
    return dict(urllib.parse.parse_qsl(url[2:], keep_blank_values=True))


def send(emulator, query, body=None, method="GET"):
    data = None if body is None else urllib.parse.urlencode(body).encode()
    raw = urllib.request.Request(emulator.url + "/?" + urllib.parse.urlencode(query), data=data, method=method,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"} if body else {})
    try:
        with urllib.request.urlopen(raw, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


GET_USER = {"Action": "GetUser", "Version": CLOUDSSO, "DirectoryId": DIRECTORY, "UserId": ALICE}


def test_signature_parameters_are_all_checked(emulator):
    status, body = send(emulator, signed_url(GET_USER))
    assert status == 200 and body["User"]["UserId"] == ALICE
    # Replaying the very same URL.
    query = signed_url(GET_USER)
    assert send(emulator, query)[0] == 200
    assert send(emulator, query)[1]["Code"] == "SignatureNonceUsed"

    for name in ["Action", "Version", "AccessKeyId", "Signature", "SignatureNonce", "Timestamp",
                 "SignatureMethod", "SignatureVersion"]:
        query = signed_url(GET_USER)
        del query[name]
        status, body = send(emulator, query)
        assert (status, body["Code"]) == (400, f"Missing{name}"), body

    for name, value, code in [
        ("SignatureMethod", "HMAC-SHA256", "InvalidSignatureMethod"),
        ("SignatureVersion", "2.0", "InvalidSignatureVersion"),
        ("Timestamp", "23/11/2026 19:00", "InvalidTimeStamp.Format"),
        ("Format", "XML", "InvalidParameter.Format"),
        ("UserId", ALAN, "SignatureDoesNotMatch"),
        ("Signature", "AAAA", "SignatureDoesNotMatch"),
    ]:
        query = signed_url(GET_USER)
        query[name] = value
        status, body = send(emulator, query)
        assert (status, body["Code"]) == (400, code), (name, body)

    # Nothing of either signature.
    status, body = send(emulator, GET_USER)
    assert (status, body["Code"]) == (400, "IncompleteSignature")


def test_form_body_is_signed_too(emulator):
    common = {"Action": "UpdateUserMFAAuthenticationSettings", "Version": CLOUDSSO}
    form = {"DirectoryId": DIRECTORY, "UserId": ALAN, "UserMFAAuthenticationSettings": "Enabled"}
    status, _ = send(emulator, signed_url(common, form, "POST"), form, "POST")
    assert status == 200
    tampered = dict(form, UserId=ALICE)
    status, body = send(emulator, signed_url(common, form, "POST"), tampered, "POST")
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
    assert body["Message"].startswith("Specified signature is not matched with our calculation. server string to sign is:POST&%2F&")
    _, state = emulator.admin("GET", "/_emulator/state")
    users = {u["userId"]: u["userMfaAuthenticationSettings"] for u in state["directories"][0]["users"]}
    assert (users[ALAN], users[ALICE]) == ("Enabled", "Enabled")


def test_both_signatures_share_one_state(emulator):
    current = CloudSsoClient(open_api_models.Config(
        access_key_id=ACCESS_KEY_ID, access_key_secret=ACCESS_KEY_SECRET, endpoint=emulator.address,
        protocol="http", read_timeout=5000, connect_timeout=5000))
    call(emulator, "UpdateUserMFAAuthenticationSettings",
         {"DirectoryId": DIRECTORY, "UserId": ALICE, "UserMFAAuthenticationSettings": "Disabled"})
    assert current.get_user_mfaauthentication_settings(sso_models.GetUserMFAAuthenticationSettingsRequest(
        directory_id=DIRECTORY, user_id=ALICE)).body.user_mfaauthentication_settings == "Disabled"
    current.update_user_mfaauthentication_settings(sso_models.UpdateUserMFAAuthenticationSettingsRequest(
        directory_id=DIRECTORY, user_id=ALICE, user_mfaauthentication_settings="Enabled"))
    assert call(emulator, "GetUserMFAAuthenticationSettings",
                {"DirectoryId": DIRECTORY, "UserId": ALICE})["UserMFAAuthenticationSettings"] == "Enabled"
    # The current SDK reads the new actions too (ACS3), with the same answers.
    via_acs3 = current.get_directory_samlservice_provider_info(
        sso_models.GetDirectorySAMLServiceProviderInfoRequest(directory_id=DIRECTORY)).body.samlservice_provider
    via_rpc = call(emulator, "GetDirectorySAMLServiceProviderInfo", {"DirectoryId": DIRECTORY})["SAMLServiceProvider"]
    assert (via_acs3.entity_id, via_acs3.acs_url) == (via_rpc["EntityId"], via_rpc["AcsUrl"])
