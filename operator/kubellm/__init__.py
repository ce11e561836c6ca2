"""kubellm: a Kubernetes operator for LLM inference."""

__version__ = "0.1.0"

GROUP = "kubellm.io"
VERSION = "v1alpha1"
KIND = "LLMDeployment"
PLURAL = "llmdeployments"
FIELD_MANAGER = "kubellm"
