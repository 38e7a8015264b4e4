// The Spot optimizer's stack for CDK users, built from infra/template.yaml (lib/sam.ts): the
// parameters, conditions, tables, policies, alarms and outputs are taken as they are written; each
// `AWS::Serverless::Function` becomes a `RustFunction` (cargo-lambda-cdk builds its binary) with
// the role, schedules and destinations SAM would have made for it; each
// `AWS::Serverless::StateMachine` reads its ASL file from statemachines/. What differs from what
// `sam deploy` deploys, and why, is listed in test/allowed-differences.ts.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  CfnCondition,
  CfnOutput,
  CfnParameter,
  CfnResource,
  CfnRule,
  Duration,
  Stack,
  Tags,
  Token,
  Validations,
  type CfnParameterProps,
  type ICfnConditionExpression,
  type StackProps,
} from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { RustFunction } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';
import { readSamTemplate, resourcesOf, type Resource, type SamTemplate, type Value } from './sam';

export interface SpotOptimizerStackProps extends StackProps {
  /** The repository's root: the Cargo workspace, infra/template.yaml, statemachines/. */
  readonly root: string;
}

type Props = Record<string, Value>;

/** What the translation understands of a SAM function or state machine; anything else stops the synth. */
const FUNCTION_PROPERTIES = new Set([
  'Architectures', 'CodeUri', 'Description', 'Environment', 'EventInvokeConfig', 'Events', 'FunctionUrlConfig',
  'Handler', 'LoggingConfig', 'MemorySize', 'Policies', 'ReservedConcurrentExecutions', 'Runtime', 'Tags', 'Timeout',
]);
const STATE_MACHINE_PROPERTIES = new Set([
  'DefinitionSubstitutions', 'DefinitionUri', 'Events', 'Logging', 'Name', 'Policies', 'Type',
]);

/** A SAM resource's attributes: a `Condition` or `DependsOn` on one would need carrying to each resource it makes. */
const SERVERLESS_ATTRIBUTES = new Set(['Type', 'Properties', 'Metadata']);

export class SpotOptimizerStack extends Stack {
  /** Every function, by its logical id in the template (`WasteScannerFunction`, ...). */
  readonly functions: Record<string, lambda.Function> = {};
  /** Every state machine, by its logical id in the template. */
  readonly stateMachines: Record<string, sfn.CfnStateMachine> = {};
  private readonly conditions: Record<string, CfnCondition> = {};
  private readonly root: string;
  private readonly templateDir: string;

  constructor(scope: Construct, id: string, props: SpotOptimizerStackProps) {
    super(scope, id, props);
    this.root = path.resolve(props.root);
    this.templateDir = path.join(this.root, 'infra');
    const template = readSamTemplate(path.join(this.templateDir, 'template.yaml'));
    // CDK's template check reads an `Fn::If` branch without its condition: both are false positives.
    Validations.of(this).acknowledge(
      {
        id: 'CloudFormation-Validate::W1030',
        reason: 'AlarmActions: the AlarmTopicArn branch is taken only when that parameter is not empty (HasAlarmTopic)',
      },
      {
        id: 'CloudFormation-Validate::W1001',
        reason: 'The topic outputs name the created topic only when the stack creates it (CreateAlarmTopic, CreateNoticeTopic)',
      },
    );
    this.templateOptions.templateFormatVersion = '2010-09-09';
    this.templateOptions.description = template.Description;

    for (const [name, parameter] of Object.entries(template.Parameters)) {
      new CfnParameter(this, name, camelCase(parameter) as CfnParameterProps);
    }
    for (const [name, rule] of Object.entries(template.Rules ?? {})) {
      new CfnRule(this, name, {
        ruleCondition: raw(rule.RuleCondition),
        assertions: rule.Assertions.map((a) => ({ assert: raw(a.Assert), assertDescription: a.AssertDescription ?? '' })),
      });
    }
    for (const [name, expression] of Object.entries(template.Conditions)) {
      this.conditions[name] = new CfnCondition(this, name, { expression: raw(expression) });
    }
    const serverless = Object.values(template.Resources).map((r) => r.Type).filter((t) => t.startsWith('AWS::Serverless::'));
    const untranslated = serverless.filter((t) => t !== 'AWS::Serverless::Function' && t !== 'AWS::Serverless::StateMachine');
    if (untranslated.length > 0) throw new Error(`no translation for ${untranslated.join(', ')}; teach infra/cdk/lib/stack.ts`);
    for (const [name, resource] of Object.entries(template.Resources)) {
      if (!resource.Type.startsWith('AWS::Serverless::')) this.plain(name, resource);
    }
    for (const [name, resource] of resourcesOf(template, 'AWS::Serverless::Function')) {
      this.rustFunction(template, name, resource);
    }
    for (const [name, resource] of resourcesOf(template, 'AWS::Serverless::StateMachine')) {
      this.stateMachine(name, resource);
    }
    // Outputs have names of their own in CloudFormation (`NoticeTopicArn` is a parameter and an output).
    const outputs = new Construct(this, 'Outputs');
    for (const [name, output] of Object.entries(template.Outputs)) {
      const out = new CfnOutput(outputs, name, {
        value: Token.asString(output.Value),
        description: output.Description,
        exportName: output.Export ? Token.asString(output.Export.Name) : undefined,
      });
      out.overrideLogicalId(name);
      if (output.Condition) out.condition = this.condition(output.Condition);
    }
  }

  /** A CloudFormation resource, as written. */
  private plain(name: string, resource: Resource): void {
    const cfn = new CfnResource(this, name, { type: resource.Type, properties: resource.Properties as Props });
    this.options(cfn, resource);
  }

  private options(cfn: CfnResource, resource: Resource): void {
    if (resource.Condition) cfn.cfnOptions.condition = this.condition(resource.Condition);
    if (resource.Metadata) cfn.cfnOptions.metadata = resource.Metadata;
    if (resource.DeletionPolicy) cfn.addOverride('DeletionPolicy', resource.DeletionPolicy);
    if (resource.UpdateReplacePolicy) cfn.addOverride('UpdateReplacePolicy', resource.UpdateReplacePolicy);
    if (resource.DependsOn) cfn.addOverride('DependsOn', resource.DependsOn);
  }

  private condition(name: string): CfnCondition {
    const condition = this.conditions[name];
    if (!condition) throw new Error(`unknown condition ${name}`);
    return condition;
  }

  /** A SAM function: the binary its `BuildProperties.Binary` names, its role, events and destinations. */
  private rustFunction(template: SamTemplate, name: string, resource: Resource): void {
    const props: Props = { ...template.Globals.Function, ...resource.Properties };
    unknownProperties(name, resource as unknown as Props, SERVERLESS_ATTRIBUTES);
    unknownProperties(name, props, FUNCTION_PROPERTIES);
    const binary = (resource.Metadata?.BuildProperties as { Binary?: string } | undefined)?.Binary;
    if (!binary) throw new Error(`${name}: no Metadata.BuildProperties.Binary`);
    if (props.CodeUri !== '..') throw new Error(`${name}: CodeUri ${String(props.CodeUri)}, expected the workspace (..)`);
    if (props.Handler !== 'bootstrap' || props.Runtime !== 'provided.al2023') {
      throw new Error(`${name}: a Rust function runs bootstrap on provided.al2023`);
    }

    const policies = (props.Policies ?? []) as Value[];
    const role = this.role(`${name}Role`, 'lambda.amazonaws.com', policies, {
      managed: [iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AWSLambdaBasicExecutionRole')],
      extra: this.destinationPolicy(name, props.EventInvokeConfig as Props | undefined),
    });

    const logging = props.LoggingConfig as Props;
    unknownProperties(`${name}.LoggingConfig`, logging, new Set(['LogFormat', 'ApplicationLogLevel', 'SystemLogLevel']));
    const fn = new RustFunction(this, name, {
      manifestPath: path.join(this.root, 'Cargo.toml'),
      binaryName: binary,
      architecture: architecture(props.Architectures as string[]),
      bundling: { environment: { CARGO_TARGET_DIR: path.join(this.root, 'target', 'release-lambda') } },
      description: props.Description as string,
      memorySize: props.MemorySize as number,
      timeout: Duration.seconds(props.Timeout as number),
      role,
      environment: stringValues(((props.Environment as Props | undefined)?.Variables ?? {}) as Props),
      reservedConcurrentExecutions:
        props.ReservedConcurrentExecutions === undefined ? undefined : Token.asNumber(props.ReservedConcurrentExecutions),
      loggingFormat: logging.LogFormat as lambda.LoggingFormat,
      applicationLogLevelV2: Token.asString(logging.ApplicationLogLevel) as lambda.ApplicationLogLevel,
      systemLogLevelV2: logging.SystemLogLevel as lambda.SystemLogLevel,
    });
    const cfn = fn.node.defaultChild as lambda.CfnFunction;
    cfn.overrideLogicalId(name);
    const checkov = resource.Metadata?.checkov;
    if (checkov) cfn.cfnOptions.metadata = { checkov };
    for (const [key, value] of Object.entries((props.Tags ?? {}) as Record<string, string>)) {
      Tags.of(fn).add(key, value);
      Tags.of(role).add(key, value);
    }
    this.functions[name] = fn;

    this.asyncInvocations(name, fn, props.EventInvokeConfig as Props | undefined);
    if (props.FunctionUrlConfig) this.url(name, fn, props.FunctionUrlConfig as Props, checkov);
    for (const [event, spec] of Object.entries((props.Events ?? {}) as Record<string, { Type: string; Properties: Props }>)) {
      this.functionEvent(name, fn, event, spec.Type, spec.Properties);
    }
  }

  /**
   * A role as SAM makes it: `Ref`s are managed policies; a policy document is an inline policy named
   * `<role>Policy<index>`, kept as written (a statement may be conditional, `Fn::If`, which CDK's
   * `PolicyStatement` cannot hold); a `LambdaInvokePolicy` may invoke that function and its versions.
   * CDK users can still grant more: `role.addToPrincipalPolicy` adds a policy of its own.
   */
  private role(id: string, service: string, policies: Value[], more: { managed?: iam.IManagedPolicy[]; extra?: Props[] } = {}): iam.Role {
    const managed = [...(more.managed ?? [])];
    const inline: Props[] = [...(more.extra ?? [])];
    policies.forEach((policy, index) => {
      const p = policy as Props;
      const policyName = `${id}Policy${index}`;
      if ('Ref' in p) {
        managed.push(iam.ManagedPolicy.fromManagedPolicyArn(this, `${id}Uses${String(p.Ref)}`, Token.asString(p)));
      } else if ('Statement' in p) {
        inline.push({ PolicyName: policyName, PolicyDocument: p });
      } else if ('LambdaInvokePolicy' in p) {
        const functionName = (p.LambdaInvokePolicy as Props).FunctionName;
        const arn = 'arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${functionName}*';
        inline.push({
          PolicyName: policyName,
          PolicyDocument: {
            Statement: [{ Action: ['lambda:InvokeFunction'], Effect: 'Allow', Resource: { 'Fn::Sub': [arn, { functionName }] } }],
          },
        });
      } else {
        throw new Error(`${id}: no translation for the policy ${JSON.stringify(p).slice(0, 80)}`);
      }
    });
    const role = new iam.Role(this, id, { assumedBy: new iam.ServicePrincipal(service), managedPolicies: managed });
    const cfn = role.node.defaultChild as iam.CfnRole;
    cfn.overrideLogicalId(id);
    if (inline.length > 0) cfn.addPropertyOverride('Policies', inline);
    return role;
  }

  /** Failed asynchronous invocations go to the queue the template names (SAM's `EventInvokeConfig`). */
  private destinationPolicy(name: string, config: Props | undefined): Props[] {
    const onFailure = (config?.DestinationConfig as Props | undefined)?.OnFailure as Props | undefined;
    if (!onFailure) return [];
    if (onFailure.Type !== 'SQS') throw new Error(`${name}: no translation for an ${String(onFailure.Type)} destination`);
    return [
      {
        PolicyName: `${name}EventInvokeConfigOnFailureSQSPolicy`,
        PolicyDocument: { Statement: [{ Action: 'sqs:SendMessage', Effect: 'Allow', Resource: onFailure.Destination }] },
      },
    ];
  }

  private asyncInvocations(name: string, fn: lambda.Function, config: Props | undefined): void {
    if (!config) return;
    unknownProperties(`${name}.EventInvokeConfig`, config, new Set(['MaximumRetryAttempts', 'MaximumEventAgeInSeconds', 'DestinationConfig']));
    unknownProperties(`${name}.EventInvokeConfig.DestinationConfig`, config.DestinationConfig as Props, new Set(['OnFailure']));
    const onFailure = (config.DestinationConfig as Props).OnFailure as Props;
    new lambda.CfnEventInvokeConfig(this, `${name}EventInvokeConfig`, {
      functionName: fn.functionName,
      qualifier: '$LATEST',
      maximumRetryAttempts: config.MaximumRetryAttempts as number | undefined,
      maximumEventAgeInSeconds: config.MaximumEventAgeInSeconds as number | undefined,
      destinationConfig: { onFailure: { destination: Token.asString(onFailure.Destination) } },
    }).overrideLogicalId(`${name}EventInvokeConfig`);
  }

  /** A function URL (the approval links): the URL, and the two permissions a public URL needs. */
  private url(name: string, fn: lambda.Function, config: Props, checkov: Value): void {
    if (config.AuthType !== 'NONE' || Object.keys(config).length !== 1) throw new Error(`${name}: only FunctionUrlConfig {AuthType: NONE} is translated`);
    const url = fn.addFunctionUrl({ authType: lambda.FunctionUrlAuthType.NONE });
    const cfn = url.node.defaultChild as lambda.CfnUrl;
    cfn.overrideLogicalId(`${name}Url`);
    const skips = ((checkov as { skip?: { id: string }[] } | undefined)?.skip ?? []).filter((s) => s.id === 'CKV_AWS_258');
    if (skips.length > 0) cfn.cfnOptions.metadata = { checkov: { skip: skips } };
    for (const child of fn.node.children) {
      if (!(child instanceof lambda.CfnPermission)) continue;
      const permission = child;
      const action = permission.action;
      if (action === 'lambda:InvokeFunctionUrl') permission.overrideLogicalId(`${name}UrlPublicPermissions`);
      else if (action === 'lambda:InvokeFunction') permission.overrideLogicalId(`${name}URLInvokeAllowPublicAccess`);
    }
  }

  /** A `Schedule` or `EventBridgeRule` event: the rule, its target and the permission to invoke. */
  private functionEvent(name: string, fn: lambda.Function, event: string, type: string, props: Props): void {
    const id = `${name}${event}`;
    const target: events.CfnRule.TargetProperty = {
      arn: fn.functionArn,
      id: targetId(id, 'LambdaTarget'),
      retryPolicy: props.RetryPolicy ? (camelCase(props.RetryPolicy as Props) as events.CfnRule.RetryPolicyProperty) : undefined,
      deadLetterConfig: props.DeadLetterConfig
        ? { arn: Token.asString((props.DeadLetterConfig as Props).Arn) }
        : undefined,
    };
    const rule = this.eventRule(id, type, props, [target], ['Schedule', 'Description', 'State', 'Pattern', 'RetryPolicy', 'DeadLetterConfig']);
    const permission = new lambda.CfnPermission(this, `${id}Permission`, {
      action: 'lambda:InvokeFunction',
      functionName: fn.functionName,
      principal: 'events.amazonaws.com',
      sourceArn: rule.attrArn,
    });
    permission.overrideLogicalId(`${id}Permission`);
  }

  private eventRule(id: string, type: string, props: Props, targets: events.CfnRule.TargetProperty[], known: string[]): events.CfnRule {
    if (type !== 'Schedule' && type !== 'EventBridgeRule') throw new Error(`${id}: no translation for a ${type} event`);
    unknownProperties(id, props, new Set(known));
    const rule = new events.CfnRule(this, id, {
      description: props.Description as string | undefined,
      scheduleExpression: type === 'Schedule' ? Token.asString(props.Schedule) : undefined,
      eventPattern: type === 'EventBridgeRule' ? props.Pattern : undefined,
      state: props.State === undefined ? undefined : Token.asString(props.State),
      targets,
    });
    rule.overrideLogicalId(id);
    return rule;
  }

  /** A SAM state machine: its ASL file with the substitutions, its role and its schedules. */
  private stateMachine(name: string, resource: Resource): void {
    const props = resource.Properties as Props;
    unknownProperties(name, resource as unknown as Props, SERVERLESS_ATTRIBUTES);
    unknownProperties(name, props, STATE_MACHINE_PROPERTIES);
    const definition = JSON.parse(readFileSync(path.join(this.templateDir, props.DefinitionUri as string), 'utf8'));
    const role = this.role(`${name}Role`, 'states.amazonaws.com', (props.Policies ?? []) as Value[]);
    const logging = props.Logging as Props;
    const machine = new sfn.CfnStateMachine(this, name, {
      stateMachineName: Token.asString(props.Name),
      stateMachineType: props.Type as string,
      roleArn: role.roleArn,
      definitionString: JSON.stringify(definition, null, 2),
      definitionSubstitutions: stringValues((props.DefinitionSubstitutions ?? {}) as Props),
      loggingConfiguration: {
        level: logging.Level as string,
        includeExecutionData: logging.IncludeExecutionData as boolean,
        destinations: (logging.Destinations as Props[]).map((d) => ({
          cloudWatchLogsLogGroup: { logGroupArn: Token.asString((d.CloudWatchLogsLogGroup as Props).LogGroupArn) },
        })),
      },
    });
    machine.overrideLogicalId(name);
    this.stateMachines[name] = machine;

    for (const [event, spec] of Object.entries((props.Events ?? {}) as Record<string, { Type: string; Properties: Props }>)) {
      const id = `${name}${event}`;
      // EventBridge starts the execution with a role of its own that may start only this machine.
      const starter = this.role(`${id}Role`, 'events.amazonaws.com', [], {
        extra: [
          {
            PolicyName: `${id}RoleStartExecutionPolicy`,
            PolicyDocument: { Statement: [{ Action: 'states:StartExecution', Effect: 'Allow', Resource: { Ref: name } }] },
          },
        ],
      });
      this.eventRule(id, spec.Type, spec.Properties, [{ arn: machine.ref, id: targetId(id, 'StepFunctionsTarget'), roleArn: starter.roleArn }], [
        'Schedule',
        'Description',
        'State',
      ]);
    }
  }
}

/** A value written in the template, handed to CDK as it is (an intrinsic function stays one). */
function raw(value: Value): ICfnConditionExpression {
  return value as ICfnConditionExpression;
}

/** An EventBridge target's id, at most 64 characters: the rule's id cut short before the suffix, as SAM does. */
function targetId(rule: string, suffix: string): string {
  return rule.slice(0, 64 - suffix.length) + suffix;
}

function stringValues(values: Props): Record<string, string> {
  return Object.fromEntries(Object.entries(values).map(([key, value]) => [key, Token.asString(value)]));
}

function camelCase(values: Props): Props {
  return Object.fromEntries(Object.entries(values).map(([key, value]) => [key[0].toLowerCase() + key.slice(1), value]));
}

function architecture(architectures: string[]): lambda.Architecture {
  if (architectures.length !== 1) throw new Error(`one architecture per function, not ${architectures.join(', ')}`);
  return architectures[0] === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64;
}

function unknownProperties(name: string, props: Props, known: Set<string>): void {
  const unknown = Object.keys(props).filter((key) => !known.has(key));
  if (unknown.length > 0) throw new Error(`${name}: no translation for ${unknown.join(', ')}; teach infra/cdk/lib/stack.ts`);
}
