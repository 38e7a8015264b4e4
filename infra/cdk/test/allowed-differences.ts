// Where the CDK app's template may differ from the SAM template's (after the transform), and why.
// test/equivalence.test.ts fails on any other difference, and on an entry here that no longer
// matches one (so this list cannot outlive what it excuses).
//
// Paths: `Resources.<logical id>.<property path>`, list items by index, tags by key.
export interface AllowedDifference {
  readonly path: RegExp;
  readonly reason: string;
}

const FUNCTION = '[A-Za-z]+Function';

export const ALLOWED_DIFFERENCES: AllowedDifference[] = [
  {
    path: new RegExp(`^Resources\\.${FUNCTION}\\.Properties\\.Code\\.S3(Bucket|Key)$`),
    reason:
      'Where the binary is uploaded: SAM packages to the bucket `sam deploy` names, CDK to its bootstrap bucket (cargo-lambda-cdk builds the same binary, release, arm64).',
  },
  {
    path: /^Parameters\.BootstrapVersion$|^Rules\.CheckBootstrapVersion$/,
    reason: 'CDK checks that the account was bootstrapped (`cdk bootstrap`) with a version that can publish its assets.',
  },
  {
    path: new RegExp(`^Resources\\.${FUNCTION}(EventInvokeConfig)?\\.Metadata(\\.BuildMethod|\\.BuildProperties)?$`),
    reason:
      "`sam build`'s instructions (BuildMethod rust-cargolambda, the binary), which SAM also copies onto the function's EventInvokeConfig; cargo-lambda-cdk builds at synth. The checkov reasons are kept on the functions.",
  },
  {
    path: /^Resources\.[A-Za-z]+\.Properties\.Tags(\.lambda:createdBy|\.stateMachine:createdBy)?$/,
    reason: "SAM's own mark (`lambda:createdBy: SAM`, `stateMachine:createdBy: SAM`) on the resources it generates; the template's own tags are the same.",
  },
  {
    path: new RegExp(`^Resources\\.${FUNCTION}\\.DependsOn$`),
    reason: "CDK's Function waits for its role explicitly; the `Fn::GetAtt` of the role's ARN already orders them the same way.",
  },
  {
    path: new RegExp(`^Resources\\.${FUNCTION}Role\\.Properties\\.ManagedPolicyArns\\.0$`),
    reason:
      'AWSLambdaBasicExecutionRole: CDK builds its ARN with the stack\'s partition (`arn:${AWS::Partition}:iam::aws:policy/...`), SAM writes the one of the region it transformed in (aws); the same policy.',
  },
  {
    path: /^Resources\.[A-Za-z]+StateMachineRole\.Properties\.ManagedPolicyArns$/,
    reason: 'SAM writes an empty list of managed policies on a state machine role, CDK none: no managed policy either way.',
  },
  {
    path: /^Resources\.ApprovalLinkFunction(Url\.Properties\.TargetFunctionArn|UrlPublicPermissions\.Properties\.FunctionName|URLInvokeAllowPublicAccess\.Properties\.FunctionName)$/,
    reason: "The approval link's URL and its two public permissions name the function by ARN (CDK) or by name (SAM); Lambda accepts either.",
  },
];
