// Compares two CloudFormation templates: what `sam deploy` would deploy (infra/template.yaml after
// the SAM transform) and what `cdk deploy` would (the CDK app's synth).
import { isDeepStrictEqual } from 'node:util';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** One place where the two templates differ: a path like `Resources.X.Properties.Code`. */
export interface Difference {
  readonly path: string;
  readonly sam: Json | undefined;
  readonly cdk: Json | undefined;
}

/**
 * Both templates in one form, so that only what CloudFormation or IAM would read differently remains:
 * - an IAM statement's `Action`, `NotAction`, `Resource`, `NotResource` and `Principal.Service` as a
 *   list (IAM reads `"x"` and `["x"]` alike; SAM writes lists, CDK a string for one);
 * - `Tags` as a map from key to value (a set to CloudFormation, in any order);
 * - a state machine's `DefinitionString` parsed (SAM joins the file's lines, CDK writes it whole).
 */
export function canonical(template: Json): Json {
  const copy = structuredClone(template) as { [key: string]: Json };
  const resources = (copy.Resources ?? {}) as { [key: string]: { [key: string]: Json } };
  for (const resource of Object.values(resources)) {
    const props = resource.Properties as { [key: string]: Json } | undefined;
    if (resource.Type === 'AWS::StepFunctions::StateMachine' && props?.DefinitionString !== undefined) {
      props.DefinitionString = JSON.parse(definitionText(props.DefinitionString));
    }
  }
  return walk(copy);
}

function definitionText(value: Json): string {
  if (typeof value === 'string') return value;
  const join = (value as { 'Fn::Join'?: [string, Json[]] })['Fn::Join'];
  if (join && join[1].every((part) => typeof part === 'string')) return join[1].join(join[0]);
  throw new Error(`a DefinitionString that is not text: ${JSON.stringify(value).slice(0, 120)}`);
}

function walk(value: Json): Json {
  if (Array.isArray(value)) return value.map(walk);
  if (value === null || typeof value !== 'object') return value;
  const out: { [key: string]: Json } = {};
  for (const [key, child] of Object.entries(value)) out[key] = walk(child);
  if ('Effect' in out) {
    for (const key of ['Action', 'NotAction', 'Resource', 'NotResource']) {
      if (typeof out[key] === 'string' || isIntrinsic(out[key])) out[key] = [out[key]];
    }
    const principal = out.Principal as { [key: string]: Json } | undefined;
    if (principal && typeof principal.Service === 'string') principal.Service = [principal.Service];
  }
  if (Array.isArray(out.Tags) && out.Tags.every((t) => typeof t === 'object' && t !== null && 'Key' in t)) {
    const tags = out.Tags as { Key: string; Value: Json }[];
    out.Tags = Object.fromEntries(tags.map((t) => [t.Key, t.Value]));
  }
  return out;
}

function isIntrinsic(value: Json | undefined): boolean {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const keys = Object.keys(value);
  return keys.length === 1 && (keys[0] === 'Ref' || keys[0].startsWith('Fn::'));
}

/** Every difference, as deep as both sides are objects with the same keys or lists of one length. */
export function differences(sam: Json | undefined, cdk: Json | undefined, path = ''): Difference[] {
  if (isDeepStrictEqual(sam, cdk)) return [];
  const bothObjects =
    sam !== null && cdk !== null && typeof sam === 'object' && typeof cdk === 'object' && Array.isArray(sam) === Array.isArray(cdk);
  if (!bothObjects || (Array.isArray(sam) && Array.isArray(cdk) && sam.length !== cdk.length) || isIntrinsic(sam) || isIntrinsic(cdk)) {
    return [{ path, sam, cdk }];
  }
  const a = sam as { [key: string]: Json };
  const b = cdk as { [key: string]: Json };
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
  return keys.flatMap((key) => differences(a[key], b[key], path ? `${path}.${key}` : key));
}
