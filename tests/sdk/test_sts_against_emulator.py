"""STS GetCallerIdentity through Alibaba Cloud's official SDKs, unchanged, against the emulator:
the STS SDK (ACS3, and the RPC signature with signature_algorithm v2) and the older core SDK's
CommonRequest (RPC) each get the account the seed gives each key; an unknown key gets the
gateway's code and status; temporary keys from AssumeRoleWithOIDC are of their role's account."""
import json

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi import models as open_api_models

from conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET, DEFAULT_ACCOUNT_ID, TEAM_A, TEAM_B

STS = "2015-04-01"


def sts(emulator, key_id, secret, token=None, algorithm=None):
    config = open_api_models.Config(
        access_key_id=key_id, access_key_secret=secret, security_token=token,
        endpoint=emulator.address, protocol="http", read_timeout=5000, connect_timeout=5000,
    )
    if algorithm:
        config.signature_algorithm = algorithm
    return StsClient(config)


def identity(emulator, key, algorithm=None):
    return sts(emulator, key["accessKeyId"], key["accessKeySecret"], algorithm=algorithm).get_caller_identity().body


# None: the SDK's default (ACS3-HMAC-SHA256); "v2": its RPC signature (HMAC-SHA1).
@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_each_key_gets_its_seeded_account(emulator, algorithm):
    a = identity(emulator, TEAM_A, algorithm)
    assert (a.account_id, a.identity_type) == (TEAM_A["accountId"], "RAMUser")
    assert a.arn == f"acs:ram::{TEAM_A['accountId']}:user/mfa-operator"
    assert a.user_id and a.principal_id == a.user_id and a.request_id
    b = identity(emulator, TEAM_B, algorithm)
    assert (b.account_id, b.identity_type, b.arn) == (
        TEAM_B["accountId"], "Account", f"acs:ram::{TEAM_B['accountId']}:root")
    plain = identity(emulator, {"accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET}, algorithm)
    assert plain.account_id == DEFAULT_ACCOUNT_ID
    _, calls = emulator.admin("GET", "/_emulator/calls")
    assert calls["GetCallerIdentity"] == {"ok": 3}


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_an_unknown_key_gets_the_gateway_error(emulator, algorithm):
    with pytest.raises(Exception) as caught:
        sts(emulator, "LTAI5tUnknown", "whatever", algorithm=algorithm).get_caller_identity()
    error = caught.value
    assert (getattr(error, "code", None), getattr(error, "status_code", None)) == ("InvalidAccessKeyId.NotFound", 404), error


def test_temporary_keys_are_of_their_role_s_account(emulator, sts_credentials):
    body = sts(emulator, sts_credentials["AccessKeyId"], sts_credentials["AccessKeySecret"],
               token=sts_credentials["SecurityToken"]).get_caller_identity().body
    # The fixture assumed acs:ram::1234:role/operator with session sdk-test.
    assert (body.account_id, body.identity_type) == ("1234", "AssumedRoleUser")
    assert body.arn == "acs:ram::1234:assumed-role/operator/sdk-test"
    assert body.role_id and body.principal_id == f"{body.role_id}:sdk-test"


def core_call(emulator, key_id, secret):
    """GetCallerIdentity as the older core SDK sends it: a CommonRequest, RPC-signed, form body."""
    host, port = emulator.address.rsplit(":", 1)
    client = AcsClient(key_id, secret, region_id="cn-shanghai", auto_retry=False, port=int(port),
                       timeout=5, connect_timeout=5)
    request = CommonRequest(domain=host, version=STS, action_name="GetCallerIdentity")
    request.set_protocol_type("http")
    request.set_method("POST")
    return json.loads(client.do_action_with_exception(request))


def test_the_core_sdk_gets_the_same_accounts(emulator):
    for key in (TEAM_A, TEAM_B):
        body = core_call(emulator, key["accessKeyId"], key["accessKeySecret"])
        assert body["AccountId"] == key["accountId"], body
        assert body["RequestId"]
    with pytest.raises(ServerException) as caught:
        core_call(emulator, "LTAI5tUnknown", "whatever")
    assert (caught.value.get_error_code(), caught.value.get_http_status()) == ("InvalidAccessKeyId.NotFound", 404)
    # A known key signed with another key's secret is not taken for either account.
    with pytest.raises(ServerException) as caught:
        core_call(emulator, TEAM_A["accessKeyId"], TEAM_B["accessKeySecret"])
    assert caught.value.get_error_code() == "SignatureDoesNotMatch"
