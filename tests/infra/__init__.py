"""Tests of the CDK app: synthesized templates, cdk-nag, cfn-lint and the pinned CDK CLI."""
