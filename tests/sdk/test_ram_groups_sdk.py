"""The RAM console-logon actions (IMS Get/SetSecurityPreference, Get/UpdateLoginProfile,
ListUsers, GetAccountMFAInfo), CloudSSO groups (ListGroups, GetGroup, ListGroupMembers,
ListJoinedGroupsForUser) and the provider's directory calls (SetMFAAuthenticationStatus,
UpdateUser, GetDirectoryGlobalAccessStatus) against the emulator, under both signatures: the
official SDKs unchanged (ACS3) and aliyun-python-sdk-core's CommonRequest (RPC, HMAC-SHA1)."""
import json

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from alibabacloud_cloudsso20210515 import models as sso_models
from alibabacloud_ims20190815 import models as ims_models
from alibabacloud_tea_openapi import utils_models as open_api_util_models
from darabonba.runtime import RuntimeOptions

from test_rpc_sdk_against_emulator import CLOUDSSO, IMS, call
from test_sdk_against_emulator import ALICE, ALAN, DIRECTORY, error_of, ims, sso

BOB = "bob@example.onaliyun.com"
CAROL = "carol@example.onaliyun.com"
NOBODY = "nobody@example.onaliyun.com"


@pytest.fixture()
def seeded(emulator):
    """The shared seed plus: bob must bind MFA at logon, carol has no console logon, dave logs
    on without MFA; groups `eng` (alice, alan and the 25 bulk users: 27 members) and `ops`."""
    _, state = emulator.admin("GET", "/_emulator/state")
    state["ramUsers"][0]["loginProfile"] = {"mfaBindRequired": True}
    state["ramUsers"].append({"userPrincipalName": "dave@example.onaliyun.com", "loginProfile": {}})
    users = [u["userId"] for u in state["directories"][0]["users"]]
    state["directories"][0]["groups"] = [
        {"groupId": "g-eng", "groupName": "eng", "description": "Engineers", "members": users},
        {"groupId": "g-ops", "groupName": "ops", "members": [ALAN]},
    ]
    status, body = emulator.admin("PUT", "/_emulator/state", state)
    assert status == 200, body
    return emulator


def rpc_failure(emulator, action, params, version, method="POST"):
    with pytest.raises(ServerException) as caught:
        call(emulator, action, params, version=version, method=method)
    return caught.value.get_error_code(), caught.value.get_http_status()


def writes(emulator):
    return [w["action"] for w in emulator.admin("GET", "/_emulator/writes")[1]]


# --- ACS3: the official SDKs ---------------------------------------------------------------

def test_security_preference_sdk(seeded):
    client = ims(seeded)
    preference = client.get_security_preference().body.security_preference
    login = preference.login_profile_preference
    assert (login.mfaoperation_for_login, login.operation_for_risk_login, login.enable_save_mfaticket) == (
        "independent", "autonomous", False)
    assert preference.mfapreference.allow_user_to_manage_mfadevices is True
    assert preference.max_idle_days.max_idle_days_for_users == 730
    assert preference.verification_preference.verification_types == []

    answer = client.set_security_preference(ims_models.SetSecurityPreferenceRequest(
        mfaoperation_for_login="mandatory", enable_save_mfaticket=True, verification_types=["sms"])).body
    login = answer.security_preference.login_profile_preference
    assert (login.mfaoperation_for_login, login.enable_save_mfaticket) == ("mandatory", True)
    assert answer.security_preference.verification_preference.verification_types == ["sms"]
    # Only the parameters sent are written: the rest stay as they were.
    client.set_security_preference(ims_models.SetSecurityPreferenceRequest(allow_user_to_manage_mfadevices=False))
    preference = client.get_security_preference().body.security_preference
    assert preference.login_profile_preference.mfaoperation_for_login == "mandatory"
    assert preference.mfapreference.allow_user_to_manage_mfadevices is False
    _, state = seeded.admin("GET", "/_emulator/state")
    assert state["ramSecurityPreference"]["mfaOperationForLogin"] == "mandatory"
    assert state["ramSecurityPreference"]["allowUserToManageMfaDevices"] is False
    assert writes(seeded) == ["SetSecurityPreference", "SetSecurityPreference"]

    for request, code in [
        (ims_models.SetSecurityPreferenceRequest(mfaoperation_for_login="always"), "InvalidParameter.MFAOperationForLogin"),
        (ims_models.SetSecurityPreferenceRequest(operation_for_risk_login="EnforceVerify"), "InvalidParameter.OperationForRiskLogin"),
        (ims_models.SetSecurityPreferenceRequest(login_session_duration=48), "InvalidParameter.LoginSessionDuration"),
    ]:
        assert error_of(lambda: client.set_security_preference(request))[:2] == (code, 400)
    assert client.get_account_mfainfo().body.is_mfaenable is False


def test_login_profile_sdk(seeded):
    client = ims(seeded)
    bob = client.get_login_profile(ims_models.GetLoginProfileRequest(user_principal_name=BOB)).body.login_profile
    assert (bob.user_principal_name, bob.mfabind_required, bob.password_reset_required, bob.status) == (
        BOB, True, False, "Active")
    updated = client.update_login_profile(ims_models.UpdateLoginProfileRequest(
        user_principal_name=BOB, mfabind_required=False)).body.login_profile
    assert (updated.mfabind_required, updated.password_reset_required) == (False, False)
    assert client.get_login_profile(ims_models.GetLoginProfileRequest(
        user_principal_name=BOB)).body.login_profile.mfabind_required is False
    assert writes(seeded) == ["UpdateLoginProfile"]
    for call_it in [
        lambda: client.get_login_profile(ims_models.GetLoginProfileRequest(user_principal_name=CAROL)),
        lambda: client.update_login_profile(ims_models.UpdateLoginProfileRequest(user_principal_name=CAROL, mfabind_required=True)),
    ]:
        assert error_of(call_it)[:2] == ("EntityNotExist.User.LoginProfile", 404)
    assert error_of(lambda: client.get_login_profile(ims_models.GetLoginProfileRequest(
        user_principal_name=NOBODY)))[:2] == ("EntityNotExist.User", 404)


def test_ram_list_users_sdk(seeded):
    client = ims(seeded)
    first = client.list_users(ims_models.ListUsersRequest(max_items=2)).body
    assert first.is_truncated is True and first.marker
    rest = client.list_users(ims_models.ListUsersRequest(max_items=2, marker=first.marker)).body
    assert rest.is_truncated is False
    names = [u.user_principal_name for u in first.users.user + rest.users.user]
    assert names == [BOB, CAROL, "dave@example.onaliyun.com"]
    assert first.users.user[0].display_name == "bob" and len(first.users.user[0].user_id) == 16
    assert error_of(lambda: client.list_users(ims_models.ListUsersRequest(max_items=1001)))[:2] == (
        "InvalidParameter.MaxItems", 400)


def test_groups_sdk(seeded):
    client = sso(seeded)
    eng = client.list_groups(sso_models.ListGroupsRequest(directory_id=DIRECTORY, filter="GroupName eq ENG")).body
    assert [(g.group_id, g.group_name, g.description, g.provision_type) for g in eng.groups] == [
        ("g-eng", "eng", "Engineers", "Manual")]
    paged = client.list_groups(sso_models.ListGroupsRequest(directory_id=DIRECTORY, max_results=1)).body
    assert (paged.is_truncated, paged.total_counts, len(paged.groups)) == (True, 2, 1)
    rest = client.list_groups(sso_models.ListGroupsRequest(directory_id=DIRECTORY, max_results=1, next_token=paged.next_token)).body
    assert [g.group_name for g in rest.groups] == ["ops"] and rest.is_truncated is False
    assert client.get_group(sso_models.GetGroupRequest(directory_id=DIRECTORY, group_id="g-ops")).body.group.group_name == "ops"

    seen, token = [], None
    while True:
        page = client.list_group_members(sso_models.ListGroupMembersRequest(
            directory_id=DIRECTORY, group_id="g-eng", max_results=10, next_token=token)).body
        seen += [(m.user_id, m.user_name, m.group_id) for m in page.group_members]
        if not page.is_truncated:
            break
        token = page.next_token
    assert len(seen) == 27 and seen[0] == (ALICE, "alice", "g-eng")
    joined = client.list_joined_groups_for_user(sso_models.ListJoinedGroupsForUserRequest(
        directory_id=DIRECTORY, user_id=ALAN)).body
    assert [(g.group_id, g.group_name, g.user_id) for g in joined.joined_groups] == [
        ("g-eng", "eng", ALAN), ("g-ops", "ops", ALAN)]

    for call_it, code in [
        (lambda: client.get_group(sso_models.GetGroupRequest(directory_id=DIRECTORY, group_id="g-none")), "EntityNotExists.Group"),
        (lambda: client.list_group_members(sso_models.ListGroupMembersRequest(directory_id=DIRECTORY, group_id="g-none")), "EntityNotExists.Group"),
        (lambda: client.list_joined_groups_for_user(sso_models.ListJoinedGroupsForUserRequest(directory_id=DIRECTORY, user_id="u-none")), "EntityNotExists.User"),
        (lambda: client.list_groups(sso_models.ListGroupsRequest(directory_id="d-none")), "EntityNotExists.Directory"),
    ]:
        assert error_of(call_it)[:2] == (code, 404)
    assert error_of(lambda: client.list_group_members(sso_models.ListGroupMembersRequest(
        directory_id=DIRECTORY, group_id="g-eng", max_results=101)))[:2] == ("InvalidParameter.MaxResults", 400)
    assert error_of(lambda: client.list_groups(sso_models.ListGroupsRequest(
        directory_id=DIRECTORY, filter="DisplayName eq x")))[:2] == ("InvalidParameter.Filter", 400)


def test_provider_directory_calls_sdk(seeded):
    client = sso(seeded)

    def setting():
        return client.get_mfaauthentication_setting_info(sso_models.GetMFAAuthenticationSettingInfoRequest(
            directory_id=DIRECTORY)).body.mfaauthentication_setting_info.mfa_authentication_advance_settings

    client.set_mfaauthentication_status(sso_models.SetMFAAuthenticationStatusRequest(
        directory_id=DIRECTORY, mfaauthentication_status="Disabled"))
    assert setting() == "Disabled"
    client.set_mfaauthentication_status(sso_models.SetMFAAuthenticationStatusRequest(
        directory_id=DIRECTORY, mfaauthentication_status="Enabled"))
    assert setting() == "Enabled"
    assert error_of(lambda: client.set_mfaauthentication_status(sso_models.SetMFAAuthenticationStatusRequest(
        directory_id=DIRECTORY, mfaauthentication_status="On")))[:2] == ("InvalidParameter.MFAAuthenticationStatus", 400)

    user = client.update_user(sso_models.UpdateUserRequest(
        directory_id=DIRECTORY, user_id=ALICE, new_display_name="Alice L.", new_email="alice@example.com")).body.user
    assert (user.user_id, user.display_name, user.email) == (ALICE, "Alice L.", "alice@example.com")
    again = client.get_user(sso_models.GetUserRequest(directory_id=DIRECTORY, user_id=ALICE)).body.user
    assert (again.display_name, again.email, again.first_name) == ("Alice L.", "alice@example.com", "")
    assert error_of(lambda: client.update_user(sso_models.UpdateUserRequest(
        directory_id=DIRECTORY, user_id="u-none", new_display_name="x")))[:2] == ("EntityNotExists.User", 404)

    # Not in the Python SDK yet: the generic ACS3 call, as the SDK makes every call.
    params = open_api_util_models.Params(
        action="GetDirectoryGlobalAccessStatus", version=CLOUDSSO, protocol="HTTP", pathname="/",
        method="POST", auth_type="AK", style="RPC", req_body_type="formData", body_type="json")
    request = open_api_util_models.OpenApiRequest(query={"DirectoryId": DIRECTORY})
    answer = client.call_api(params, request, RuntimeOptions())
    assert answer["body"]["GlobalAccessStatus"] == {"status": "Disabled"}
    assert writes(seeded) == ["SetMFAAuthenticationStatus", "SetMFAAuthenticationStatus",
                              "SetMFAAuthenticationStatus", "UpdateUser", "UpdateUser"]


# --- RPC: aliyun-python-sdk-core CommonRequest ------------------------------------------------

@pytest.mark.parametrize("method", ["POST", "GET"])
def test_ram_actions_rpc(seeded, method):
    preference = call(seeded, "GetSecurityPreference", {}, version=IMS, method=method)["SecurityPreference"]
    assert preference["LoginProfilePreference"]["MFAOperationForLogin"] == "independent"
    assert preference["MFAPreference"] == {"AllowUserToManageMFADevices": True}
    answer = call(seeded, "SetSecurityPreference", {"MFAOperationForLogin": "adaptive",
                                                    "OperationForRiskLogin": "enforceVerify"},
                  version=IMS, method=method)
    login = answer["SecurityPreference"]["LoginProfilePreference"]
    assert (login["MFAOperationForLogin"], login["OperationForRiskLogin"], login["EnableSaveMFATicket"]) == (
        "adaptive", "enforceVerify", False)
    # The older boolean that Terraform's enforce_mfa_for_login sends.
    call(seeded, "SetSecurityPreference", {"EnforceMFAForLogin": "true"}, version=IMS, method=method)
    login = call(seeded, "GetSecurityPreference", {}, version=IMS)["SecurityPreference"]["LoginProfilePreference"]
    assert (login["MFAOperationForLogin"], login["EnforceMFAForLogin"]) == ("mandatory", True)

    profile = call(seeded, "GetLoginProfile", {"UserPrincipalName": BOB}, version=IMS, method=method)["LoginProfile"]
    assert (profile["MFABindRequired"], profile["UserPrincipalName"]) == (True, BOB)
    profile = call(seeded, "UpdateLoginProfile", {"UserPrincipalName": BOB, "MFABindRequired": "false",
                                                  "PasswordResetRequired": "true"},
                   version=IMS, method=method)["LoginProfile"]
    assert (profile["MFABindRequired"], profile["PasswordResetRequired"]) == (False, True)
    assert rpc_failure(seeded, "GetLoginProfile", {"UserPrincipalName": CAROL}, IMS, method) == (
        "EntityNotExist.User.LoginProfile", 404)
    assert rpc_failure(seeded, "UpdateLoginProfile", {"UserPrincipalName": NOBODY, "MFABindRequired": "true"},
                       IMS, method) == ("EntityNotExist.User", 404)
    assert rpc_failure(seeded, "SetSecurityPreference", {"EnableSaveMFATicket": "sometimes"}, IMS, method) == (
        "InvalidParameter.EnableSaveMFATicket", 400)

    users = call(seeded, "ListUsers", {"MaxItems": "1"}, version=IMS, method=method)
    assert users["IsTruncated"] is True and users["Users"]["User"][0]["UserPrincipalName"] == BOB
    rest = call(seeded, "ListUsers", {"Marker": users["Marker"]}, version=IMS, method=method)
    assert [u["UserPrincipalName"] for u in rest["Users"]["User"]] == [CAROL, "dave@example.onaliyun.com"]
    assert call(seeded, "GetAccountMFAInfo", {}, version=IMS, method=method)["IsMFAEnable"] is False
    # Refused writes are writes too: the log keeps every outcome.
    assert writes(seeded) == ["SetSecurityPreference", "SetSecurityPreference", "UpdateLoginProfile",
                              "UpdateLoginProfile", "SetSecurityPreference"]


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_groups_rpc(seeded, method):
    starts = call(seeded, "ListGroups", {"DirectoryId": DIRECTORY, "Filter": "GroupName sw o"}, method=method)
    assert [g["GroupName"] for g in starts["Groups"]] == ["ops"] and starts["TotalCounts"] == 1
    group = call(seeded, "GetGroup", {"DirectoryId": DIRECTORY, "GroupId": "g-eng"}, method=method)["Group"]
    assert (group["GroupId"], group["Description"]) == ("g-eng", "Engineers")
    page = call(seeded, "ListGroupMembers", {"DirectoryId": DIRECTORY, "GroupId": "g-eng", "MaxResults": "20"},
                method=method)
    assert (len(page["GroupMembers"]), page["IsTruncated"], page["TotalCounts"]) == (20, True, 27)
    rest = call(seeded, "ListGroupMembers", {"DirectoryId": DIRECTORY, "GroupId": "g-eng", "MaxResults": "20",
                                             "NextToken": page["NextToken"]}, method=method)
    assert len(rest["GroupMembers"]) == 7 and rest["IsTruncated"] is False
    joined = call(seeded, "ListJoinedGroupsForUser", {"DirectoryId": DIRECTORY, "UserId": ALICE}, method=method)
    assert [g["GroupId"] for g in joined["JoinedGroups"]] == ["g-eng"]
    assert rpc_failure(seeded, "GetGroup", {"DirectoryId": DIRECTORY, "GroupId": "g-none"}, CLOUDSSO, method) == (
        "EntityNotExists.Group", 404)
    starts = call(seeded, "ListUsers", {"DirectoryId": DIRECTORY, "Filter": "UserName sw bulk001"}, method=method)
    assert sorted(u["UserName"] for u in starts["Users"]) == [f"bulk001{i}" for i in range(10)]


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_provider_directory_calls_rpc(seeded, method):
    call(seeded, "SetMFAAuthenticationStatus", {"DirectoryId": DIRECTORY, "MFAAuthenticationStatus": "Disabled"},
         method=method)
    info = call(seeded, "GetMFAAuthenticationSettingInfo", {"DirectoryId": DIRECTORY})["MFAAuthenticationSettingInfo"]
    assert info == {"MfaAuthenticationAdvanceSettings": "Disabled"}
    assert call(seeded, "GetMFAAuthenticationStatus", {"DirectoryId": DIRECTORY})["MFAAuthenticationStatus"] == "Disabled"
    call(seeded, "SetMFAAuthenticationStatus", {"DirectoryId": DIRECTORY, "MFAAuthenticationStatus": "Enabled"},
         method=method)
    info = call(seeded, "GetMFAAuthenticationSettingInfo", {"DirectoryId": DIRECTORY})["MFAAuthenticationSettingInfo"]
    assert info["MfaAuthenticationAdvanceSettings"] == "Enabled"

    user = call(seeded, "UpdateUser", {"DirectoryId": DIRECTORY, "UserId": ALAN, "NewDisplayName": "Alan T."},
                method=method)["User"]
    assert (user["UserId"], user["DisplayName"]) == (ALAN, "Alan T.")
    assert rpc_failure(seeded, "UpdateUser", {"DirectoryId": "d-none", "UserId": ALAN}, CLOUDSSO, method) == (
        "EntityNotExists.Directory", 404)
    status = call(seeded, "GetDirectoryGlobalAccessStatus", {"DirectoryId": DIRECTORY}, method=method)
    assert status["GlobalAccessStatus"] == {"status": "Disabled"} and status["RequestId"]
    assert rpc_failure(seeded, "GetDirectoryGlobalAccessStatus", {"DirectoryId": "d-none"}, CLOUDSSO, method) == (
        "EntityNotExists.Directory", 404)
    assert json.dumps(writes(seeded)) == json.dumps(
        ["SetMFAAuthenticationStatus", "SetMFAAuthenticationStatus", "UpdateUser", "UpdateUser"])
