// The translation refuses what it does not know, rather than deploying less than the template says.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { App } from 'aws-cdk-lib';
import { BUNDLING_STACKS } from 'aws-cdk-lib/cx-api';
import { SpotOptimizerStack } from '../lib/stack';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const TEMPLATE = readFileSync(path.join(ROOT, 'infra', 'template.yaml'), 'utf8');
const scratch = mkdtempSync(path.join(tmpdir(), 'spot-cdk-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A copy of the repository's root whose template is `template`: what the stack reads. */
function rootWith(name: string, template: string): string {
  const root = path.join(scratch, name);
  mkdirSync(path.join(root, 'infra'), { recursive: true });
  copyFileSync(path.join(ROOT, 'Cargo.toml'), path.join(root, 'Cargo.toml'));
  symlinkSync(path.join(ROOT, 'statemachines'), path.join(root, 'statemachines'));
  writeFileSync(path.join(root, 'infra', 'template.yaml'), template);
  return root;
}

function synth(root: string): SpotOptimizerStack {
  const app = new App({ outdir: path.join(root, 'cdk.out'), context: { [BUNDLING_STACKS]: [] } });
  return new SpotOptimizerStack(app, 'SpotOptimizer', { root });
}

/** The template with `line` added after the first line that is exactly `anchor`. */
function withLine(anchor: string, line: string): string {
  const lines = TEMPLATE.split('\n');
  const at = lines.indexOf(anchor);
  assert.ok(at >= 0, `no line ${anchor}`);
  return [...lines.slice(0, at + 1), line, ...lines.slice(at + 1)].join('\n');
}

test('the template as it is: 34 Rust functions and 7 state machines', () => {
  const stack = synth(rootWith('as-is', TEMPLATE));
  assert.equal(Object.keys(stack.functions).length, 34);
  assert.equal(Object.keys(stack.stateMachines).length, 7);
});

test('a function property the translation does not know stops the synth', () => {
  const root = rootWith('layers', withLine('      CodeUri: ..', '      Layers: [arn:aws:lambda:us-east-1:123456789012:layer:x:1]'));
  assert.throws(() => synth(root), /no translation for Layers/);
});

test('a state machine property the translation does not know stops the synth', () => {
  const root = rootWith('tracing', withLine('      Type: STANDARD', '      Tracing: {Enabled: true}'));
  assert.throws(() => synth(root), /no translation for Tracing/);
});

test('an event type the translation does not know stops the synth', () => {
  const root = rootWith('sqs', withLine('      Events:', '        Queue: {Type: SQS, Properties: {Queue: arn:aws:sqs:us-east-1:123456789012:q}}'));
  assert.throws(() => synth(root), /no translation for a SQS event/);
});

test('a template section or global the translation does not know stops the synth', () => {
  assert.throws(() => synth(rootWith('mappings', `${TEMPLATE}\nMappings:\n  M: {a: {b: c}}\n`)), /no translation for Mappings/);
  assert.throws(() => synth(rootWith('globals', withLine('Globals:', '  StateMachine: {Tracing: {Enabled: true}}'))), /no translation for Globals.StateMachine/);
});

test('a condition on a function, which SAM would carry to its role and rules, stops the synth', () => {
  const root = rootWith('condition', withLine('  WasteScannerFunction:', '    Condition: FanOut'));
  assert.throws(() => synth(root), /WasteScannerFunction: no translation for Condition/);
});

test('an asynchronous destination the translation does not know stops the synth', () => {
  const root = rootWith('on-success', withLine('        DestinationConfig:', '          OnSuccess: {Type: SQS, Destination: arn:aws:sqs:us-east-1:123456789012:q}'));
  assert.throws(() => synth(root), /EventInvokeConfig.DestinationConfig: no translation for OnSuccess/);
});
