#!/usr/bin/env python3
"""Prepares a moto server for CarbonStore's AWS integration tests, as an operator would prepare AWS.

With the first few requests unauthenticated (moto's INITIAL_NO_AUTH_ACTION_COUNT), it creates an
admin user; with the admin's keys it then creates the bucket, the lock table, and an IAM user whose
only policy is the engine's least-privilege policy, as printed by `carbonstore aws policy`. It writes
shell `export` lines for the tests to stdout.

Usage: aws_test_env.py ENDPOINT CARBONSTORE_BINARY
"""
import json
import subprocess
import sys

import boto3

# Requests made before IAM enforcement starts; scripts/test.sh passes the same number to moto.
UNAUTHENTICATED_SETUP_REQUESTS = 4

endpoint, binary = sys.argv[1], sys.argv[2]
region = "us-east-1"
bucket = "carbonstore-test"
table = "carbonstore-locks"


def client(service, key_id, secret):
    return boto3.client(service, endpoint_url=endpoint, region_name=region,
                        aws_access_key_id=key_id, aws_secret_access_key=secret)


# 1. The admin, made while moto still lets requests through unauthenticated (4 requests).
bootstrap = client("iam", "AKIABOOTSTRAP0000000", "bootstrap")
bootstrap.create_user(UserName="admin")
admin_key = bootstrap.create_access_key(UserName="admin")["AccessKey"]
admin_policy = bootstrap.create_policy(
    PolicyName="admin-all",
    PolicyDocument=json.dumps({"Version": "2012-10-17",
                               "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
bootstrap.attach_user_policy(UserName="admin", PolicyArn=admin_policy["Policy"]["Arn"])

# 2. Everything else with the admin's keys: from here on every request is authenticated.
admin = (admin_key["AccessKeyId"], admin_key["SecretAccessKey"])
client("s3", *admin).create_bucket(Bucket=bucket)
client("dynamodb", *admin).create_table(
    TableName=table, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")

# moto checks DynamoDB permissions against the resource "*" only, so the test policy scopes the
# DynamoDB statement to "*" and the S3 statements to the bucket, as the real policy does.
policy = subprocess.run([binary, "aws", "policy", "--bucket", bucket, "--table", table, "--table-arn", "*"],
                        check=True, capture_output=True, text=True).stdout
iam = client("iam", *admin)
iam.create_user(UserName="carbonstore-engine")
engine_key = iam.create_access_key(UserName="carbonstore-engine")["AccessKey"]
engine_policy = iam.create_policy(PolicyName="carbonstore-engine", PolicyDocument=policy)
iam.attach_user_policy(UserName="carbonstore-engine", PolicyArn=engine_policy["Policy"]["Arn"])

values = {
    "CARBONSTORE_TEST_AWS_ENDPOINT": endpoint,
    "CARBONSTORE_TEST_AWS_REGION": region,
    "CARBONSTORE_TEST_BUCKET": bucket,
    "CARBONSTORE_TEST_TABLE": table,
    "CARBONSTORE_TEST_ACCESS_KEY_ID": engine_key["AccessKeyId"],
    "CARBONSTORE_TEST_SECRET_ACCESS_KEY": engine_key["SecretAccessKey"],
    "CARBONSTORE_TEST_ADMIN_ACCESS_KEY_ID": admin[0],
    "CARBONSTORE_TEST_ADMIN_SECRET_ACCESS_KEY": admin[1],
}
for k, v in values.items():
    print(f"export {k}='{v}'")
