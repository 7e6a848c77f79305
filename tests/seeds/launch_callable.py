# Seed 001 "Creating From Callables", copied as a user would: `from launch import LaunchClient`
# became `from modelzoo.bundles import LaunchClient`, and the two-line pydantic 2 change for
# `__root__` (docs/bundles.md): `from pydantic.v1 import BaseModel` for the schemas.
import os

from pydantic.v1 import BaseModel

from modelzoo.bundles import LaunchClient


class MyRequestSchema(BaseModel):
    x: int
    y: str

class MyResponseSchema(BaseModel):
    __root__: int


def my_load_predict_fn(model):
    def returns_model_of_x_plus_len_of_y(x: int, y: str) -> int:
        """MyRequestSchema -> MyResponseSchema"""
        assert isinstance(x, int) and isinstance(y, str)
        return model(x) + len(y)

    return returns_model_of_x_plus_len_of_y


def my_load_model_fn():
    def my_model(x):
        return x * 2

    return my_model

BUNDLE_PARAMS = {
    "model_bundle_name": "test-bundle",
    "load_model_fn": my_load_model_fn,
    "load_predict_fn": my_load_predict_fn,
    "request_schema": MyRequestSchema,
    "response_schema": MyResponseSchema,
    "requirements": ["pytest==7.2.1", "numpy"],  # list your requirements here
    "pytorch_image_tag": "1.7.1-cuda11.0-cudnn8-runtime",
}

client = LaunchClient(api_key=os.getenv("LAUNCH_API_KEY"))
client.create_model_bundle_from_callable_v2(**BUNDLE_PARAMS)
