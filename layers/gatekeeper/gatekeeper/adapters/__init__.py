"""Adapters between the domain and AWS (ECR, DynamoDB, SNS, S3)."""
