"""The SAM template as CloudFormation will deploy it (samtranslator, as `sam deploy` runs it), so
checkov reads every IAM statement of the roles SAM generates: it reads nothing inside
`AWS::Serverless::Function` policies. Local paths stand in for their packaged S3 locations, and a
state machine's ASL file is inlined.

    python sam_to_cfn.py TEMPLATE > OUT.json
"""

import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The template names no AWS managed policy, so none needs looking up."""

    def load(self):
        return {}


def main(path):
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    base = os.path.dirname(os.path.abspath(path))
    with open(path) as f:
        template = yaml_parse(f.read())
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        kind = resource.get("Type")
        if kind == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            props["CodeUri"] = "s3://packaged/code.zip"
        if kind == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
            with open(os.path.join(base, props.pop("DefinitionUri"))) as f:
                props["Definition"] = json.load(f)
    translated = transform(template, {}, NoManagedPolicies())
    # A function's URL (`FunctionUrlConfig`) becomes its own `AWS::Lambda::Url`: the reasons the
    # function gives checkov for its URL travel with it. Nothing else inherits them (the roles SAM
    # generates are checked in full).
    resources = translated.get("Resources", {})
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Lambda::Url":
            continue
        function = template["Resources"].get(logical_id.removesuffix("Url"), {})
        skips = function.get("Metadata", {}).get("checkov", {}).get("skip", [])
        url_skips = [s for s in skips if s.get("id") == "CKV_AWS_258"]
        if url_skips:
            resource.setdefault("Metadata", {})["checkov"] = {"skip": url_skips}
    json.dump(translated, sys.stdout, indent=1, default=str)


if __name__ == "__main__":
    main(sys.argv[1])
