"""moto server for the local bed, with fills for moto gaps the production code meets.

Each fill makes moto behave as EC2 documents; none changes what a test can observe beyond that.
Started by bed.sh exactly like `moto_server` (same arguments).

- CreateImage with a `snapshot` TagSpecification: EC2 tags the new image's snapshots; moto 5.2.5
  raises NotImplementedError (HTTP 500). The switch saga tags its snapshots at creation because its
  rollback may delete only snapshots carrying its tag (IAM condition), so the bed must accept it.
- DescribeInstances' `client-token` filter, which moto does not implement.
- RunInstances from a launch template that declares network interfaces, with a top-level
  SubnetId: EC2 refuses the combination (InvalidParameterCombination); moto checks it only when
  the request itself names the interfaces.
- IAM (with BED_IAM_ROLES, the output of `testbed iam-roles`): moto evaluates every request's
  identity policy (INITIAL_NO_AUTH_ACTION_COUNT=0). The home account holds one role per central
  function with the actions of its template policy; every other account, once assumed into, holds
  the member template's roles, as if it had deployed infra/member-account.yaml. The bed's own
  seeding (access key `testing`, and role BedAdministrator in member accounts) may do anything.
  moto matches actions only (see tests/src/iam.rs for what is checked statically instead). Two
  moto gaps come with it: the signature is checked over the body as sent (moto re-encoded parsed
  forms, and the AWS SDK for Rust encodes a space as %20, not '+'), and a refusal has each
  protocol's shape (UnauthorizedOperation for EC2, AccessDeniedException for JSON services).
"""

import json
import os
import re
import threading

from moto import settings
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.exceptions import JsonRESTError, _RESTError
from moto.core.responses import BaseResponse
from moto.ec2 import utils as ec2_utils
from moto.ec2.exceptions import InvalidParameterCombination
from moto.ec2.models.amis import AmiBackend
from moto.ec2.responses.instances import InstanceResponse
from moto.iam.access_control import IAMRequest
from moto.iam.models import iam_backends
from moto.server import main
from moto.sts.models import STSBackend

_create_image = AmiBackend.create_image


def _create_image_with_snapshot_tags(self, instance_id, name, description, tag_specifications):
    snapshot_tags = {
        tag["Key"]: tag["Value"]
        for spec in tag_specifications
        if spec.get("ResourceType") == "snapshot"
        for tag in spec.get("Tags", [])
    }
    others = [spec for spec in tag_specifications if spec.get("ResourceType") != "snapshot"]
    ami = _create_image(self, instance_id, name, description, tag_specifications=others)
    if snapshot_tags:
        self.create_tags([ami.ebs_snapshot.id], snapshot_tags)
    return ami


AmiBackend.create_image = _create_image_with_snapshot_tags

# EC2 filters instances by the ClientToken they were launched with; moto knows the token but
# not the filter (FilterNotImplementedError).
ec2_utils.filter_dict_attribute_mapping["client-token"] = "client_token"

_run_instances = InstanceResponse.run_instances


def _run_instances_refusing_a_subnet_beside_template_interfaces(self):
    template = self._get_param("LaunchTemplate", {})
    if (
        template
        and self._get_param("SubnetId")
        and self.ec2_backend._get_template_from_args(template).data.get("NetworkInterfaces")
    ):
        raise InvalidParameterCombination(
            msg="Network interfaces and an instance-level subnet ID may not be specified on the same request"
        )
    return _run_instances(self)


InstanceResponse.run_instances = _run_instances_refusing_a_subnet_beside_template_interfaces

ADMINISTRATOR = "BedAdministrator"
_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
)


def _allow(actions):
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": sorted(actions), "Resource": "*"}],
        }
    )


def _ensure_roles(account, roles):
    iam = iam_backends[account]["aws"]
    existing = {role.name for role in iam.get_roles()}
    for name, actions in roles.items():
        if name in existing:
            continue
        iam.create_role(name, _TRUST, "/", None, "bed", [], None)
        iam.put_role_policy(name, "bed", _allow(actions))


def _enforce_iam(path):
    with open(path) as f:
        roles = json.load(f)
    members = dict(roles["members"], **{ADMINISTRATOR: ["*"]})
    home = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    home.create_user("us-east-1", "bed-administrator")
    home.put_user_policy("bed-administrator", "bed", _allow(["*"]))
    key = home.create_access_key("bed-administrator")
    for key_id in [k for k, v in home.access_keys.items() if v is key]:
        del home.access_keys[key_id]
    key.access_key_id = "testing"
    key.secret_access_key = "testing"
    home.access_keys["testing"] = key
    _ensure_roles(DEFAULT_ACCOUNT_ID, dict(roles["functions"], **members))
    ready = {DEFAULT_ACCOUNT_ID}
    lock = threading.Lock()
    assume_role = STSBackend.assume_role

    def assume_role_into_a_member_account(self, region_name, role_session_name, role_arn, *args, **kwargs):
        account = re.search(r":iam::(\d{12}):", role_arn)
        if account and account.group(1) not in ready:
            with lock:
                if account.group(1) not in ready:
                    _ensure_roles(account.group(1), members)
                    ready.add(account.group(1))
        return assume_role(self, region_name, role_session_name, role_arn, *args, **kwargs)

    STSBackend.assume_role = assume_role_into_a_member_account

    # moto checks a signature over the body it re-encodes from the parsed form when werkzeug has
    # consumed a form body; the AWS SDK for Rust encodes a space as %20 where botocore writes '+',
    # so every such request would fail its signature. Keep the body as sent for the check.
    setup_class = BaseResponse.setup_class

    def setup_class_keeping_the_body(self, request, *args, **kwargs):
        sent = request.get_data(cache=True) if hasattr(request, "get_data") else b""
        setup_class(self, request, *args, **kwargs)
        if not self.raw_body and sent:
            self.raw_body = sent

    BaseResponse.setup_class = setup_class_keeping_the_body
    IAMRequest._raise_access_denied = _raise_access_denied_as_the_service_does
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0


class _Refusal(_RESTError):
    """An XML refusal in the shape of the service's protocol."""

    def __init__(self, status, code, message, body):
        super().__init__(code, message)
        self.code = status
        self.description = body


def _raise_access_denied_as_the_service_does(self):
    """moto answers every refusal as an XML `ErrorResponse/Errors/Error` with code AccessDenied,
    which the SDK cannot read for EC2 (`Response/Errors/Error`, UnauthorizedOperation), the JSON
    services (AccessDeniedException) or the query services (`ErrorResponse/Error`)."""
    message = f"User: {self._access_key.arn} is not authorized to perform: {self._action}"
    if self._service == "ec2":
        body = (
            "<Response><Errors><Error><Code>UnauthorizedOperation</Code>"
            f"<Message>You are not authorized to perform this operation. {message}</Message>"
            "</Error></Errors><RequestID>bed</RequestID></Response>"
        )
        raise _Refusal(403, "UnauthorizedOperation", message, body)
    if "amz-json" in self._headers.get("Content-Type", ""):
        raise JsonRESTError("AccessDeniedException", message)
    body = (
        "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
        f"<Message>{message}</Message></Error><RequestId>bed</RequestId></ErrorResponse>"
    )
    raise _Refusal(403, "AccessDenied", message, body)


if os.environ.get("BED_IAM_ROLES"):
    _enforce_iam(os.environ["BED_IAM_ROLES"])

if __name__ == "__main__":
    main()
