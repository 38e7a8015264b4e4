#!/usr/bin/env node
// `cdk deploy` from infra/cdk/: the stack infra/template.yaml describes, for platforms built on CDK.
//
//   cdk deploy -c stackName=spot-optimizer --parameters OptimizerMode=shadow ...
//   cdk synth -c build=false     (no binaries built: to read or compare the template, not to deploy)
import * as path from 'node:path';
import { App, DefaultStackSynthesizer } from 'aws-cdk-lib';
import { BUNDLING_STACKS } from 'aws-cdk-lib/cx-api';
import { SpotOptimizerStack } from '../lib/stack';

const app = new App();
if (app.node.tryGetContext('build') === 'false') app.node.setContext(BUNDLING_STACKS, []);
const stackName: string = app.node.tryGetContext('stackName') ?? 'spot-optimizer';
new SpotOptimizerStack(app, 'SpotOptimizer', {
  stackName,
  root: path.resolve(__dirname, '..', '..', '..'),
  synthesizer: new DefaultStackSynthesizer(),
});
app.synth();
