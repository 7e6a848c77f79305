# Seed 001 "Creating From Directories", copied as a user would (import and pydantic changes as in
# launch_callable.py). Seed bug worked around (docs/bundles.md, known differences): the seed writes
# the requirements into predict_filename, overwriting predict.py; here they go to requirements_filename.
import os
import tempfile

from pydantic.v1 import BaseModel

from modelzoo.bundles import LaunchClient

directory = tempfile.mkdtemp()
model_filename = os.path.join(directory, "model.py")
with open(model_filename, "w") as f:
    f.write("""
def my_load_model_fn():
    def my_model(x):
        return x * 2

    return my_model
""")

predict_filename = os.path.join(directory, "predict.py")
with open(predict_filename, "w") as f:
    f.write("""
def my_load_predict_fn(model):
    def returns_model_of_x_plus_len_of_y(x: int, y: str) -> int:
        assert isinstance(x, int) and isinstance(y, str)
        return model(x) + len(y)

    return returns_model_of_x_plus_len_of_y
""")

requirements_filename = os.path.join(directory, "requirements.txt")
with open(requirements_filename, "w") as f:  # the seed writes predict_filename here
    f.write("""
pytest==7.2.1
numpy
"""
    )

"""
The directory structure should now look like

directory/
    model.py
    predict.py
    requirements.txt
"""


class MyRequestSchema(BaseModel):
    x: int
    y: str

class MyResponseSchema(BaseModel):
    __root__: int

BUNDLE_PARAMS = {
    "model_bundle_name": "test-bundle",
    "base_paths": [directory],
    "load_predict_fn_module_path": "predict.my_load_predict_fn",
    "load_model_fn_module_path": "model.my_load_model_fn",
    "request_schema": MyRequestSchema,
    "response_schema": MyResponseSchema,
    "requirements_path": "requirements.txt",
    "pytorch_image_tag": "1.7.1-cuda11.0-cudnn8-runtime",
}

client = LaunchClient(api_key=os.getenv("LAUNCH_API_KEY"))
client.create_model_bundle_from_dirs_v2(**BUNDLE_PARAMS)

# Clean up files from demo
os.remove(model_filename)
os.remove(predict_filename)
os.remove(requirements_filename)  # the seed leaves it, so its os.rmdir fails
os.rmdir(directory)
