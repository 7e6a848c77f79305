# Seed 001 "Creating From a Runnable Image", copied as a user would (import and pydantic changes as
# in launch_callable.py). The seed leaves repository, tag and command as "..."; here the command is
# launch_server.py beside this file, which listens where Launch's servers do: on $PORT (5005 in
# Launch's pods; the free port modelzoo gives it here).
import os
import sys

from pydantic.v1 import BaseModel

from modelzoo.bundles import LaunchClient


class MyRequestSchema(BaseModel):
    x: int
    y: str

class MyResponseSchema(BaseModel):
    __root__: int


BUNDLE_PARAMS = {
    "model_bundle_name": "test-bundle",
    "request_schema": MyRequestSchema,
    "response_schema": MyResponseSchema,
    "repository": "...",
    "tag": "...",
    "command": [
        sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch_server.py"),
    ],
    "env": {
        "TEST_KEY": "test_value",
    },
    "readiness_initial_delay_seconds": 30,
}

client = LaunchClient(api_key=os.getenv("LAUNCH_API_KEY"))
client.create_model_bundle_from_runnable_image_v2(**BUNDLE_PARAMS)
