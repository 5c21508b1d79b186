"""Alibaba Cloud's official Python SDKs, unchanged, against the emulator: every action the operator
calls returns the seeded answers, and the error cases carry the real codes and HTTP statuses."""
import subprocess

import pytest
from alibabacloud_cloudsso20210515 import models as sso_models
from alibabacloud_cloudsso20210515.client import Client as CloudSsoClient
from alibabacloud_ims20190815 import models as ims_models
from alibabacloud_ims20190815.client import Client as ImsClient
from alibabacloud_tea_openapi import models as open_api_models

from conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET, ROOT, emulator_binary

DIRECTORY = "d-00fc2p61abcd"
ALICE = "u-00q8wbq42wiltcrk0001"
ALAN = "u-00q8wbq42wiltcrk0002"


def config(emulator, key_id=ACCESS_KEY_ID, secret=ACCESS_KEY_SECRET, token=None):
    return open_api_models.Config(
        access_key_id=key_id, access_key_secret=secret, security_token=token,
        endpoint=emulator.address, protocol="http", read_timeout=5000, connect_timeout=5000,
    )


def sso(emulator, **kwargs):
    return CloudSsoClient(config(emulator, **kwargs))


def ims(emulator, **kwargs):
    return ImsClient(config(emulator, **kwargs))


def error_of(call):
    with pytest.raises(Exception) as caught:
        call()
    error = caught.value
    return getattr(error, "code", None), getattr(error, "status_code", None), str(error)


def test_directory_setting_roundtrip(emulator):
    client = sso(emulator)
    info = client.get_mfaauthentication_setting_info(
        sso_models.GetMFAAuthenticationSettingInfoRequest(directory_id=DIRECTORY)).body
    assert info.request_id
    assert info.mfaauthentication_setting_info.mfa_authentication_advance_settings == "Byuser"
    assert info.mfaauthentication_setting_info.operation_for_risk_login == "Autonomous"

    client.update_mfaauthentication_settings(sso_models.UpdateMFAAuthenticationSettingsRequest(
        directory_id=DIRECTORY, mfaauthentication_settings="OnlyRiskyLogin",
        operation_for_risk_login="EnforceVerify", allowed_verification_types=["TOTP"]))
    info = client.get_mfaauthentication_setting_info(
        sso_models.GetMFAAuthenticationSettingInfoRequest(directory_id=DIRECTORY)).body
    setting = info.mfaauthentication_setting_info
    assert (setting.mfa_authentication_advance_settings, setting.operation_for_risk_login) == ("OnlyRiskyLogin", "EnforceVerify")
    assert setting.allowed_verification_types == ["TOTP"]

    client.update_mfaauthentication_settings(sso_models.UpdateMFAAuthenticationSettingsRequest(
        directory_id=DIRECTORY, mfaauthentication_settings="Enabled"))
    setting = client.get_mfaauthentication_setting_info(
        sso_models.GetMFAAuthenticationSettingInfoRequest(directory_id=DIRECTORY)).body.mfaauthentication_setting_info
    assert setting.mfa_authentication_advance_settings == "Enabled"
    assert setting.operation_for_risk_login is None  # documented: only under Byuser/OnlyRiskyLogin
    status, state = emulator.admin("GET", "/_emulator/state")
    assert state["directories"][0]["mfaAuthenticationSettings"] == "Enabled"


def test_user_setting_and_devices(emulator):
    client = sso(emulator)
    body = client.get_user_mfaauthentication_settings(sso_models.GetUserMFAAuthenticationSettingsRequest(
        directory_id=DIRECTORY, user_id=ALICE)).body
    assert body.user_mfaauthentication_settings == "Enabled"
    client.update_user_mfaauthentication_settings(sso_models.UpdateUserMFAAuthenticationSettingsRequest(
        directory_id=DIRECTORY, user_id=ALICE, user_mfaauthentication_settings="Disabled"))
    body = client.get_user_mfaauthentication_settings(sso_models.GetUserMFAAuthenticationSettingsRequest(
        directory_id=DIRECTORY, user_id=ALICE)).body
    assert body.user_mfaauthentication_settings == "Disabled"

    devices = client.list_mfadevices_for_user(sso_models.ListMFADevicesForUserRequest(
        directory_id=DIRECTORY, user_id=ALICE)).body
    assert devices.total_counts == 1
    device = devices.mfadevices[0]
    assert (device.device_id, device.device_name, device.device_type, device.effective_time, device.user_id) == (
        "mfa-00ujhet8pycljj7j0001", "Alice-MFA1", "TOTP", "2021-10-29T09:14:06Z", ALICE)
    none = client.list_mfadevices_for_user(sso_models.ListMFADevicesForUserRequest(
        directory_id=DIRECTORY, user_id=ALAN)).body
    assert none.total_counts == 0 and none.mfadevices == []


def test_list_users_filter_and_paging(emulator):
    client = sso(emulator)
    alice = client.list_users(sso_models.ListUsersRequest(directory_id=DIRECTORY, filter="UserName eq alice")).body
    assert [u.user_name for u in alice.users] == ["alice"] and alice.users[0].user_id == ALICE
    starts = client.list_users(sso_models.ListUsersRequest(directory_id=DIRECTORY, filter="UserName sw al")).body
    assert sorted(u.user_name for u in starts.users) == ["alan", "alice"]

    seen, token, pages = [], None, 0
    while True:
        page = client.list_users(sso_models.ListUsersRequest(directory_id=DIRECTORY, max_results=10, next_token=token)).body
        pages += 1
        seen += [u.user_name for u in page.users]
        assert page.total_counts == 27
        if not page.is_truncated:
            break
        token = page.next_token
    assert pages == 3 and len(seen) == 27 and len(set(seen)) == 27

    default_page = client.list_users(sso_models.ListUsersRequest(directory_id=DIRECTORY)).body
    assert len(default_page.users) == 10 and default_page.is_truncated

    user = client.get_user(sso_models.GetUserRequest(directory_id=DIRECTORY, user_id=ALICE)).body.user
    assert (user.user_id, user.user_name, user.status) == (ALICE, "alice", "Enabled")


def test_ram_user_mfa_info(emulator):
    client = ims(emulator)
    bob = client.get_user_mfainfo(ims_models.GetUserMFAInfoRequest(user_principal_name="bob@example.onaliyun.com")).body
    assert bob.is_mfaenable is True
    assert (bob.mfadevice.serial_number, bob.mfadevice.type) == ("acs:ram::1234:mfa/bob", "VMFA")
    carol = client.get_user_mfainfo(ims_models.GetUserMFAInfoRequest(user_principal_name="carol@example.onaliyun.com")).body
    assert carol.is_mfaenable is False and carol.mfadevice is None
    code, status, _ = error_of(lambda: client.get_user_mfainfo(
        ims_models.GetUserMFAInfoRequest(user_principal_name="nobody@example.onaliyun.com")))
    assert (code, status) == ("EntityNotExist.User", 404)


@pytest.mark.parametrize("call, code, status", [
    (lambda c: c.get_mfaauthentication_setting_info(sso_models.GetMFAAuthenticationSettingInfoRequest(directory_id="d-missing")),
     "EntityNotExists.Directory", 404),
    (lambda c: c.get_user_mfaauthentication_settings(sso_models.GetUserMFAAuthenticationSettingsRequest(directory_id=DIRECTORY, user_id="u-missing")),
     "EntityNotExists.User", 404),
    (lambda c: c.list_mfadevices_for_user(sso_models.ListMFADevicesForUserRequest(directory_id=DIRECTORY, user_id="u-missing")),
     "EntityNotExists.User", 404),
    (lambda c: c.update_mfaauthentication_settings(sso_models.UpdateMFAAuthenticationSettingsRequest(directory_id=DIRECTORY, mfaauthentication_settings="Sometimes")),
     "InvalidParameter.MFAAuthenticationSettings", 400),
    (lambda c: c.update_user_mfaauthentication_settings(sso_models.UpdateUserMFAAuthenticationSettingsRequest(directory_id=DIRECTORY, user_id=ALICE, user_mfaauthentication_settings="Maybe")),
     "InvalidParameter.UserMFAAuthenticationSettings", 400),
    (lambda c: c.list_users(sso_models.ListUsersRequest(directory_id=DIRECTORY, max_results=101)),
     "InvalidParameter.MaxResults", 400),
    (lambda c: c.list_users(sso_models.ListUsersRequest(directory_id=DIRECTORY, filter="Email eq x")),
     "InvalidParameter.Filter", 400),
    (lambda c: c.get_user(sso_models.GetUserRequest(directory_id=DIRECTORY)),
     "MissingParameter", 400),
])
def test_error_cases_carry_real_codes(emulator, call, code, status):
    got_code, got_status, message = error_of(lambda: call(sso(emulator)))
    assert (got_code, got_status) == (code, status), message


def test_bad_credentials(emulator):
    code, status, message = error_of(lambda: sso(emulator, secret="wrong-secret").get_user(
        sso_models.GetUserRequest(directory_id=DIRECTORY, user_id=ALICE)))
    assert (code, status) == ("SignatureDoesNotMatch", 400), message
    code, status, _ = error_of(lambda: sso(emulator, key_id="LTAI5tUnknown").get_user(
        sso_models.GetUserRequest(directory_id=DIRECTORY, user_id=ALICE)))
    assert (code, status) == ("InvalidAccessKeyId.NotFound", 404)
    _, calls = emulator.admin("GET", "/_emulator/calls")
    assert calls["GetUser"]["SignatureDoesNotMatch"] == 1
    assert calls["GetUser"]["InvalidAccessKeyId.NotFound"] == 1


def test_throttling_and_faults(emulator):
    assert emulator.admin("PUT", "/_emulator/faults", {"qps": 2})[0] == 200
    client = sso(emulator)
    codes = []
    for _ in range(6):
        try:
            client.get_user(sso_models.GetUserRequest(directory_id=DIRECTORY, user_id=ALICE))
            codes.append("ok")
        except Exception as error:  # noqa: BLE001 - the SDK's own exception types
            codes.append(getattr(error, "code", repr(error)))
    assert "Throttling.User" in codes and "ok" in codes, codes
    assert emulator.admin("PUT", "/_emulator/faults", {"errorRate": 1})[0] == 200
    code, status, _ = error_of(lambda: client.get_user(sso_models.GetUserRequest(directory_id=DIRECTORY, user_id=ALICE)))
    assert (code, status) == ("ServiceUnavailable", 503)
    assert emulator.admin("PUT", "/_emulator/faults", {"errorRate": 2})[0] == 400
    assert emulator.admin("PUT", "/_emulator/faults", {"bogus": 1})[0] == 400
    assert emulator.admin("PUT", "/_emulator/faults", {})[0] == 200
    client.get_user(sso_models.GetUserRequest(directory_id=DIRECTORY, user_id=ALICE))


def test_state_replacement_plays_a_console_change(emulator):
    _, state = emulator.admin("GET", "/_emulator/state")
    state["directories"][0]["users"][1]["mfaDevices"] = [{
        "deviceId": "mfa-new", "deviceName": "Alan-Passkey", "deviceType": "PlatformPasskey",
        "effectiveTime": "2026-01-01T00:00:00Z"}]
    assert emulator.admin("PUT", "/_emulator/state", state)[0] == 200
    devices = sso(emulator).list_mfadevices_for_user(sso_models.ListMFADevicesForUserRequest(
        directory_id=DIRECTORY, user_id=ALAN)).body
    assert [d.device_type for d in devices.mfadevices] == ["PlatformPasskey"]
    state["directories"][0]["users"][1]["mfaDevices"] *= 3  # three devices: over the limit of two
    status, body = emulator.admin("PUT", "/_emulator/state", state)
    assert status == 400 and "at most 2" in body["error"]


def test_sts_credentials_from_assume_role_with_oidc(emulator, sts_credentials):
    credentials = sts_credentials
    client = sso(emulator, key_id=credentials["AccessKeyId"], secret=credentials["AccessKeySecret"],
                 token=credentials["SecurityToken"])
    assert client.get_user(sso_models.GetUserRequest(directory_id=DIRECTORY, user_id=ALICE)).body.user.user_name == "alice"
    code, _, _ = error_of(lambda: sso(emulator, key_id=credentials["AccessKeyId"], secret=credentials["AccessKeySecret"],
                                      token="CAISforged").get_user(sso_models.GetUserRequest(directory_id=DIRECTORY, user_id=ALICE)))
    assert code == "InvalidSecurityToken.MismatchWithAccessKey"


@pytest.mark.parametrize("seed_text, expected", [
    ("{not json", "invalid JSON"),
    ('{"directories": [{"directoryId": "d-1", "mfaAuthenticationSettings": "Sometimes"}]}', "Sometimes"),
    ('{"acessKeys": []}', "unknown field"),
])
def test_bad_seed_files_fail_with_one_clear_line(tmp_path, seed_text, expected):
    seed = tmp_path / "bad.json"
    seed.write_text(seed_text)
    result = subprocess.run([emulator_binary(), "--listen", "127.0.0.1:0", "--seed", str(seed)],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "panicked" not in result.stderr, result.stderr


def test_missing_seed_file_and_bad_flag(tmp_path):
    result = subprocess.run([emulator_binary(), "--seed", str(tmp_path / "absent.json")],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode != 0 and "cannot read seed file" in result.stderr
    result = subprocess.run([emulator_binary(), "--listen", "not-an-address", "--seed", "x"],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode != 0 and "invalid value 'not-an-address'" in result.stderr


def test_directory_and_user_reads_fill_the_official_models(emulator):
    client = sso(emulator)
    directory = client.get_directory(sso_models.GetDirectoryRequest(directory_id=DIRECTORY)).body.directory
    assert (directory.directory_id, directory.region, directory.directory_name) == (DIRECTORY, "cn-shanghai", "")
    provider = client.get_directory_samlservice_provider_info(
        sso_models.GetDirectorySAMLServiceProviderInfoRequest(directory_id=DIRECTORY)).body.samlservice_provider
    assert provider.entity_id.endswith(f"/saml/sp/{DIRECTORY}") and provider.support_encrypted_assertion is False
    idp = client.get_external_samlidentity_provider(sso_models.GetExternalSAMLIdentityProviderRequest(
        directory_id=DIRECTORY)).body.samlidentity_provider_configuration
    assert (idp.directory_id, idp.ssostatus, idp.certificate_ids) == (DIRECTORY, "Disabled", [])
    policy = client.get_password_policy(sso_models.GetPasswordPolicyRequest(directory_id=DIRECTORY)).body.password_policy
    assert (policy.min_password_length, policy.max_password_length, policy.hard_expire) == (8, 32, False)
    preference = client.get_login_preference(sso_models.GetLoginPreferenceRequest(directory_id=DIRECTORY)).body.login_preference
    assert preference.allow_user_to_get_credentials is False
    provisioning = client.get_user_provisioning_configuration(sso_models.GetUserProvisioningConfigurationRequest(
        directory_id=DIRECTORY)).body.user_provisioning_configuration
    assert (provisioning.directory_id, provisioning.session_duration) == (DIRECTORY, 6)
    assert client.get_scimsynchronization_status(sso_models.GetSCIMSynchronizationStatusRequest(
        directory_id=DIRECTORY)).body.scimsynchronization_status == "Disabled"
    assert client.get_mfaauthentication_status(sso_models.GetMFAAuthenticationStatusRequest(
        directory_id=DIRECTORY)).body.mfaauthentication_status == "Enabled"
    user = client.get_user(sso_models.GetUserRequest(directory_id=DIRECTORY, user_id=ALICE)).body.user
    assert (user.email, user.tags, user.external_id) == ("", [], None)

    _, state = emulator.admin("GET", "/_emulator/state")
    state["directories"][0]["users"][0]["externalId"] = {"id": "ext-alice", "issuer": "https://idp.example.com"}
    assert emulator.admin("PUT", "/_emulator/state", state)[0] == 200
    found = client.get_user_id(sso_models.GetUserIdRequest(
        directory_id=DIRECTORY,
        external_id=sso_models.GetUserIdRequestExternalId(id="ext-alice", issuer="https://idp.example.com"))).body
    assert found.user_id == ALICE
    user = client.get_user(sso_models.GetUserRequest(directory_id=DIRECTORY, user_id=ALICE)).body.user
    assert (user.provision_type, user.external_id.id, user.external_id.issuer) == (
        "Synchronized", "ext-alice", "https://idp.example.com")
    code, status, _ = error_of(lambda: client.get_directory_samlservice_provider_info(
        sso_models.GetDirectorySAMLServiceProviderInfoRequest(directory_id="d-missing")))
    assert (code, status) == ("EntityNotExists.Directory", 404)
