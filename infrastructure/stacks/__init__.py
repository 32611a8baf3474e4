"""The collections CDK app: one construct per concern, composed into stacks per environment."""
