"""dacdr: Domain-Aware Cross-Attention for Cross-Domain Recommendation, as an MLOps system."""

__version__ = "0.1.0"
