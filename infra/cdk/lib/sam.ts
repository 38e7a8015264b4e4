// Reads infra/template.yaml, the one description of the stack: the CDK app builds from it, so the
// two deployments cannot drift (test/equivalence.test.ts compares what each would deploy).
import { readFileSync } from 'node:fs';
import { parse, type Scalar, type ScalarTag, type CollectionTag, type YAMLSeq } from 'yaml';

/** A CloudFormation value: literals and intrinsic functions in their long JSON form. */
export type Value = unknown;

export interface Resource {
  readonly Type: string;
  readonly Properties?: Record<string, Value>;
  readonly Metadata?: Record<string, Value>;
  readonly Condition?: string;
  readonly DependsOn?: string | string[];
  readonly DeletionPolicy?: string;
  readonly UpdateReplacePolicy?: string;
}

export interface SamTemplate {
  readonly Description: string;
  readonly Parameters: Record<string, Record<string, Value>>;
  readonly Rules: Record<string, { RuleCondition?: Value; Assertions: { Assert: Value; AssertDescription?: string }[] }>;
  readonly Conditions: Record<string, Value>;
  readonly Globals: { Function: Record<string, Value> };
  readonly Resources: Record<string, Resource>;
  readonly Outputs: Record<string, { Value: Value; Description?: string; Condition?: string; Export?: { Name: Value } }>;
}

// The short forms the YAML uses (`!Ref X`, `!GetAtt A.B`, `!Sub ...`), as CloudFormation reads them.
const FUNCTIONS = ['And', 'Base64', 'Cidr', 'Equals', 'FindInMap', 'GetAZs', 'If', 'ImportValue', 'Join', 'Not', 'Or', 'Select', 'Split', 'Sub'];

function longForm(name: string, value: Value): Value {
  if (name === 'Ref' || name === 'Condition') return { [name]: value };
  if (name === 'GetAtt' && typeof value === 'string') {
    const dot = value.indexOf('.');
    return { 'Fn::GetAtt': [value.slice(0, dot), value.slice(dot + 1)] };
  }
  return { [`Fn::${name}`]: value };
}

const TAGS: (ScalarTag | CollectionTag)[] = ['Ref', 'Condition', 'GetAtt', ...FUNCTIONS].flatMap((name) => [
  { tag: `!${name}`, resolve: (text: string) => longForm(name, text) } as ScalarTag,
  { tag: `!${name}`, collection: 'seq', resolve: (seq: YAMLSeq) => longForm(name, seq.toJSON()) } as unknown as CollectionTag,
  { tag: `!${name}`, collection: 'map', resolve: (map: Scalar) => longForm(name, map.toJSON()) } as unknown as CollectionTag,
]);

export function readSamTemplate(path: string): SamTemplate {
  const template = parse(readFileSync(path, 'utf8'), { customTags: TAGS, maxAliasCount: -1 }) as SamTemplate;
  for (const section of ['Parameters', 'Conditions', 'Resources', 'Outputs', 'Globals'] as const) {
    if (typeof template[section] !== 'object') throw new Error(`${path}: no ${section} section`);
  }
  // What the CDK app carries over; a section or global it does not know would be lost, so it stops.
  const sections = ['AWSTemplateFormatVersion', 'Transform', 'Description', 'Parameters', 'Rules', 'Conditions', 'Globals', 'Resources', 'Outputs'];
  const unknown = [
    ...Object.keys(template).filter((key) => !sections.includes(key)),
    ...Object.keys(template.Globals).filter((key) => key !== 'Function').map((key) => `Globals.${key}`),
  ];
  if (unknown.length > 0) throw new Error(`${path}: no translation for ${unknown.join(', ')}; teach infra/cdk/lib/sam.ts`);
  return template;
}

/** The resources of one type, in the template's order. */
export function resourcesOf(template: SamTemplate, type: string): [string, Resource][] {
  return Object.entries(template.Resources).filter(([, resource]) => resource.Type === type);
}
