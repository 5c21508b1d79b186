"""Signs one request with Alibaba Cloud's official Python SDK pipeline, without sending it.

Reads JSON on stdin: {endpoint, version, action, params, accessKeyId, accessKeySecret,
securityToken?, date, nonce}. Prints JSON: {headers, query, authorization}: what the SDK would
put on the wire. The date and nonce are pinned so that another signer can reproduce the request.
"""
import json
import sys

import alibabacloud_tea_openapi.client as openapi_client
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.utils import Utils
from darabonba.runtime import RuntimeOptions


class Captured(Exception):
    pass


def main():
    spec = json.load(sys.stdin)
    Utils.get_timestamp = staticmethod(lambda: spec["date"])
    Utils.get_nonce = staticmethod(lambda: spec["nonce"])
    captured = {}

    def capture(request, runtime=None, *args, **kwargs):
        captured["request"] = request
        raise Captured()

    openapi_client.DaraCore.do_action = staticmethod(capture)
    config = open_api_models.Config(
        access_key_id=spec["accessKeyId"],
        access_key_secret=spec["accessKeySecret"],
        security_token=spec.get("securityToken"),
        endpoint=spec["endpoint"],
        protocol="http",
    )
    client = openapi_client.Client(config)
    params = open_api_models.Params(
        action=spec["action"], version=spec["version"], protocol="HTTP", pathname="/",
        method="POST", auth_type="AK", style="RPC", req_body_type="formData", body_type="json",
    )
    request = open_api_models.OpenApiRequest(query=spec["params"])
    try:
        client.call_api(params, request, RuntimeOptions(autoretry=False, max_attempts=0))
    except Exception:  # the SDK wraps our Captured in its own retry exception
        if "request" not in captured:
            raise
    sent = captured["request"]
    headers = {k.lower(): str(v) for k, v in sent.headers.items()}
    print(json.dumps({
        "authorization": headers.pop("authorization"),
        "headers": headers,
        "query": sent.query,
    }))


if __name__ == "__main__":
    main()
