// The CDK app deploys what the SAM template deploys: resources, IAM statements, environment
// variables and every other property, but for the differences listed in allowed-differences.ts.
//
// Reads target/template.cfn.json (infra/local/sam_to_cfn.py: the SAM transform, as `sam deploy`
// runs it) and target/cdk.out/SpotOptimizer.template.json (`cdk synth -c build=false`); `make lint`
// writes both first.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ALLOWED_DIFFERENCES } from './allowed-differences';
import { canonical, differences, type Difference, type Json } from './compare';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const SAM = process.env.SAM_TEMPLATE ?? path.join(ROOT, 'target', 'template.cfn.json');
const CDK = process.env.CDK_TEMPLATE ?? path.join(ROOT, 'target', 'cdk.out', 'SpotOptimizer.template.json');

type Template = { Resources: Record<string, { Type: string; Properties?: Record<string, Json> }> } & Record<string, Json>;

function load(file: string, how: string): Template {
  try {
    return canonical(JSON.parse(readFileSync(file, 'utf8'))) as Template;
  } catch (error) {
    throw new Error(`${file}: ${(error as Error).message} (${how})`);
  }
}

const sam = load(SAM, 'python infra/local/sam_to_cfn.py infra/template.yaml > target/template.cfn.json');
const cdk = load(CDK, 'cd infra/cdk && npx cdk synth -c build=false');
const all = differences(sam as unknown as Json, cdk as unknown as Json);

function excused(difference: Difference): boolean {
  return ALLOWED_DIFFERENCES.some((allowed) => allowed.path.test(difference.path));
}

function unexcused(filter: (difference: Difference) => boolean): string[] {
  return all
    .filter((d) => filter(d) && !excused(d))
    .map((d) => `${d.path}\n    sam: ${JSON.stringify(d.sam)}\n    cdk: ${JSON.stringify(d.cdk)}`);
}

function ofType(template: Template, ...types: string[]): string[] {
  return Object.keys(template.Resources).filter((id) => types.includes(template.Resources[id].Type));
}

test('the same resources: every logical id with the same type', () => {
  const types = (t: Template) => Object.fromEntries(Object.entries(t.Resources).map(([id, r]) => [id, r.Type]));
  assert.deepEqual(types(cdk), types(sam));
  // What is compared below exists on both sides: 34 functions, 7 state machines, their roles.
  assert.equal(ofType(sam, 'AWS::Lambda::Function').length, 34);
  assert.equal(ofType(sam, 'AWS::StepFunctions::StateMachine').length, 7);
});

test('the same IAM statements: every role, managed policy, permission and queue or bus policy', () => {
  const iam = new Set(ofType(sam, 'AWS::IAM::Role', 'AWS::IAM::ManagedPolicy', 'AWS::Lambda::Permission', 'AWS::SQS::QueuePolicy', 'AWS::Events::EventBusPolicy'));
  assert.ok(iam.size > 50, `only ${iam.size} IAM resources`);
  assert.deepEqual(unexcused((d) => iam.has(d.path.split('.')[1])), []);
});

test('the same environment variables, function by function', () => {
  const functions = ofType(sam, 'AWS::Lambda::Function');
  for (const id of functions) {
    const variables = (f: Template) => (f.Resources[id].Properties?.Environment as { Variables: Json } | undefined)?.Variables;
    assert.deepEqual(variables(cdk), variables(sam), id);
  }
});

test('every other difference is listed, with its reason', () => {
  assert.deepEqual(unexcused(() => true), []);
});

test('every listed difference still occurs', () => {
  const stale = ALLOWED_DIFFERENCES.filter((allowed) => !all.some((d) => allowed.path.test(d.path))).map((a) => a.path.source);
  assert.deepEqual(stale, []);
});
