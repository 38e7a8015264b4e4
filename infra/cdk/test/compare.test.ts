// The comparison itself: what it treats as the same, and where it reports a difference.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonical, differences, type Json } from './compare';

const statement = (action: Json, resource: Json): Json => ({ Resources: { R: { Type: 'AWS::IAM::Role', Properties: { P: { Effect: 'Allow', Action: action, Resource: resource } } } } });

test('IAM reads one action or resource alone as a list of one', () => {
  assert.deepEqual(differences(canonical(statement('s3:GetObject', '*')), canonical(statement(['s3:GetObject'], ['*']))), []);
  assert.deepEqual(differences(canonical(statement('s3:GetObject', { Ref: 'B' })), canonical(statement('s3:GetObject', [{ Ref: 'B' }]))), []);
});

test('a different action is a difference at its path', () => {
  const found = differences(canonical(statement('s3:GetObject', '*')), canonical(statement('s3:*', '*')));
  assert.deepEqual(found, [{ path: 'Resources.R.Properties.P.Action.0', sam: 's3:GetObject', cdk: 's3:*' }]);
});

test('tags in any order are the same; a missing tag is a difference named by its key', () => {
  const tagged = (...tags: [string, string][]) => ({ Resources: { F: { Type: 'T', Properties: { Tags: tags.map(([Key, Value]) => ({ Key, Value })) } } } });
  assert.deepEqual(differences(canonical(tagged(['a', '1'], ['b', '2'])), canonical(tagged(['b', '2'], ['a', '1']))), []);
  const found = differences(canonical(tagged(['a', '1'], ['b', '2'])), canonical(tagged(['a', '1'])));
  assert.deepEqual(found, [{ path: 'Resources.F.Properties.Tags.b', sam: '2', cdk: undefined }]);
});

test('a state machine definition joined from lines equals the same definition written whole', () => {
  const machine = (definition: Json): Json => ({ Resources: { M: { Type: 'AWS::StepFunctions::StateMachine', Properties: { DefinitionString: definition } } } });
  const whole = JSON.stringify({ StartAt: 'A', States: { A: { Type: 'Pass', End: true } } }, null, 2);
  assert.deepEqual(differences(canonical(machine({ 'Fn::Join': ['\n', whole.split('\n')] })), canonical(machine(whole))), []);
  const other = JSON.stringify({ StartAt: 'A', States: { A: { Type: 'Succeed' } } });
  assert.equal(differences(canonical(machine(whole)), canonical(machine(other))).length, 2);
});

test('a resource on one side only is one difference, the whole resource', () => {
  const found = differences({ Resources: { A: { Type: 'T' } } }, { Resources: {} });
  assert.deepEqual(found, [{ path: 'Resources.A', sam: { Type: 'T' }, cdk: undefined }]);
});
